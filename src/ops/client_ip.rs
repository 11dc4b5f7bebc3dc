//! Who the client is, by address: the one decision every per-client rule keys on (rate
//! limits, the failed-login lockout, the per-client upload session cap, the access log).
//!
//! The TCP peer is the client unless it is a trusted proxy (`[policies.rate_limit]
//! trusted_proxies`); then `X-Forwarded-For` is read from the right (each proxy appends the
//! address it received from) and the first address that is not itself a trusted proxy is the
//! client. A header from an untrusted peer is ignored, so it cannot be spoofed around a limit.

use std::net::{IpAddr, SocketAddr};

use actix_web::{HttpRequest, web};
use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`127.0.0.1`, `::1`) and CIDR ranges (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer` carrying the `X-Forwarded-For` header values
    /// `forwarded` (in the order received).
    pub fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let mut client = peer.map(|p| p.to_canonical())?;
        if !self.contains(client) {
            return Some(client);
        }
        let hops = forwarded.rev().flat_map(|v| v.rsplit(','));
        for hop in hops {
            let Some(ip) = parse_hop(hop) else {
                // Garbage was written by someone untrusted: the last trusted hop is all we know.
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client address of `req`, by the server's trusted proxies (the TCP peer when the server
/// has none). `None` only when the connection has no peer address (tests' in-memory requests).
pub fn of(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let Some(limiter) = req.app_data::<web::Data<crate::policy::rate_limit::RateLimiter>>() else {
        return peer.map(|p| p.to_canonical());
    };
    let limits = limiter.limits();
    if limits.trusted_proxies.is_empty() {
        return peer.map(|p| p.to_canonical());
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    limits.trusted_proxies.client(peer, forwarded.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_header_of_an_untrusted_peer_changes_nothing() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("192.0.2.7"), ["1.1.1.1"].into_iter()),
            ip("192.0.2.7")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), ["1.1.1.1"].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_address_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        // The client forged its own entry on the left; the proxy appended the real address.
        let xff = ["6.6.6.6, 203.0.113.9, 10.1.2.3"];
        assert_eq!(
            p.client(ip("127.0.0.1"), xff.into_iter()),
            ip("203.0.113.9")
        );
        // Several header lines are one list, in order.
        let lines = ["6.6.6.6", "203.0.113.9:4711", "10.1.2.3"];
        assert_eq!(
            p.client(ip("10.9.9.9"), lines.into_iter()),
            ip("203.0.113.9")
        );
        // Only proxies: the left-most one is as far as can be told.
        assert_eq!(
            p.client(ip("127.0.0.1"), ["10.0.0.5, 10.0.0.6"].into_iter()),
            ip("10.0.0.5")
        );
        // No header: the proxy itself.
        assert_eq!(p.client(ip("127.0.0.1"), [].into_iter()), ip("127.0.0.1"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            p.client(ip("127.0.0.1"), ["1.2.3.4, junk, 10.0.0.8"].into_iter()),
            ip("10.0.0.8")
        );
    }

    #[test]
    fn ipv6_and_ipv4_mapped_addresses_are_understood() {
        let p = proxies(&["::1", "fd00::/8"]);
        assert_eq!(
            p.client(ip("::1"), ["[2001:db8::1]:443, fd00::2"].into_iter()),
            ip("2001:db8::1")
        );
        let p = proxies(&["127.0.0.1"]);
        assert_eq!(
            p.client(ip("::ffff:127.0.0.1"), ["198.51.100.1"].into_iter()),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        let err = TrustedProxies::parse(&["10.0.0.0/40".into()]).unwrap_err();
        assert!(err.contains("10.0.0.0/40"), "{err}");
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }
}
