//! The SSRF policy: endpoint URLs are user input, so Herald refuses to call
//! addresses that are not on the public Internet unless an operator allowed
//! their range.
//!
//! Fail closed: an address is callable only if it is globally routable
//! unicast, or inside an `allow_target_cidrs` range. Addresses that embed an
//! IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the
//! embedded address; Teredo and other tunnelling forms are refused outright.
//!
//! The check runs twice: on literal addresses when a webhook is created (a
//! clear 400), and on every address actually dialled, at connect time
//! ([`super::connector`]), which is the check that counts: a host name can
//! resolve to anything by the time a delivery is made (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy that also allows the given ranges (e.g. `127.0.0.0/8` for
    /// local development).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// `Ok` if Herald may connect to `ip`; otherwise why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockReason> {
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        // An explicit allowance for an embedded IPv4 address covers its
        // IPv4-mapped form too (`::ffff:127.0.0.1` is `127.0.0.1`).
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
            && self.allowed.iter().any(|net| net.contains(&IpAddr::V4(v4)))
        {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => check_v4(v4),
            IpAddr::V6(v6) => check_v6(v6),
        }
    }

    /// Checks a host name that is known to mean the local machine.
    pub fn check_host_name(&self, host: &str) -> Result<(), BlockReason> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return self
                .check(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(|_| BlockReason("localhost"));
        }
        Ok(())
    }
}

/// Why an address is refused: the name of its special-purpose range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockReason(pub &'static str);

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), BlockReason> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "this network (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space / CGNAT (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16, cloud metadata)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return Ok(()),
    };
    Err(BlockReason(reason))
}

fn check_v6(ip: Ipv6Addr) -> Result<(), BlockReason> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Err(BlockReason("unspecified (::)"));
    }
    if ip.is_loopback() {
        return Err(BlockReason("loopback (::1)"));
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return check_v4(v4);
    }
    // IPv4-compatible (deprecated) ::a.b.c.d
    if segments[..6] == [0; 6] {
        return check_v4(embedded_v4(segments[6], segments[7])).and(Err(BlockReason("IPv4-compatible (::/96)")));
    }
    // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return check_v4(embedded_v4(segments[6], segments[7]));
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if segments[0] == 0x2002 {
        return check_v4(embedded_v4(segments[1], segments[2]));
    }
    let reason = match segments[0] {
        0x0064 if segments[1] == 0xff9b && segments[2] == 0x0001 => "local-use NAT64 (64:ff9b:1::/48)",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x2001 if segments[1] == 0 => "Teredo (2001::/32)",
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if segments[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x3fff if segments[1] < 0x1000 => "documentation (3fff::/20)",
        0x5f00 => "segment routing (5f00::/16)",
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        s if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        s if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        s if s & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        // Global unicast is 2000::/3; everything else is unassigned.
        s if s & 0xe000 != 0x2000 => "not global unicast (outside 2000::/3)",
        _ => return Ok(()),
    };
    Err(BlockReason(reason))
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &AddressPolicy, address: &str) -> bool {
        policy.check(address.parse().expect("an IP address")).is_ok()
    }

    #[test]
    fn blocks_every_special_purpose_range() {
        let policy = AddressPolicy::default();
        for blocked in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2001:10::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
            "::2",
        ] {
            assert!(!check(&policy, blocked), "{blocked} must be blocked");
        }
    }

    #[test]
    fn allows_public_unicast() {
        let policy = AddressPolicy::default();
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.3.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(check(&policy, public), "{public} must be allowed");
        }
    }

    #[test]
    fn allowed_ranges_override_including_mapped_forms() {
        let policy = AddressPolicy::new(vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "fd00::/8".parse().expect("cidr"),
        ]);
        assert!(check(&policy, "127.0.0.1"));
        assert!(check(&policy, "::ffff:127.0.0.1"));
        assert!(check(&policy, "fd00::5"));
        assert!(!check(&policy, "10.0.0.1"));
        assert!(!check(&policy, "::1"));
    }

    #[test]
    fn localhost_names_are_loopback() {
        let policy = AddressPolicy::default();
        for name in ["localhost", "LOCALHOST.", "api.localhost"] {
            assert!(policy.check_host_name(name).is_err(), "{name}");
        }
        assert!(policy.check_host_name("example.com").is_ok());
        let open = AddressPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert!(open.check_host_name("localhost").is_ok());
    }
}
