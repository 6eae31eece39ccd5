//! The Agent Sandbox API model: the four kinds in both served versions, conversion between them,
//! CRD generation, validation, the label/annotation registry and the name hash.
//!
//! Pure data and functions; no IO. Every entry point (the REST API, the controllers, the CLI)
//! parses and validates objects through this crate.
//!
//! # Layout
//! - [`v1alpha1`], [`v1beta1`]: the typed objects of each version (`v1beta1` is the storage version).
//! - [`common`]: sub-types both versions share.
//! - [`names`]: label and annotation keys, the name hash.
//! - [`conditions`]: condition types and reasons.
//! - [`policy`]: `SandboxPolicy`, paddock's own kind (egress rules), its schema and CRD.

pub mod any;
pub mod common;
pub mod conditions;
pub mod convert;
mod core_markers;
pub mod crd;
pub mod kinds;
pub mod names;
mod object;
pub mod policy;
pub mod schema;
pub mod stored;
pub mod syntax;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod v1alpha1;
pub mod v1beta1;
pub mod validate;
pub mod yaml;

pub use object::NoStatus;
