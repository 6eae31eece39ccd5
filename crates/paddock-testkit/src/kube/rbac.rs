//! What RBAC manifests grant, to check a component's every request against them.

use std::collections::BTreeSet;
use std::path::Path;

/// (apiGroup, resource, verb) triples.
pub type Grants = BTreeSet<(String, String, String)>;

/// What the ClusterRoles and the Roles in these manifest files grant.
///
/// # Panics
/// A file that cannot be read or is not YAML.
pub fn granted(files: &[&Path]) -> (Grants, Grants) {
    let (mut cluster, mut namespaced) = (Grants::new(), Grants::new());
    for path in files {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in paddock_api::yaml::parse_documents(&text).expect("yaml") {
            let v = doc.value;
            let target = match v["kind"].as_str() {
                Some("ClusterRole") => &mut cluster,
                Some("Role") => &mut namespaced,
                _ => continue,
            };
            let strings = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for rule in v["rules"].as_array().cloned().unwrap_or_default() {
                for g in strings(&rule["apiGroups"]) {
                    for r in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            target.insert((g.clone(), r.clone(), verb));
                        }
                    }
                }
            }
        }
    }
    (cluster, namespaced)
}

/// The manifest files of a directory.
///
/// # Panics
/// The directory cannot be read.
pub fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
}
