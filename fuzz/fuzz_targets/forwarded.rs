//! Any forwarding headers (`X-Forwarded-For`, `X-Forwarded-Proto`, `Forwarded`) from any
//! peer. Input: a flags byte (which header is read, whether the Unix socket is trusted,
//! which peer), then `name: value` lines. An untrusted peer is the client whatever it sends;
//! a trusted one yields a canonical address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use doorman::serve::client::{Forwarded, ForwardedHeader, TrustedProxies};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const PEERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    // ::ffff:10.0.0.2, trusted as 10.0.0.2
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0002)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
];

fn is_canonical(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let nets: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.0/8", "::1/128", "fd00::/8"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let header = if flags & 1 == 0 {
        ForwardedHeader::XForwardedFor
    } else {
        ForwardedHeader::Forwarded
    };
    let unix = flags & 2 != 0;
    let proxies = TrustedProxies::new(nets)
        .trusting_unix_socket(unix)
        .reading(header);
    let peer = PEERS[usize::from(flags >> 2) % PEERS.len()];

    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }

    let found = proxies.behind(peer, &headers);
    let client = found.client.unwrap_or(peer);
    assert!(is_canonical(client), "a v4-mapped client address: {client}");
    assert_eq!(proxies.client(peer, &headers), client);
    if peer == PEERS[3] {
        assert_eq!(
            found,
            Forwarded {
                client: Some(peer),
                https: false
            },
            "an untrusted peer steered its own address or scheme"
        );
    }
    let over_unix = proxies.over_unix(&headers);
    if !unix {
        assert_eq!(over_unix, Forwarded::default());
    }
    if let Some(ip) = over_unix.client {
        assert!(is_canonical(ip));
    }
});
