//! Addresses: CIDR ranges, and which addresses count as public (a domain rule reaches only
//! public addresses unless a CIDR rule names the private one, so an allowed name that resolves
//! to 127.0.0.1 or the cloud metadata address cannot reach the host's own services).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use paddock_api::policy::{mask, parse_cidr};

/// An address range: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address.
    ///
    /// # Errors
    /// What is wrong with the text (as `paddock validate` reports it).
    pub fn parse(s: &str) -> Result<Self, String> {
        parse_cidr(s).map(|(addr, prefix)| Self { addr, prefix })
    }

    /// The range holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this range.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, shared (CGNAT), link-local,
/// documentation, benchmarking, multicast, broadcast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0064 && s[1] == 0xff9b)
        // IPv4-compatible (::/96), 6to4 (2002::/16), site-local (fec0::/10), discard (100::/64)
        || s[..6] == [0; 6]
        || s[0] == 0x2002
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x0100 && s[1..4] == [0; 3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains(ip("10.1.255.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "mapped IPv4 counts");
        assert!(!c.contains(ip("2001:db8::1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        assert!(c.covers(&Cidr::parse("10.1.2.0/24").expect("sub")));
        assert!(!c.covers(&Cidr::parse("10.0.0.0/8").expect("super")));
        assert_eq!(Cidr::host(ip("2001:db8::1")).to_string(), "2001:db8::1/128");
    }

    #[test]
    fn private_loopback_metadata_and_documentation_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "2001:db8::5",
        ] {
            assert!(!is_public(ip(a)), "{a} must not count as public");
        }
        for a in ["1.1.1.1", "151.101.0.223", "2606:4700::1111"] {
            assert!(is_public(ip(a)), "{a} is public");
        }
    }
}
