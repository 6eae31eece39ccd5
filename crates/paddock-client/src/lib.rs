//! The Rust SDK: a client of the paddock gateway.
