//! A command-line client for a doorman (or Django + simplejwt) server: log in, make
//! authenticated GETs that refresh the access token once when it has expired, log out. The
//! tokens only ever go to the origin that issued them.

pub mod session;

use std::time::Duration;

use reqwest::{StatusCode, Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

pub use session::Session;

/// Why a client command failed, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    BadUrl(String),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error("could not reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url} refused: {detail}")]
    Refused { url: String, detail: String },
    #[error("{url} is throttling requests: {detail}{}", wait_hint(.retry_after))]
    Throttled {
        url: String,
        detail: String,
        retry_after: Option<String>,
    },
    #[error(
        "the session at {base} has expired or was revoked ({detail}); log in again with `doorman client login {base} --username {username}`"
    )]
    SessionExpired {
        base: String,
        username: String,
        detail: String,
    },
    #[error(
        "{url} redirected to {location}, another origin than {base}'s; not followed, so the token stays with the server that issued it"
    )]
    RedirectedAway {
        url: String,
        location: String,
        base: String,
    },
    #[error("{url} answered {status}: {detail}")]
    Unexpected {
        url: String,
        status: StatusCode,
        detail: String,
    },
}

fn wait_hint(retry_after: &Option<String>) -> String {
    match retry_after {
        Some(wait) if wait.bytes().all(|b| b.is_ascii_digit()) => {
            format!(" (try again in {wait} seconds)")
        }
        Some(wait) => format!(" (try again after {wait})"),
        None => String::new(),
    }
}

/// An answer to a GET, whatever its status: the caller prints it.
pub struct Answer {
    pub url: Url,
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// Where a redirect that was not followed pointed.
    pub location: Option<String>,
}

/// What `logout` could do at the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Logout {
    /// The refresh token is blacklisted.
    Blacklisted,
    /// The server has no blacklist endpoint (404): the tokens stay valid until they expire.
    NoBlacklist,
    /// The server already refuses the refresh token (expired or blacklisted).
    AlreadyInvalid,
}

/// The API base from what the user typed: http(s), no query or fragment, ending in `/` so
/// that `api/token/` lands under it. Plain http is for loopback hosts unless `allow_http`.
pub fn parse_base(text: &str, allow_http: bool) -> Result<Url, ClientError> {
    let mut url = Url::parse(text)
        .map_err(|e| ClientError::BadUrl(format!("{text:?} is not a URL ({e}); give the server's base URL, e.g. https://auth.example.com/")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http || is_loopback(&url) => {}
        "http" => {
            return Err(ClientError::BadUrl(format!(
                "{url} is plain http: the password and tokens would cross the network readable; use https, or --allow-http if you must"
            )));
        }
        other => {
            return Err(ClientError::BadUrl(format!(
                "{text:?}: the scheme {other:?} is not http or https"
            )));
        }
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ClientError::BadUrl(format!("{text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::BadUrl(format!(
            "{text:?} carries credentials; give the username with --username and the password at the prompt"
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// Where `target` points: an absolute URL, or a path resolved against the base (`/x` from the
/// server's root, `x` under the base). Another origin than the base's is refused unless
/// `other_origin_ok`: the token would go with it.
pub fn resolve(base: &Url, target: &str, other_origin_ok: bool) -> Result<Url, ClientError> {
    let url = base
        .join(target)
        .map_err(|e| ClientError::BadUrl(format!("{target:?} is not a URL or path ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::BadUrl(format!(
            "{url}: only http and https URLs can be fetched"
        )));
    }
    if url.origin() != base.origin() && !other_origin_ok {
        return Err(ClientError::BadUrl(format!(
            "{url} is on another origin than {base}, which issued the token; refusing to send it there (--allow-other-origin sends it anyway)"
        )));
    }
    Ok(url)
}

/// HTTP to one server, following redirects only within the origin of each request.
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Result<Client, ClientError> {
        let policy = redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same_origin && attempt.previous().len() < 10 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("doorman-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::BadUrl(format!("could not set up HTTP: {e}")))?;
        Ok(Client { http })
    }

    /// Logs in at `base` (simplejwt's `POST api/token/`) and returns the new session.
    pub async fn login(
        &self,
        base: &Url,
        username: &str,
        password: &SecretString,
    ) -> Result<Session, ClientError> {
        let url = endpoint(base, "api/token/")?;
        let body = json!({"username": username, "password": password.expose_secret()});
        let answer = self.post(&url, &body).await?;
        let pair = match answer.status {
            StatusCode::OK => json_of(&answer),
            _ => return Err(failure(answer)),
        };
        match (pair["access"].as_str(), pair["refresh"].as_str()) {
            (Some(access), Some(refresh)) => Ok(Session {
                base_url: base.to_string(),
                username: username.to_owned(),
                access: access.to_owned(),
                refresh: refresh.to_owned(),
            }),
            _ => Err(ClientError::Unexpected {
                url: url.to_string(),
                status: answer.status,
                detail:
                    "no access and refresh token in the answer: is this a simplejwt token endpoint?"
                        .into(),
            }),
        }
    }

    /// A new access token (and refresh token, when the server rotates them) into `session`.
    pub async fn refresh(&self, session: &mut Session) -> Result<(), ClientError> {
        let base = session_base(session)?;
        let url = endpoint(&base, "api/token/refresh/")?;
        let answer = self
            .post(&url, &json!({"refresh": session.refresh}))
            .await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                return Err(ClientError::SessionExpired {
                    base: session.base_url.clone(),
                    username: session.username.clone(),
                    detail: detail_of(&answer),
                });
            }
            _ => return Err(failure(answer)),
        }
        let body = json_of(&answer);
        let Some(access) = body["access"].as_str() else {
            return Err(ClientError::Unexpected {
                url: url.to_string(),
                status: answer.status,
                detail: "no access token in the answer".into(),
            });
        };
        session.access = access.to_owned();
        if let Some(refresh) = body["refresh"].as_str() {
            session.refresh = refresh.to_owned();
        }
        Ok(())
    }

    /// GET `url` with the session's access token. On a 401 saying the token is not valid the
    /// session is refreshed once (and handed to `store` straight away, so a rotated refresh
    /// token is not lost whatever follows) and the GET retried once.
    pub async fn get<F>(
        &self,
        session: &mut Session,
        url: &Url,
        mut store: F,
    ) -> Result<Answer, ClientError>
    where
        F: FnMut(&Session) -> Result<(), ClientError>,
    {
        let first = self.get_once(session, url).await?;
        if first.status != StatusCode::UNAUTHORIZED || json_of(&first)["code"] != "token_not_valid"
        {
            return Ok(first);
        }
        self.refresh(session).await?;
        store(session)?;
        self.get_once(session, url).await
    }

    async fn get_once(&self, session: &Session, url: &Url) -> Result<Answer, ClientError> {
        let request = self.http.get(url.clone()).bearer_auth(&session.access);
        self.send(url, request).await
    }

    /// Blacklists the session's refresh token at its server, where it can be.
    pub async fn logout(&self, session: &Session) -> Result<Logout, ClientError> {
        let base = session_base(session)?;
        let url = endpoint(&base, "api/token/blacklist/")?;
        let answer = self
            .post(&url, &json!({"refresh": session.refresh}))
            .await?;
        match answer.status {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(Logout::Blacklisted),
            StatusCode::NOT_FOUND => Ok(Logout::NoBlacklist),
            StatusCode::UNAUTHORIZED => Ok(Logout::AlreadyInvalid),
            _ => Err(failure(answer)),
        }
    }

    async fn post(&self, url: &Url, body: &Value) -> Result<Answer, ClientError> {
        self.send(url, self.http.post(url.clone()).json(body)).await
    }

    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: url.to_string(),
            // reqwest's own words repeat the URL; its causes say what went wrong.
            cause: std::error::Error::source(&e).map_or_else(|| e.to_string(), cause_chain),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let location = status.is_redirection().then(|| {
            response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default()
        });
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let answer_url = response.url().clone();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        let mut answer = Answer {
            url: answer_url,
            status,
            body,
            location,
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ClientError::Throttled {
                url: answer.url.to_string(),
                detail: detail_of_body(&answer.body),
                retry_after,
            });
        }
        if let Some(location) = answer.location.take() {
            return Err(ClientError::RedirectedAway {
                location: answer
                    .url
                    .join(&location)
                    .map_or(location, |u| u.to_string()),
                base: origin_text(url),
                url: answer.url.to_string(),
            });
        }
        Ok(answer)
    }
}

fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn session_base(session: &Session) -> Result<Url, ClientError> {
    Url::parse(&session.base_url).map_err(|e| {
        ClientError::BadUrl(format!(
            "the stored base URL {:?} is not a URL ({e}); log in again",
            session.base_url
        ))
    })
}

fn endpoint(base: &Url, path: &str) -> Result<Url, ClientError> {
    base.join(path)
        .map_err(|e| ClientError::BadUrl(format!("{base}{path}: {e}")))
}

/// The error an answer other than the expected one means.
fn failure(answer: Answer) -> ClientError {
    let detail = detail_of(&answer);
    match answer.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Refused {
            url: answer.url.to_string(),
            detail,
        },
        status => ClientError::Unexpected {
            url: answer.url.to_string(),
            status,
            detail,
        },
    }
}

fn json_of(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

fn detail_of(answer: &Answer) -> String {
    detail_of_body(&answer.body)
}

/// The server's own words: DRF's `detail`, or its field errors (`username: This field is
/// required.`), or the start of a body that is not JSON.
pub fn detail_of_body(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            if let Some(detail) = map.get("detail").and_then(Value::as_str) {
                return detail.to_owned();
            }
            let fields: Vec<String> = map
                .iter()
                .map(|(field, errors)| match errors {
                    Value::Array(list) => format!(
                        "{field}: {}",
                        list.iter()
                            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    other => format!("{field}: {other}"),
                })
                .collect();
            fields.join("; ")
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let words = cause.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_base_is_normalised_and_plain_http_kept_to_loopback() {
        let base = |t: &str| parse_base(t, false).map(|u| u.to_string());
        assert_eq!(
            base("https://auth.example.com").unwrap(),
            "https://auth.example.com/"
        );
        assert_eq!(
            base("https://a.example/auth?x=1#f").unwrap(),
            "https://a.example/auth/"
        );
        assert_eq!(
            base("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000/"
        );
        assert_eq!(base("http://[::1]:8000/").unwrap(), "http://[::1]:8000/");
        assert_eq!(base("http://localhost/").unwrap(), "http://localhost/");
        assert!(base("http://auth.example.com/").is_err());
        assert!(parse_base("http://auth.example.com/", true).is_ok());
        assert!(base("ftp://auth.example.com/").is_err());
        assert!(base("auth.example.com").is_err());
        assert!(base("https://alice:pw@auth.example.com/").is_err());
    }

    #[test]
    fn targets_stay_on_the_token_origin() {
        let base = parse_base("https://auth.example.com/api-base/", false).unwrap();
        let at = |t: &str| resolve(&base, t, false).map(|u| u.to_string());
        assert_eq!(at("/hello/").unwrap(), "https://auth.example.com/hello/");
        assert_eq!(
            at("hello/").unwrap(),
            "https://auth.example.com/api-base/hello/"
        );
        assert_eq!(
            at("https://auth.example.com/x").unwrap(),
            "https://auth.example.com/x"
        );
        assert!(at("https://evil.example/x").is_err());
        assert!(at("//evil.example/x").is_err());
        assert!(at("http://auth.example.com/x").is_err());
        assert!(at("https://auth.example.com:8443/x").is_err());
        assert!(resolve(&base, "https://evil.example/x", true).is_ok());
        assert!(resolve(&base, "file:///etc/passwd", true).is_err());
    }

    #[test]
    fn the_servers_words_are_shown() {
        assert_eq!(
            detail_of_body(br#"{"detail":"No active account found with the given credentials"}"#),
            "No active account found with the given credentials"
        );
        assert_eq!(
            detail_of_body(br#"{"password":["This field is required."]}"#),
            "password: This field is required."
        );
        assert_eq!(
            detail_of_body(b"<h1>Bad Gateway</h1>"),
            "<h1>Bad Gateway</h1>"
        );
        assert_eq!(detail_of_body(b""), "(empty body)");
        assert_eq!(wait_hint(&Some("30".into())), " (try again in 30 seconds)");
    }
}
