//! The in-memory store: the same write pipeline and semantics as the durable store, without persistence.
//! For tests, and for anything that must not touch the disk.

use crate::error::Result;
use crate::pipeline::state::Head;
use crate::pipeline::{Pipeline, StoreOptions, Volatile, delegate_object_store};

/// An [`crate::ObjectStore`] held in memory; everything is lost when it is dropped.
#[derive(Debug)]
pub struct MemoryStore {
    pipeline: Pipeline,
}

impl MemoryStore {
    /// An empty store with default options.
    ///
    /// # Errors
    /// `Unavailable` if the writer thread cannot be started.
    pub fn new() -> Result<Self> {
        Self::with_options(&StoreOptions::default())
    }

    /// An empty store with `options`.
    ///
    /// # Errors
    /// `Invalid` for zero-sized options, `Unavailable` if the writer thread cannot be started.
    pub fn with_options(options: &StoreOptions) -> Result<Self> {
        Ok(Self {
            pipeline: Pipeline::start(Head::default(), Volatile, options)?,
        })
    }
}

delegate_object_store!(MemoryStore);
