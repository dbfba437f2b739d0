//! Keys learned from a JWKS URL (doorman's `/.well-known/jwks.json`), for services that verify
//! doorman's tokens without holding any key themselves.
//!
//! The set is fetched at start, again when it is older than `max_age`, and again when a token
//! names a `kid` the set doesn't hold (a rotation) — but never more than once per `cooldown`,
//! so a flood of tokens with made-up `kid`s causes at most one fetch per cooldown. At most
//! `max_keys` keys are kept; HMAC and private members are refused (a JWKS never carries them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use doorman_token::{Algorithm, Key, KeySet, TokenRules, Tokens};
use serde_json::Value;
use tokio::sync::Mutex;

/// Why a JWKS couldn't be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("could not fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the JWKS at {url} has no usable key")]
    NoKeys { url: String },
}

/// Tuning for [`JwksSource`]. The defaults suit doorman's JWKS (`Cache-Control: max-age=300`).
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// Fetch again when the set is older than this.
    pub max_age: Duration,
    /// Never fetch more often than this (`docs/security.md` 4.20: at least 30 s in production).
    pub cooldown: Duration,
    /// Keep at most this many keys from one JWKS.
    pub max_keys: usize,
    /// How long one fetch may take.
    pub timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            max_age: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            max_keys: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A key set kept up to date from a JWKS URL. Cheap to share (`Arc`).
pub struct JwksSource {
    url: String,
    client: reqwest::Client,
    options: JwksOptions,
    tokens: Arc<Tokens>,
    /// When the set was last fetched (or a fetch last attempted).
    last_fetch: Mutex<Instant>,
    fetches: AtomicU64,
}

impl JwksSource {
    /// Fetches the JWKS once; fails when it can't be fetched or holds no usable key.
    pub async fn fetch(
        url: impl Into<String>,
        rules: TokenRules,
        options: JwksOptions,
    ) -> Result<Arc<JwksSource>, JwksError> {
        doorman_token::install_crypto_provider();
        let url = url.into();
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksError::Fetch {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let keys = download(&client, &url, options.max_keys).await?;
        Ok(Arc::new(JwksSource {
            url,
            client,
            options,
            tokens: Arc::new(Tokens::new(keys, rules)),
            last_fetch: Mutex::new(Instant::now()),
            fetches: AtomicU64::new(1),
        }))
    }

    /// The verifier, with the keys fetched so far.
    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// How many times the JWKS was fetched (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Whether the set is older than `max_age` (and nobody is fetching it right now).
    pub fn is_stale(&self) -> bool {
        self.last_fetch
            .try_lock()
            .is_ok_and(|last| last.elapsed() >= self.options.max_age)
    }

    /// Fetches again when the token names an unknown `kid` or the set is older than
    /// `max_age`, unless the last fetch was less than `cooldown` ago or another request is
    /// fetching right now. Returns whether the key set changed.
    pub async fn refresh_for(&self, token: &str) -> bool {
        let unknown = self.tokens.names_unknown_key(token);
        let Ok(mut last) = self.last_fetch.try_lock() else {
            return false;
        };
        let age = last.elapsed();
        if age < self.options.cooldown || (!unknown && age < self.options.max_age) {
            return false;
        }
        *last = Instant::now();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match download(&self.client, &self.url, self.options.max_keys).await {
            Ok(keys) => {
                self.tokens.replace_keys(keys);
                true
            }
            // Keep verifying with the keys we have; the next cue after the cooldown retries.
            Err(_) => false,
        }
    }
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    max_keys: usize,
) -> Result<KeySet, JwksError> {
    let failed = |reason: String| JwksError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("status {}", response.status())));
    }
    let body: Value = response.json().await.map_err(|e| failed(e.to_string()))?;
    let keys: Vec<Key> = body
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|jwk| {
                    let alg: Algorithm = jwk.get("alg")?.as_str()?.parse().ok()?;
                    if alg.is_hmac() {
                        return None;
                    }
                    Key::from_jwk(alg, jwk).ok()
                })
                .take(max_keys)
                .collect()
        })
        .unwrap_or_default();
    let mut keys = keys.into_iter();
    let first = keys.next().ok_or_else(|| JwksError::NoKeys {
        url: url.to_owned(),
    })?;
    // A JWKS repeating a kid keeps the first key under it.
    Ok(keys.fold(KeySet::new(first), |set, key| {
        set.clone().with_verify_only(key).unwrap_or(set)
    }))
}
