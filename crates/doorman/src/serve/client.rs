//! Who the client is, and whether it came over https. Behind a reverse proxy the TCP peer is
//! the proxy; its forwarding header names the client, but only a proxy listed in
//! `trusted_proxies` may say so, or any client could claim any address. doorman reads one
//! forwarding header, the one `forwarded_header` names (`X-Forwarded-For` by default, or RFC
//! 7239 `Forwarded`), and ignores the other: a proxy overwrites or appends to the header it sets
//! but passes the other through, so reading both would let a client choose its own address.
//! The address found is what the access log, the audit trail and the login throttle use.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address, as far as doorman can trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// A trusted proxy said the client reached it over https (`X-Forwarded-Proto: https`, or
/// `proto=https` in `Forwarded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientUsedHttps;

/// The one header a trusted proxy names the client in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, with the scheme in `X-Forwarded-Proto` (nginx, HAProxy, most load
    /// balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...;proto=...`.
    Forwarded,
}

impl ForwardedHeader {
    /// `x-forwarded-for` or `forwarded`, any case.
    pub fn parse(text: &str) -> Option<ForwardedHeader> {
        if text.eq_ignore_ascii_case("x-forwarded-for") {
            Some(ForwardedHeader::XForwardedFor)
        } else if text.eq_ignore_ascii_case("forwarded") {
            Some(ForwardedHeader::Forwarded)
        } else {
            None
        }
    }
}

/// The proxies whose forwarding headers are believed: networks, and (with the entry `unix`
/// in `trusted_proxies`) whatever connects over doorman's Unix socket, such as nginx.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
    unix: bool,
    header: ForwardedHeader,
}

/// What the forwarding chain says of the client: its address, and the scheme it used as
/// reported by the hop that named it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub client: Option<IpAddr>,
    pub https: bool,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies {
            nets: nets.into(),
            unix: false,
            header: ForwardedHeader::default(),
        }
    }

    /// Also believe peers on the Unix socket.
    pub fn trusting_unix_socket(mut self, unix: bool) -> TrustedProxies {
        self.unix = unix;
        self
    }

    /// Read the client from this header (and only this one).
    pub fn reading(mut self, header: ForwardedHeader) -> TrustedProxies {
        self.header = header;
        self
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a Unix-socket peer: the rightmost untrusted forwarded address when
    /// that peer is trusted, else unknown.
    pub fn client_over_unix(&self, headers: &HeaderMap) -> Option<IpAddr> {
        self.over_unix(headers).client
    }

    /// What a Unix-socket peer says of the client, when that peer is trusted.
    pub fn over_unix(&self, headers: &HeaderMap) -> Forwarded {
        if !self.unix {
            return Forwarded::default();
        }
        self.behind_trusted(headers)
    }

    /// Walking the forwarding chain from the nearest hop: the first address that is not a
    /// trusted proxy (the rightmost untrusted one, which a client can't forge), or the
    /// farthest hop when all are trusted; no client for an empty chain.
    fn behind_trusted(&self, headers: &HeaderMap) -> Forwarded {
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => rfc7239(headers),
        };
        let mut found = Forwarded::default();
        for hop in hops.iter().rev() {
            let ip = canonical(hop.ip);
            found = Forwarded {
                client: Some(ip),
                https: hop.https,
            };
            if !self.trusts(ip) {
                break;
            }
        }
        if self.header == ForwardedHeader::XForwardedFor {
            found.https = x_forwarded_proto_is_https(headers);
        }
        found
    }

    /// The client behind `peer`: walking the forwarding chain from the nearest hop, the first
    /// address that is not a trusted proxy (the rightmost untrusted one, which a client can't
    /// forge). Without a trusted peer, the peer itself.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.behind(peer, headers).client.unwrap_or(peer)
    }

    /// What a TCP `peer` says of the client: nothing unless it is a trusted proxy.
    pub fn behind(&self, peer: IpAddr, headers: &HeaderMap) -> Forwarded {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return Forwarded {
                client: Some(peer),
                https: false,
            };
        }
        let found = self.behind_trusted(headers);
        Forwarded {
            client: found.client.or(Some(peer)),
            https: found.https,
        }
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of a forwarding chain: the address a proxy received a connection from, and
/// whether that connection was https (as far as the header says).
struct Hop {
    ip: IpAddr,
    https: bool,
}

/// The addresses in `X-Forwarded-For`, nearest last. An entry that is not an address
/// (`unknown`) ends the walk there, so nothing before it is believed.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Hop> {
    let entries: Vec<(&str, bool)> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| (s.trim(), false))
        .collect();
    nearest_addresses(&entries)
}

/// The nearest proxy's `X-Forwarded-Proto` (its rightmost value) is `https`.
fn x_forwarded_proto_is_https(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The `for=` of each RFC 7239 `Forwarded` element, nearest last, each with its element's
/// `proto=`. Obfuscated identifiers and `unknown` end the walk there.
fn rfc7239(headers: &HeaderMap) -> Vec<Hop> {
    let elements: Vec<(String, bool)> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            let mut node = String::new();
            let mut https = false;
            for pair in element.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                if name.trim().eq_ignore_ascii_case("for") {
                    node = value.to_owned();
                } else if name.trim().eq_ignore_ascii_case("proto") {
                    https = value.eq_ignore_ascii_case("https");
                }
            }
            (node, https)
        })
        .collect();
    let entries: Vec<(&str, bool)> = elements.iter().map(|(n, h)| (n.as_str(), *h)).collect();
    nearest_addresses(&entries)
}

/// The entries that are addresses, from the nearest back to the first that isn't one.
fn nearest_addresses(entries: &[(&str, bool)]) -> Vec<Hop> {
    let mut hops: Vec<Hop> = Vec::new();
    for (node, https) in entries.iter().rev() {
        match parse_node(node) {
            Some(ip) => hops.push(Hop { ip, https: *https }),
            None => break,
        }
    }
    hops.reverse();
    hops
}

/// `1.2.3.4`, `1.2.3.4:567`, `[2001:db8::1]`, `[2001:db8::1]:567` or `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let spoof = headers(&[("x-forwarded-for", "6.6.6.6")]);
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            proxies.client(stranger, &spoof),
            stranger,
            "an untrusted peer can't claim"
        );
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // The client prepended a fake entry; the proxy appended the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.9.9.9")]);
        assert_eq!(
            proxies.client(proxy, &chain),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let rfc7239 = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::17]:4711""#,
        )]);
        let rfc_proxies = proxies.clone().reading(ForwardedHeader::Forwarded);
        assert_eq!(
            rfc_proxies.client(proxy, &rfc7239),
            "2001:db8::17".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            proxies.client(proxy, &rfc7239),
            proxy,
            "`Forwarded` is not read while X-Forwarded-For is the forwarding header"
        );
        let hidden = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert_eq!(
            proxies.client(proxy, &hidden),
            proxy,
            "nothing before `unknown` is believed"
        );
        assert_eq!(proxies.client(proxy, &HeaderMap::new()), proxy);
        // Over the Unix socket: believed only when `unix` is trusted.
        let via_nginx = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(proxies.client_over_unix(&via_nginx), None);
        let with_unix = proxies.clone().trusting_unix_socket(true);
        assert_eq!(
            with_unix.client_over_unix(&via_nginx),
            Some("198.51.100.7".parse::<IpAddr>().unwrap())
        );
        assert_eq!(with_unix.client_over_unix(&HeaderMap::new()), None);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            proxies.client(mapped, &headers(&[("x-forwarded-for", "192.0.2.1")])),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    /// A proxy sets one forwarding header and passes the other through as the client sent it,
    /// so only the configured one is read: the other can't choose the client's address.
    #[test]
    fn only_the_configured_forwarding_header_is_read() {
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let real: IpAddr = "198.51.100.7".parse().unwrap();
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        // nginx appended the real address to X-Forwarded-For; the client's `Forwarded` passed.
        let via_xff = headers(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let xff = TrustedProxies::new(nets.clone());
        assert_eq!(xff.client(proxy, &via_xff), real);
        assert!(
            !xff.behind(proxy, &via_xff).https,
            "proto= of a client's Forwarded"
        );
        // A proxy that speaks RFC 7239; the client's X-Forwarded-For passed.
        let via_rfc = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=198.51.100.7;proto=https"),
        ]);
        let rfc = TrustedProxies::new(nets).reading(ForwardedHeader::Forwarded);
        assert_eq!(rfc.client(proxy, &via_rfc), real);
        assert!(rfc.behind(proxy, &via_rfc).https);
        let spoof = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(rfc.client(proxy, &spoof), proxy);
    }

    #[test]
    fn https_is_believed_from_trusted_proxies_only() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let said = headers(&[("x-forwarded-proto", "https")]);
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(!proxies.behind(stranger, &said).https);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(proxies.behind(proxy, &said).https);
        // The nearest proxy's value counts: a client-sent `https` before it doesn't.
        let appended = headers(&[("x-forwarded-proto", "https, http")]);
        assert!(!proxies.behind(proxy, &appended).https);
        assert!(!proxies.over_unix(&said).https, "unix not trusted");
        assert!(
            proxies
                .clone()
                .trusting_unix_socket(true)
                .over_unix(&said)
                .https
        );
        // RFC 7239: the proto of the element that named the client.
        let rfc = proxies.reading(ForwardedHeader::Forwarded);
        let chain = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=10.0.0.5;proto=http",
        )]);
        let seen = rfc.behind(proxy, &chain);
        assert_eq!(seen.client, Some("192.0.2.60".parse().unwrap()));
        assert!(seen.https);
    }
}
