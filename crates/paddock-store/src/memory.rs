//! The in-memory store: the same engine and semantics as the durable store, without persistence.
//! For tests, and for anything that must not touch the disk.

use crate::engine::state::Head;
use crate::engine::{Engine, StoreOptions, Volatile, delegate_object_store};
use crate::error::Result;

/// An [`crate::ObjectStore`] held in memory; everything is lost when it is dropped.
#[derive(Debug)]
pub struct MemoryStore {
    engine: Engine,
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
            engine: Engine::start(Head::default(), Volatile, options)?,
        })
    }
}

delegate_object_store!(MemoryStore);
