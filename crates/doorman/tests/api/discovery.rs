//! Where the discovery document points verifiers, and whom doorman believes about the client:
//! URLs from `public_url`, never from a `Host` a client made up; without it, the request's own
//! host answered `no-store`, https over TLS or when a trusted proxy says so; and of a trusted
//! proxy's forwarding headers only the configured one.

use doorman::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// The discovery document as a client sending `headers` gets it: status, `Cache-Control`, the
/// body's text.
async fn discover(app: &TestApp, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut request = app.client.get(app.url(DISCOVERY));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let res = request.send().await.unwrap();
    let status = res.status();
    let cache = res
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, res.text().await.unwrap())
}

/// What an attacker puts in a request to steer the URLs: every header a proxy or framework
/// has been known to build URLs from.
const STEERING: &[(&str, &str)] = &[
    ("host", "evil.example"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-port", "6666"),
    ("forwarded", "for=6.6.6.6;host=evil.example;proto=http"),
];

dual_test! {
    async fn a_configured_public_url_is_all_the_document_names() {
        // Even from a trusted proxy, the headers change nothing once public_url is set.
        let app = spawn_app_with(&[
            ("DOORMAN_PUBLIC_URL", "https://auth.example.com/auth/"),
            ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1"),
        ])
        .await;
        let (status, cache, text) = discover(&app, STEERING).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!text.contains("evil") && !text.contains("6666"), "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["issuer"], "https://auth.example.com/auth");
        assert_eq!(
            body["jwks_uri"],
            "https://auth.example.com/auth/.well-known/jwks.json"
        );
        assert_eq!(body["token_endpoint"], "https://auth.example.com/auth/api/token/");
        // Fixed URLs can be cached by anyone, for as long as the JWKS.
        assert_eq!(cache, "public, max-age=300");
        // The same document whatever the Host, a burst of them in parallel included.
        let hosts: Vec<String> = (0..32).map(|i| format!("evil{i}.example")).collect();
        let answers = futures_util::future::join_all(hosts.iter().map(|h| {
            let app = &app;
            async move { discover(app, &[("host", h.as_str())]).await }
        }))
        .await;
        for (status, cache, other) in answers {
            assert_eq!((status, cache.as_str()), (StatusCode::OK, "public, max-age=300"));
            assert_eq!(other, text);
        }

        // The `issuer` setting still names the issuer (it is the tokens' `iss`).
        let app = spawn_app_with(&[
            ("DOORMAN_PUBLIC_URL", "https://auth.example.com"),
            ("DOORMAN_ISSUER", "urn:example:doorman"),
        ])
        .await;
        let (_, _, text) = discover(&app, STEERING).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["issuer"], "urn:example:doorman");
        assert_eq!(body["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
    }
}

dual_test! {
    async fn without_public_url_the_document_follows_the_request_and_no_cache_keeps_it() {
        let app = spawn_app().await;
        let (status, cache, text) = discover(&app, STEERING).await;
        assert_eq!(status, StatusCode::OK);
        // The client gets back the host it sent, and nobody else does: no-store.
        assert_eq!(cache, "no-store");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], "http://evil.example/.well-known/jwks.json");
        assert_eq!(body["issuer"], "http://evil.example");
        // A client's X-Forwarded-Proto is not believed: doorman's port is plain HTTP.
        let (_, _, text) = discover(&app, &[("x-forwarded-proto", "https")]).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], app.url("/.well-known/jwks.json"));
        // A Host that is not a host and port is not reflected.
        for bad in ["user@evil.example", "evil.example/x", "evil example", ""] {
            let (status, cache, text) = discover(&app, &[("host", bad)]).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{bad:?}: {status}"
            );
            if status == StatusCode::OK {
                assert_eq!(cache, "no-store");
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(body["issuer"], "http://localhost", "{bad:?}");
            }
        }
        // The JWKS names no URL, so it stays cacheable.
        let res = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
        assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    }
}

dual_test! {
    async fn a_trusted_proxy_saying_https_gives_https() {
        let app = spawn_app_with(&[("DOORMAN_TRUSTED_PROXIES", "127.0.0.1")]).await;
        let host = app.address.trim_start_matches("http://").to_owned();
        let https = format!("https://{host}/.well-known/jwks.json");
        let (_, cache, text) = discover(&app, &[("x-forwarded-proto", "https")]).await;
        assert_eq!(cache, "no-store");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], https.as_str());
        // With X-Forwarded-For the proxy's header, a `Forwarded: proto=` is someone else's.
        let (_, _, text) = discover(&app, &[("forwarded", "for=192.0.2.1;proto=https")]).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], app.url("/.well-known/jwks.json"));

        let app = spawn_app_with(&[
            ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1"),
            ("DOORMAN_FORWARDED_HEADER", "forwarded"),
        ])
        .await;
        let host = app.address.trim_start_matches("http://").to_owned();
        let (_, _, text) = discover(&app, &[("forwarded", "for=192.0.2.1;proto=https")]).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], format!("https://{host}/.well-known/jwks.json"));
        let (_, _, text) = discover(&app, &[("x-forwarded-proto", "https")]).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jwks_uri"], app.url("/.well-known/jwks.json"));
    }
}

dual_test! {
    async fn served_over_tls_the_document_names_https() {
        let dir = tempfile::tempdir().unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = certified.cert.pem();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
        let app = spawn_app_with(&[
            ("DOORMAN_TLS_CERT_FILE", &cert_file.display().to_string()),
            ("DOORMAN_TLS_KEY_FILE", &key_file.display().to_string()),
        ])
        .await;
        let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(cert.as_bytes()).unwrap()])
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let base = format!("https://localhost:{}", addr.port());
        // HTTP/2 (the host comes from `:authority`) and HTTP/1.1 alike.
        for (client, version) in [
            (client, reqwest::Version::HTTP_2),
            (
                reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(cert.as_bytes()).unwrap()])
                    .resolve("localhost", addr)
                    .http1_only()
                    .build()
                    .unwrap(),
                reqwest::Version::HTTP_11,
            ),
        ] {
            let res = client.get(format!("{base}{DISCOVERY}")).send().await.unwrap();
            assert_eq!((res.status(), res.version()), (StatusCode::OK, version));
            assert_eq!(res.headers()["cache-control"], "no-store");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["issuer"], base.as_str());
            assert_eq!(body["jwks_uri"], format!("{base}/.well-known/jwks.json"));
            assert_eq!(body["token_endpoint"], format!("{base}/api/token/"));
        }
    }
}

/// The address a login from behind a proxy leaves in the audit trail (events come oldest
/// first).
async fn audited_address(app: &TestApp, headers: &[(&str, &str)]) -> Option<String> {
    let mut request = app
        .client
        .post(app.url("/api/token/"))
        .json(&credentials(ALICE));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    let events = app
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    events
        .iter()
        .rfind(|e| e.kind == "login_succeeded")
        .and_then(|e| e.client_addr.clone())
}

dual_test! {
    async fn a_trusted_proxy_names_the_client_in_its_one_header_only() {
        // The proxy set X-Forwarded-For; the client's own `Forwarded` came through as sent.
        let both: &[(&str, &str)] = &[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        let app = spawn_app_with(&[("DOORMAN_TRUSTED_PROXIES", "127.0.0.1")]).await;
        assert_eq!(audited_address(&app, both).await.as_deref(), Some("198.51.100.7"));
        assert_eq!(
            audited_address(&app, &[("forwarded", "for=6.6.6.6")]).await.as_deref(),
            Some("127.0.0.1"),
            "a Forwarded alone is not read either"
        );
        // A proxy that speaks RFC 7239: its `Forwarded` counts, a client's X-Forwarded-For not.
        let app = spawn_app_with(&[
            ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1"),
            ("DOORMAN_FORWARDED_HEADER", "forwarded"),
        ])
        .await;
        let rfc: &[(&str, &str)] = &[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=198.51.100.7"),
        ];
        assert_eq!(audited_address(&app, rfc).await.as_deref(), Some("198.51.100.7"));
        // From a peer that is not trusted, neither header counts.
        let app = spawn_app().await;
        assert_eq!(audited_address(&app, both).await.as_deref(), Some("127.0.0.1"));
    }
}

#[test]
fn an_unknown_forwarded_header_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("doorman"))
        .current_dir(dir.path())
        .env_clear()
        .env("DOORMAN_FORWARDED_HEADER", "x-real-ip")
        .arg("check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("forwarded_header") && said.contains("expected x-forwarded-for or forwarded"),
        "{said}"
    );
}
