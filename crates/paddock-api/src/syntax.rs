//! Kubernetes' rules for names, label keys and values, as `k8s.io/apimachinery/pkg/util/validation`
//! states them. Each check returns the reasons a value is invalid (empty when it is valid), so
//! callers can report all of them.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn label_chars_ok(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower)
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
}

/// A DNS-1123 label: at most 63 lowercase alphanumerics or `-`, starting and ending with an
/// alphanumeric (Pod, Service and PVC names of sandboxes must be labels).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters (it has {})",
            s.len()
        ));
    }
    if !label_chars_ok(s) {
        errs.push(
            "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')"
                .to_owned(),
        );
    }
    errs
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS labels (object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters (it has {})",
            s.len()
        ));
    }
    if s.is_empty() || !s.split('.').all(label_chars_ok) {
        errs.push(
            "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
                .to_owned(),
        );
    }
    errs
}

fn qualified_name_part_ok(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= QUALIFIED_NAME_MAX
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A qualified name (label and annotation keys): an optional DNS subdomain prefix and `/`,
/// then a name of at most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_owned());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.contains('/') {
        errs.push("must be a name with an optional DNS subdomain prefix and '/' (e.g. 'example.com/my-name')".to_owned());
    } else if !qualified_name_part_ok(name) {
        errs.push(format!(
            "name part must be at most {QUALIFIED_NAME_MAX} characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric (e.g. 'MyName', 'my.name', '123-abc')"
        ));
    }
    errs
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`, starting and ending
/// alphanumeric.
pub fn label_value(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    if s.len() > LABEL_VALUE_MAX || !qualified_name_part_ok(s) {
        return vec![format!(
            "must be {LABEL_VALUE_MAX} characters or less, empty or starting and ending with an alphanumeric character, with '-', '_', '.' and alphanumerics between"
        )];
    }
    Vec::new()
}

/// An environment variable name as the upstream SDK and Kubernetes accept it.
pub fn env_var_name(s: &str) -> Vec<String> {
    let first_ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if s.is_empty() || !first_ok || !rest_ok {
        return vec!["must consist of letters, digits, '_', '-' or '.', and must not start with a digit (e.g. 'MY_VAR')".to_owned()];
    }
    if s == "." || s == ".." || s.starts_with("..") {
        return vec!["must not be '.', '..' or start with '..'".to_owned()];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns1123_label("my-sandbox-1").is_empty());
        assert!(!dns1123_label("My-Sandbox").is_empty());
        assert!(!dns1123_label("-x").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_subdomain("").is_empty());
    }

    #[test]
    fn qualified_names_and_label_values() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("sandbox.users.io/team").is_empty());
        assert!(!qualified_name("/team").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("Bad_Prefix/x").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3-x").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(!label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn env_var_names() {
        assert!(env_var_name("MY_VAR").is_empty());
        assert!(env_var_name("a.b-c").is_empty());
        assert!(!env_var_name("1X").is_empty());
        assert!(!env_var_name("..x").is_empty());
        assert!(!env_var_name("A B").is_empty());
    }
}
