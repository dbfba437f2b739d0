//! The guard in front of a real axum service, as another Rust service would use it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use doorman_guard::{Authenticated, Guard, RequireTokenLayer};
use doorman_token::{Algorithm, Key, KeySet, TokenRules, Tokens};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SECRET: &[u8] = b"doorman-test-only-hs256-secret-0123456789abcdef";

fn tokens() -> Tokens {
    Tokens::new(
        KeySet::new(Key::hmac(Algorithm::HS256, SECRET).unwrap()),
        TokenRules::default(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn call(app: Router, auth: Option<&str>) -> (StatusCode, String, Option<String>) {
    let mut req = Request::get("/hello/");
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), www)
}

fn extractor_app(guard: Guard) -> Router {
    async fn hello(user: Authenticated) -> String {
        format!("user {}", user.user_id.unwrap_or(0))
    }
    Router::new().route("/hello/", get(hello)).with_state(guard)
}

fn layer_app(guard: Guard) -> Router {
    async fn hello(axum::Extension(user): axum::Extension<Authenticated>) -> String {
        format!("user {}", user.user_id.unwrap_or(0))
    }
    Router::new()
        .route("/hello/", get(hello))
        .layer(RequireTokenLayer::new(guard))
}

#[tokio::test]
async fn extractor_and_layer_answer_alike() {
    let t = tokens();
    let access = t
        .encode(&t.access_from_refresh(&t.refresh_for_user("5", now()), now()))
        .unwrap();
    let refresh = t.encode(&t.refresh_for_user("5", now())).unwrap();
    for app in [
        extractor_app(Guard::new(tokens())),
        layer_app(Guard::new(tokens())),
    ] {
        let (s, b, _) = call(app.clone(), Some(&format!("Bearer {access}"))).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "user 5"));

        let (s, b, www) = call(app.clone(), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Authentication credentials were not provided."}"#
        );
        assert_eq!(www.as_deref(), Some("Bearer realm=\"api\""));

        let (s, b, www) = call(app.clone(), Some(&format!("bearer {access}"))).await;
        assert_eq!(
            (s, b.as_str(), www.as_deref()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Authentication credentials were not provided."}"#,
                Some("Bearer realm=\"api\"")
            )
        );

        let (s, b, www) = call(app.clone(), Some("Bearer a b")).await;
        assert_eq!(
            (s, b.as_str(), www.as_deref()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}"#,
                Some("Bearer realm=\"api\"")
            )
        );

        let (s, b, _) = call(app.clone(), Some(&format!("Bearer {refresh}"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token has wrong type"}]}"#
        );

        let (s, _, _) = call(app.clone(), Some(&format!("  Bearer\t{access}  "))).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test]
async fn custom_header_types_are_named_in_the_challenge() {
    let guard = Guard::new(tokens()).with_header_types(vec!["JWT".into(), "Bearer".into()]);
    let (s, b, www) = call(extractor_app(guard), None).await;
    assert_eq!(
        (s, b.as_str(), www.as_deref()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"detail":"Authentication credentials were not provided."}"#,
            Some("JWT realm=\"api\"")
        )
    );
}

/// The guard checks a `kid` as its key set says (`KeySet::ignores_kid`): with one static
/// HMAC secret, as a Django deployment shares it, a token naming a `kid` is accepted, as
/// simplejwt accepts it; once the `kid` chooses between keys, one naming no key is refused.
#[tokio::test]
async fn a_kid_is_ignored_only_with_one_static_hmac_secret() {
    // The same secret, but its tokens name a kid: what a Django service adding one sends.
    let named = Tokens::new(
        KeySet::new(
            Key::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .with_kid(Some("x".into())),
        ),
        TokenRules::default(),
    );
    let access = named
        .encode(&named.access_from_refresh(&named.refresh_for_user("5", now()), now()))
        .unwrap();
    let auth = format!("Bearer {access}");

    for app in [
        extractor_app(Guard::new(tokens())),
        layer_app(Guard::new(tokens())),
    ] {
        let (s, b, _) = call(app, Some(&auth)).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "user 5"));
    }

    let two_secrets = || {
        let second = Key::hmac(Algorithm::HS256, b"another test-only secret, 32+ bytes")
            .unwrap()
            .with_kid(Some("second".into()));
        Tokens::new(
            KeySet::new(Key::hmac(Algorithm::HS256, SECRET).unwrap())
                .with_verify_only(second)
                .unwrap(),
            TokenRules::default(),
        )
    };
    for app in [
        extractor_app(Guard::new(two_secrets())),
        layer_app(Guard::new(two_secrets())),
    ] {
        let (s, b, _) = call(app, Some(&auth)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#
        );
    }
}
