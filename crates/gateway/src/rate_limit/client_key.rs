//! Whose bucket a request draws from: [`KeySource`] (from config) applied to the request's
//! headers and peer address gives a [`ClientKey`].
//!
//! `client_ip` is the connection's peer address — unless that peer is one of
//! `server.trusted_proxies`; then `X-Forwarded-For` is read from the right (each proxy appends
//! the address it saw), skipping trusted addresses, and the first untrusted one is the client.
//! Never the left-most: a client can write anything there. IPv6 clients are keyed by their
//! /64 (one subscriber's allocation), so rotating addresses inside it does not make new keys.
//! A request without a key value (no such header) shares one [`ClientKey::Anonymous`] bucket.
//! Header values are kept only as their SHA-1 digest: an API key is a secret, and a key of a
//! fixed 20 bytes keeps the limiter's memory per key the same whatever clients send.

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// `X-Forwarded-For`, read only behind a trusted proxy.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What a limit keys its buckets by (`rate_limit.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `client_ip`.
    ClientIp,
    /// `header:NAME`: the header's value (an API key, a tenant id).
    Header(HeaderName),
    /// `global`: one bucket for every request to the endpoint.
    Global,
}

impl KeySource {
    /// Reads a `rate_limit.key` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "client_ip" => Ok(KeySource::ClientIp),
            "global" => Ok(KeySource::Global),
            _ => match text.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                    .map(KeySource::Header)
                    .map_err(|_| format!("{name:?} is not a valid header name")),
                None => Err(format!("{text:?} is not a key: write client_ip, header:NAME or global")),
            },
        }
    }

    /// The key as written in config (the `RateLimit-Policy` name).
    pub fn name(&self) -> String {
        match self {
            KeySource::ClientIp => "client_ip".to_owned(),
            KeySource::Header(name) => format!("header:{name}"),
            KeySource::Global => "global".to_owned(),
        }
    }

    /// The key of a request with these `headers` from `peer` (`None`: unknown, anonymous).
    pub fn key_of(&self, headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> ClientKey {
        match self {
            KeySource::ClientIp => match peer {
                Some(peer) => client_ip(peer, headers, trusted),
                None => ClientKey::Anonymous,
            },
            KeySource::Header(name) => match headers.get(name) {
                Some(value) if !value.is_empty() => ClientKey::Digest(state::digest(value.as_bytes())),
                _ => ClientKey::Anonymous,
            },
            KeySource::Global => ClientKey::Anonymous,
        }
    }
}

/// One bucket's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A client address (IPv6: its /64).
    Ip(IpAddr),
    /// The SHA-1 digest of a header's value, or of a forwarded entry that is not an address.
    Digest([u8; 20]),
    /// No key value: the shared bucket.
    Anonymous,
}

impl ClientKey {
    /// The key of a client at `ip`: IPv4 as is (also when written as IPv4-mapped IPv6), IPv6
    /// by its /64.
    pub fn of_ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => ClientKey::Ip(v4),
        }
    }
}

/// The client behind `peer` (see the module doc).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientKey {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(peer) {
        return ClientKey::of_ip(peer);
    }
    // Every hop trusted (a request from inside): the left-most address.
    let mut nearest = peer;
    // Header lines in order, each a comma-separated list: read the last line first.
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        for entry in line.as_bytes().rsplit(|b| *b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            match std::str::from_utf8(entry).ok().and_then(address) {
                Some(ip) if is_trusted(ip) => nearest = ip,
                Some(ip) => return ClientKey::of_ip(ip),
                None => return ClientKey::Digest(state::digest(entry)),
            }
        }
    }
    ClientKey::of_ip(nearest)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`.
fn address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(X_FORWARDED_FOR, line.parse().unwrap());
        }
        headers
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    fn client(peer: &str, lines: &[&str]) -> ClientKey {
        KeySource::ClientIp.key_of(&forwarded(lines), Some(ip(peer)), &trusted())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(client("203.0.113.7", &["198.51.100.1"]), ClientKey::Ip(ip("203.0.113.7")));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        // The client forged the left-most entry; the proxies appended the rest.
        let key = client("10.0.0.2", &["1.1.1.1, 203.0.113.7, 10.0.0.9"]);
        assert_eq!(key, ClientKey::Ip(ip("203.0.113.7")));
        // The same over several header lines, with ports and brackets.
        let key = client("10.0.0.2", &["1.1.1.1", "[2001:db8::5]:443", "10.0.0.9:80"]);
        assert_eq!(key, ClientKey::of_ip(ip("2001:db8::5")));
        assert_eq!(client("::ffff:10.0.0.2", &["203.0.113.8"]), ClientKey::Ip(ip("203.0.113.8")));
    }

    #[test]
    fn all_hops_trusted_is_the_left_most_and_none_forwarded_is_the_proxy() {
        assert_eq!(client("10.0.0.2", &["10.1.1.1, 10.0.0.9"]), ClientKey::Ip(ip("10.1.1.1")));
        assert_eq!(client("10.0.0.2", &[]), ClientKey::Ip(ip("10.0.0.2")));
    }

    #[test]
    fn an_entry_that_is_not_an_address_is_keyed_as_written() {
        assert_eq!(client("10.0.0.2", &["unknown"]), ClientKey::Digest(state::digest(b"unknown")));
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            ClientKey::of_ip(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of_ip(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(ClientKey::of_ip(ip("2001:db8:1:2::1")), ClientKey::of_ip(ip("2001:db8:1:3::1")));
        assert_eq!(ClientKey::of_ip(ip("::ffff:192.0.2.1")), ClientKey::Ip(ip("192.0.2.1")));
    }

    #[test]
    fn a_missing_header_or_peer_is_the_anonymous_bucket() {
        let source = KeySource::parse("header:X-Api-Key").unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(source.key_of(&headers, None, &[]), ClientKey::Anonymous);
        headers.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(source.key_of(&headers, None, &[]), ClientKey::Digest(state::digest(b"k1")));
        assert_eq!(KeySource::ClientIp.key_of(&headers, None, &[]), ClientKey::Anonymous);
        assert_eq!(KeySource::Global.key_of(&headers, Some(ip("192.0.2.1")), &[]), ClientKey::Anonymous);
    }

    #[test]
    fn keys_parse_or_say_what_to_write() {
        assert_eq!(KeySource::parse("client_ip"), Ok(KeySource::ClientIp));
        assert_eq!(KeySource::parse("header:X-Api-Key").unwrap().name(), "header:x-api-key");
        assert!(KeySource::parse("header:bad name").unwrap_err().contains("not a valid header name"));
        assert!(KeySource::parse("ip").unwrap_err().contains("client_ip, header:NAME or global"));
    }
}
