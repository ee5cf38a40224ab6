//! The client's IP address: the TCP peer, or, when the peer is a trusted reverse proxy
//! (`--trust-proxy`), the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
//!
//! Right to left, because every proxy appends the address it received the request from: the
//! entries left of the first untrusted one were written by the client and prove nothing.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Trusted reverse proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client IP of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: &SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut ip = canonical(peer.ip());
        if !self.trusts(ip) {
            return ip;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Some(h) = parse_hop(hop) else { break };
            ip = h;
            if !self.trusts(h) {
                break;
            }
        }
        ip
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: SocketAddr = "10.1.2.3:1".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:1".parse().unwrap();
        assert_eq!(
            t.client_ip(&stranger, &xff("203.0.113.5")),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.client_ip(&proxy, &xff("203.0.113.5")),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // spoofed left-most entries are ignored; inner proxies are skipped
        assert_eq!(
            t.client_ip(&proxy, &xff("1.1.1.1, 203.0.113.5:4431, 10.9.9.9")),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // garbage stops the walk at the last good hop
        assert_eq!(
            t.client_ip(&proxy, &xff("nonsense")),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.client_ip(&proxy, &HeaderMap::new()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(&proxy, &xff("203.0.113.5")),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
