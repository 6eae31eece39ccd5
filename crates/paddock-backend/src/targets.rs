//! Where sandboxes are reached, and where a proxy must never go.

use std::net::IpAddr;

/// The port upstream's sandbox images serve on, and where paddock's agent listens in a pod:
/// the router's default `X-Sandbox-Port`.
pub const DEFAULT_PORT: u16 = 8888;

/// The SSRF guard: a client-supplied pod IP may not point at the router's own host, link-local
/// addresses (cloud metadata at 169.254.169.254), multicast or the unspecified address.
pub fn pod_ip_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let loopback = ip.is_loopback()
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    if loopback {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_link_local() || v4.is_multicast() || v4.is_unspecified() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            let mapped_bad = v6
                .to_ipv4_mapped()
                .is_some_and(|v4| v4.is_link_local() || v4.is_unspecified() || v4.is_multicast());
            !(link_local || v6.is_multicast() || v6.is_unspecified() || mapped_bad)
        }
    }
}
