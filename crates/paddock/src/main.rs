//! The `paddock` command.
fn main() {}
