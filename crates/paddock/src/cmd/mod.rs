//! One module per subcommand.

pub mod audit;
pub mod client;
pub mod convert;
pub mod cp;
pub mod crds;
pub mod doctor;
pub mod exec;
pub mod objects;
pub mod output;
pub mod policy;
pub mod pull;
pub mod run;
pub mod sandbox;
pub mod serve;
pub mod token;
pub mod validate;
