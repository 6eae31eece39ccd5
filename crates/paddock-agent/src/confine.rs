//! Path confinement: maps a client-supplied path to a real path that is guaranteed to lie
//! inside a root directory, following upstream sandboxd's `SanitizePath` rules.
//!
//! Rules, in order: NUL and control characters are refused; `..` is resolved lexically and may
//! not climb above the root; absolute paths must already lie under the root ([`PathStyle::Rooted`])
//! or are re-rooted by stripping the leading `/` ([`PathStyle::Legacy`], the python runtime's
//! behaviour); every symlink on the way is resolved by hand (dangling ones too, so a later
//! `open(O_CREAT)` cannot follow them out); missing trailing components are appended as they
//! are; the result must equal the root or start with `root/` component-wise (so `/workspace-evil`
//! is not inside `/workspace`).
//!
//! This guards the agent's API, not the sandbox: code running inside the sandbox has the same
//! rights as the agent, so a symlink swapped between the check and the use is out of scope.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path, as the kernel's `ELOOP` limit.
const MAX_SYMLINK_FOLLOWS: u32 = 40;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The path resolves outside the root (`..`, an absolute path elsewhere, a symlink out).
    #[error("path {path:?} escapes the sandbox root")]
    Escapes { path: String },
    /// The path contains NUL or another control character.
    #[error("path {path:?} contains a NUL or control character")]
    InvalidCharacter { path: String },
    /// Too many symlinks, or a filesystem error while resolving.
    #[error("cannot resolve path {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How absolute client paths are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// sandboxd and paddock: an absolute path must lie under the root (it is then made
    /// relative); any other absolute path is refused.
    Rooted,
    /// python runtime: leading `/` are stripped and the path is joined to the root.
    Legacy,
}

/// A directory that client paths are confined to.
#[derive(Debug, Clone)]
pub struct Root {
    /// The root as configured (used to recognise absolute paths under it).
    configured: PathBuf,
    /// The root with every symlink resolved.
    canonical: PathBuf,
}

impl Root {
    /// Opens `path` as a root, creating it (and its parents) when `create` is set.
    pub fn open(path: &Path, create: bool) -> io::Result<Self> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let canonical = std::fs::canonicalize(path)?;
        if !canonical.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        let configured = lexical_absolute(path);
        Ok(Self {
            configured,
            canonical,
        })
    }

    /// The root with symlinks resolved; every confined path starts with it.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a client path to a real path inside the root.
    pub fn resolve(&self, user_path: &str, style: PathStyle) -> Result<PathBuf, ConfineError> {
        if user_path.chars().any(char::is_control) {
            return Err(ConfineError::InvalidCharacter {
                path: user_path.to_owned(),
            });
        }
        let escapes = || ConfineError::Escapes {
            path: user_path.to_owned(),
        };
        let requested = Path::new(user_path);
        let relative: PathBuf = if requested.is_absolute() {
            match style {
                PathStyle::Legacy => requested.components().skip(1).collect(),
                PathStyle::Rooted => {
                    let cleaned = lexical_absolute(requested);
                    if let Ok(rest) = cleaned.strip_prefix(&self.configured) {
                        rest.to_path_buf()
                    } else if let Ok(rest) = cleaned.strip_prefix(&self.canonical) {
                        rest.to_path_buf()
                    } else {
                        return Err(escapes());
                    }
                }
            }
        } else {
            requested.to_path_buf()
        };
        // Lexical pass: `..` may not climb above the root.
        let mut parts: Vec<OsString> = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(name) => parts.push(name.to_os_string()),
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(escapes());
                    }
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        let resolved =
            resolve_symlinks(&self.canonical, parts).map_err(|source| ConfineError::Io {
                path: user_path.to_owned(),
                source,
            })?;
        if resolved.starts_with(&self.canonical) {
            Ok(resolved)
        } else {
            Err(escapes())
        }
    }

    /// Whether `path` (already resolved) is the root itself.
    pub fn is_root(&self, path: &Path) -> bool {
        path == self.canonical
    }
}

/// Makes `path` absolute against the current directory and removes `.`/`..` lexically.
fn lexical_absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    };
    let mut out = base;
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir => out = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Walks `root/parts...` one component at a time, replacing each symlink by its target
/// (relative targets against the link's directory), until a component does not exist; the
/// remaining components are then appended lexically.
fn resolve_symlinks(root: &Path, parts: Vec<OsString>) -> io::Result<PathBuf> {
    let mut resolved = root.to_path_buf();
    let mut pending: VecDeque<OsString> = parts.into();
    let mut follows = 0u32;
    let mut missing = false;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        if name == "." || name.is_empty() {
            continue;
        }
        let candidate = resolved.join(&name);
        if missing {
            resolved = candidate;
            continue;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut front: Vec<OsString> = Vec::new();
                for component in target.components() {
                    match component {
                        Component::Normal(part) => front.push(part.to_os_string()),
                        Component::ParentDir => front.push(OsString::from("..")),
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                    }
                }
                for part in front.into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Ok(_) => resolved = candidate,
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.kind() == io::ErrorKind::NotADirectory =>
            {
                missing = true;
                resolved = candidate;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("workspace");
        std::fs::create_dir(&root_path).unwrap();
        let root = Root::open(&root_path, false).unwrap();
        (dir, root)
    }

    #[test]
    fn relative_paths_resolve_under_root() {
        let (_dir, root) = fixture();
        let got = root.resolve("a/b/../c.txt", PathStyle::Rooted).unwrap();
        assert_eq!(got, root.path().join("a/c.txt"));
        assert_eq!(root.resolve("", PathStyle::Rooted).unwrap(), root.path());
    }

    #[test]
    fn dotdot_above_root_is_refused() {
        let (_dir, root) = fixture();
        assert!(matches!(
            root.resolve("a/../../etc/passwd", PathStyle::Rooted),
            Err(ConfineError::Escapes { .. })
        ));
        assert!(matches!(
            root.resolve("..", PathStyle::Legacy),
            Err(ConfineError::Escapes { .. })
        ));
    }

    #[test]
    fn absolute_path_outside_root_is_refused_but_legacy_reroots_it() {
        let (_dir, root) = fixture();
        assert!(matches!(
            root.resolve("/etc/passwd", PathStyle::Rooted),
            Err(ConfineError::Escapes { .. })
        ));
        assert_eq!(
            root.resolve("/etc/passwd", PathStyle::Legacy).unwrap(),
            root.path().join("etc/passwd")
        );
        let inside = format!("{}/x", root.path().display());
        assert_eq!(
            root.resolve(&inside, PathStyle::Rooted).unwrap(),
            root.path().join("x")
        );
    }

    #[test]
    fn sibling_prefix_is_not_inside() {
        let (dir, root) = fixture();
        std::fs::create_dir(dir.path().join("workspace-evil")).unwrap();
        let evil = format!("{}-evil/x", root.path().display());
        assert!(matches!(
            root.resolve(&evil, PathStyle::Rooted),
            Err(ConfineError::Escapes { .. })
        ));
        assert!(matches!(
            root.resolve("../workspace-evil/x", PathStyle::Rooted),
            Err(ConfineError::Escapes { .. })
        ));
    }

    #[test]
    fn symlinks_out_are_refused_even_when_dangling() {
        let (dir, root) = fixture();
        std::os::unix::fs::symlink(dir.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("/nonexistent-target/x", root.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink("../..", root.path().join("up")).unwrap();
        for path in ["out", "out/file", "dangling", "up/etc"] {
            assert!(
                matches!(
                    root.resolve(path, PathStyle::Rooted),
                    Err(ConfineError::Escapes { .. })
                ),
                "{path} should escape"
            );
        }
    }

    #[test]
    fn symlinks_inside_root_are_followed() {
        let (_dir, root) = fixture();
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.path().join("alias")).unwrap();
        assert_eq!(
            root.resolve("alias/new.txt", PathStyle::Rooted).unwrap(),
            root.path().join("real/new.txt")
        );
    }

    #[test]
    fn control_characters_are_refused() {
        let (_dir, root) = fixture();
        for path in ["a\0b", "a\nb", "\u{1b}[2J"] {
            assert!(matches!(
                root.resolve(path, PathStyle::Rooted),
                Err(ConfineError::InvalidCharacter { .. })
            ));
        }
    }

    #[test]
    fn symlink_loops_are_an_error_not_a_hang() {
        let (_dir, root) = fixture();
        std::os::unix::fs::symlink("b", root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", root.path().join("b")).unwrap();
        assert!(matches!(
            root.resolve("a", PathStyle::Rooted),
            Err(ConfineError::Io { .. })
        ));
    }
}
