//! Who the client is. Behind a reverse proxy the TCP peer is the proxy; its `X-Forwarded-For`
//! (or `Forwarded: for=`) names the client, but only a proxy listed in `trusted_proxies` may
//! say so, or any client could claim any address. The address found is what the access log
//! (and later audit and rate limits) use.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address, as far as doorman can trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose forwarding headers are believed: networks, and (with the entry `unix`
/// in `trusted_proxies`) whatever connects over doorman's Unix socket, such as nginx.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
    unix: bool,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies {
            nets: nets.into(),
            unix: false,
        }
    }

    /// Also believe peers on the Unix socket.
    pub fn trusting_unix_socket(mut self, unix: bool) -> TrustedProxies {
        self.unix = unix;
        self
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a Unix-socket peer: the rightmost untrusted forwarded address when
    /// that peer is trusted, else unknown.
    pub fn client_over_unix(&self, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.unix {
            return None;
        }
        self.behind_trusted(headers)
    }

    /// Walking the forwarding chain from the nearest hop: the first address that is not a
    /// trusted proxy (the rightmost untrusted one, which a client can't forge), or the
    /// farthest hop when all are trusted; `None` for an empty chain.
    fn behind_trusted(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = None;
        for hop in forwarded_for(headers).iter().rev() {
            let hop = canonical(*hop);
            client = Some(hop);
            if !self.trusts(hop) {
                break;
            }
        }
        client
    }

    /// The client behind `peer`: walking the forwarding chain from the nearest hop, the first
    /// address that is not a trusted proxy (the rightmost untrusted one, which a client can't
    /// forge). Without a trusted peer, the peer itself.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        self.behind_trusted(headers).unwrap_or(peer)
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a proxy chain reported, nearest last: RFC 7239 `Forwarded: for=` when present,
/// else `X-Forwarded-For`. Entries that are not addresses (`unknown`, obfuscated ids) end the
/// walk there, so nothing before them is believed.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let entries: Vec<String> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| value.trim_matches('"').to_owned())
                })
            })
            .collect()
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for entry in entries.iter().rev() {
        match parse_node(entry) {
            Some(ip) => addresses.push(ip),
            None => break,
        }
    }
    addresses.reverse();
    addresses
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
        assert_eq!(
            proxies.client(proxy, &rfc7239),
            "2001:db8::17".parse::<IpAddr>().unwrap()
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
}
