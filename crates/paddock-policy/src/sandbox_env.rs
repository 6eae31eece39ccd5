//! The environment of a sandbox whose network goes through the egress proxy, the same on both
//! tiers: the proxy variables (both spellings) and the trust-store variables the common
//! clients read (OpenSSL, Python requests, curl, Node, git, pip).

/// The proxy variables, each also set in lower case.
pub const PROXY_VARS: [&str; 3] = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"];

/// The trust-store variables, all pointing at one bundle.
pub const TRUST_STORE_VARS: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
];

/// Everything a governed sandbox needs: the proxy at `proxy` (`host:port`), `NO_PROXY` for its
/// loopback (and `no_proxy_extra`), and the trust store at `bundle`.
pub fn governed_env(proxy: &str, no_proxy_extra: &[&str], bundle: &str) -> Vec<(String, String)> {
    let url = format!("http://{proxy}");
    let mut env = Vec::new();
    for name in PROXY_VARS {
        env.push((name.to_owned(), url.clone()));
        env.push((name.to_ascii_lowercase(), url.clone()));
    }
    let mut no_proxy = vec!["localhost", "127.0.0.1", "::1"];
    no_proxy.extend_from_slice(no_proxy_extra);
    let no_proxy = no_proxy.join(",");
    env.push(("NO_PROXY".to_owned(), no_proxy.clone()));
    env.push(("no_proxy".to_owned(), no_proxy));
    for name in TRUST_STORE_VARS {
        env.push((name.to_owned(), bundle.to_owned()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governed_env_sets_both_spellings_and_every_trust_store_variable() {
        let env = governed_env(
            "10.0.0.1:3128",
            &["10.0.0.1"],
            "/etc/ssl/certs/ca-certificates.crt",
        );
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("https_proxy"), Some("http://10.0.0.1:3128"));
        assert_eq!(get("NO_PROXY"), Some("localhost,127.0.0.1,::1,10.0.0.1"));
        assert_eq!(
            get("NODE_EXTRA_CA_CERTS"),
            Some("/etc/ssl/certs/ca-certificates.crt")
        );
        assert_eq!(env.len(), 6 + 2 + 6);
    }
}
