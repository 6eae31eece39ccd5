//! One module per subcommand.

pub mod convert;
pub mod crds;
pub mod serve;
pub mod validate;
