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

/// `GET /v1/fs/stat?path=`: one path, not following a final symlink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileStat {
    /// The path asked for, absolute inside the sandbox.
    pub path: String,
    /// `file`, `directory`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits in octal (`0644`).
    pub mode: String,
    /// Last modification, RFC 3339 UTC.
    pub modified_at: String,
    /// Where a symlink points, as written in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// One change under a watched directory (`GET /v1/fs/watch`, one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileEvent {
    /// `create`, `write`, `remove`, `rename` (the old name leaves: `remove`-like; the new one
    /// arrives: `create`-like, both `rename`), `chmod`, or `error` (then the stream ends).
    #[serde(rename = "type")]
    pub type_: String,
    /// The path, absolute inside the sandbox (the watched directory's for `error`).
    pub path: String,
    /// Whether the path is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// What went wrong (`error` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
