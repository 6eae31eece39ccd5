//! Directory listings of the agent's file API (`GET /v1/files/{dir}`).

use serde::{Deserialize, Serialize};

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileEntry {
    /// The entry's name.
    pub name: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// `file`, `directory`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Last modification, RFC 3339 UTC (empty when unknown).
    #[serde(default)]
    pub modified_at: String,
    /// Permission bits in octal (`0644`).
    #[serde(default)]
    pub mode: String,
}

/// A directory's entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DirectoryListing {
    /// The directory, as asked for.
    pub path: String,
    /// Its entries.
    pub entries: Vec<FileEntry>,
}
