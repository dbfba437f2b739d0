//! A write load that keeps a ledger: clients logging in, refreshing (rotation with
//! blacklisting), blacklisting and logging out everywhere as fast as answers come, each writing
//! down every answer it received; and the check of a ledger against the server afterwards, over
//! HTTP. The crash test runs it until doorman is killed, the PostgreSQL restart test until it
//! is told to stop.
//!
//! A write answered 200 is acknowledged: it must hold. A write that got no answer (the server
//! died under it) or was answered 503 (the database went away, possibly after its COMMIT) is
//! doubtful: it happened or it didn't, without failing either way; the client drops the token,
//! logs in again, and once the server answers again refreshes with the doubtful token to find
//! out which (refused: it happened), or the check does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// Every ledger client's password.
pub(crate) const PASSWORD: &str = "ledger-test-password-1";

/// A random number below `n`, from a v4 UUID's random bits (no random crate needed here).
pub(crate) fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) % n
}

/// The writes a client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Login,
    Rotation,
    Blacklist,
    RevokeAll,
}

/// One write and its answer: when it was sent, how long the answer took, its status (`None`:
/// no answer).
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub(crate) write: Write,
    pub(crate) sent: Instant,
    pub(crate) took: Duration,
    pub(crate) status: Option<StatusCode>,
}

impl Answered {
    /// When the answer came (or the request gave up).
    pub(crate) fn at(&self) -> Instant {
        self.sent + self.took
    }
}

/// A write on a refresh token that may or may not have taken effect.
#[derive(Debug, Clone)]
pub(crate) struct Doubtful {
    pub(crate) write: Write,
    pub(crate) token: String,
    /// A logout everywhere acknowledged later spent the token whatever became of this write.
    pub(crate) revoked_later: bool,
    /// Whether it took effect, as the client found out once the server answered again: a
    /// refresh with the token refused (it did) or answered 200 (it did not, and that refresh
    /// spent the token). `None` until then.
    pub(crate) settled: Option<bool>,
}

/// How long a load runs.
#[derive(Clone)]
pub(crate) enum Until {
    /// Until the server stops answering (it was killed): the request it dropped is the one in
    /// flight, and the client stops there.
    ServerGone,
    /// Until the flag is set; the server must answer every request meanwhile (a request the
    /// client's timeout ends is an anomaly). The counter counts the writes acknowledged.
    Stopped(Arc<AtomicBool>, Arc<AtomicUsize>),
}

/// One client's record of what the server acknowledged during a run.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Every refresh token the client received (from a login or a rotation answered 200).
    pub(crate) issued: Vec<String>,
    /// The token the client holds: the newest successor, not spent by any acknowledged answer.
    pub(crate) current: Option<(String, String)>,
    /// Access tokens received since the last revoke-all answered 200.
    pub(crate) access: Vec<String>,
    /// Access tokens received before a revoke-all answered 200: refused.
    pub(crate) revoked_access: Vec<String>,
    pub(crate) logins: usize,
    pub(crate) rotations: usize,
    pub(crate) blacklists: usize,
    pub(crate) revocations: usize,
    /// The write the server dropped when it stopped answering ([`Until::ServerGone`]).
    pub(crate) in_flight: Option<Write>,
    /// Writes that got no answer or a 503: their tokens are neither current nor spent.
    pub(crate) doubtful: Vec<Doubtful>,
    /// Every write sent, in order.
    pub(crate) answers: Vec<Answered>,
    /// Answers nothing explains (an unexpected status, a 503 without `Retry-After`).
    pub(crate) anomalies: Vec<String>,
}

impl Ledger {
    /// Writes acknowledged with 200.
    pub(crate) fn acknowledged(&self) -> usize {
        self.logins + self.rotations + self.blacklists + self.revocations
    }

    /// The client's token was written to with an answer that doesn't settle it: it logs in
    /// again.
    fn doubt(&mut self, write: Write) {
        if let Some((token, _)) = self.current.take() {
            self.doubtful.push(Doubtful {
                write,
                token,
                revoked_later: false,
                settled: None,
            });
        }
    }
}

/// A server's answer.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) retry_after: Option<String>,
}

pub(crate) async fn post(
    client: &Client,
    url: String,
    body: Value,
    access: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let mut request = client.post(url).json(&body);
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    let res = request.send().await?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    Ok(Reply {
        status,
        body,
        retry_after,
    })
}

/// The pair in a 200 answer of the login or refresh view.
pub(crate) fn pair(body: &Value) -> Option<(String, String)> {
    Some((
        body["refresh"].as_str()?.to_owned(),
        body["access"].as_str()?.to_owned(),
    ))
}

/// Logs in, rotates, blacklists and revokes as `username` as fast as answers come, until
/// `until`; the ledger of what it acknowledged. `ready` is waited on after the first login, so
/// that what the test does to the server falls among the writes, not among the first logins'
/// hashing.
pub(crate) async fn load(
    client: Client,
    base: String,
    username: String,
    ready: Arc<tokio::sync::Barrier>,
    until: Until,
) -> Ledger {
    let mut ledger = Ledger::default();
    loop {
        if let Until::Stopped(stop, _) = &until
            && stop.load(Ordering::Relaxed)
        {
            return ledger;
        }
        if ledger.current.is_some()
            && let Some(at) = ledger
                .doubtful
                .iter()
                .position(|d| d.settled.is_none() && !d.revoked_later)
        {
            // The server answers again: find out what became of a doubtful write while its
            // token's fate is still its own.
            let token = ledger.doubtful[at].token.clone();
            let sent = Instant::now();
            let reply = post(
                &client,
                format!("{base}/api/token/refresh/"),
                json!({ "refresh": token }),
                None,
            )
            .await;
            let took = sent.elapsed();
            ledger.answers.push(Answered {
                write: Write::Rotation,
                sent,
                took,
                status: reply.as_ref().ok().map(|r| r.status),
            });
            match reply.map(|r| (r.status, r)) {
                Ok((StatusCode::UNAUTHORIZED, _)) => ledger.doubtful[at].settled = Some(true),
                Ok((StatusCode::OK, _)) => ledger.doubtful[at].settled = Some(false),
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok((status, reply)) => {
                    ledger.anomalies.push(format!(
                        "the token of a doubtful {:?} got {status}: {}",
                        ledger.doubtful[at].write, reply.body
                    ));
                    ledger.doubtful.remove(at);
                }
                Err(error) => match until {
                    // What the probe did is unknown; the check asks again.
                    Until::ServerGone => return ledger,
                    Until::Stopped(..) => ledger.anomalies.push(format!(
                        "a doubtful write's token not answered in {took:?}: {error}"
                    )),
                },
            }
            continue;
        }
        // Mostly rotations, the write that matters most; now and then a blacklist or a logout
        // everywhere, which end the chain and make the client log in again (a login hashes a
        // password, a hundred times a rotation's work: rarer, so that what happens to the
        // server finds rotations too).
        let (write, path, body, bearer) = match ledger.current.clone() {
            None => (
                Write::Login,
                "/api/token/",
                json!({"username": username, "password": PASSWORD}),
                None,
            ),
            Some((refresh, access)) => match random_below(40) {
                0..=37 => (
                    Write::Rotation,
                    "/api/token/refresh/",
                    json!({ "refresh": refresh }),
                    None,
                ),
                38 => (
                    Write::Blacklist,
                    "/api/token/blacklist/",
                    json!({ "refresh": refresh }),
                    None,
                ),
                _ => (
                    Write::RevokeAll,
                    "/api/token/revoke-all/",
                    json!({}),
                    Some(access),
                ),
            },
        };
        let sent = Instant::now();
        let reply = post(&client, format!("{base}{path}"), body, bearer.as_deref()).await;
        let took = sent.elapsed();
        ledger.answers.push(Answered {
            write,
            sent,
            took,
            status: reply.as_ref().ok().map(|r| r.status),
        });
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                ledger.doubt(write);
                match until {
                    Until::ServerGone => {
                        ledger.in_flight = Some(write);
                        return ledger;
                    }
                    Until::Stopped(..) => {
                        ledger
                            .anomalies
                            .push(format!("{write:?} not answered in {took:?}: {error}"));
                        continue;
                    }
                }
            }
        };
        if let (StatusCode::OK, Until::Stopped(_, acknowledged)) = (reply.status, &until) {
            acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        match (write, reply.status) {
            (_, StatusCode::SERVICE_UNAVAILABLE) => {
                if reply.retry_after.is_none() || !reply.body["detail"].is_string() {
                    ledger.anomalies.push(format!(
                        "{write:?} 503 without Retry-After or a JSON detail: {:?} {}",
                        reply.retry_after, reply.body
                    ));
                }
                // A 503 may come after the COMMIT reached the database (the connection died
                // before the answer did): the write may have happened.
                ledger.doubt(write);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Write::Login, StatusCode::TOO_MANY_REQUESTS) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Write::Login | Write::Rotation, StatusCode::OK) => match pair(&reply.body) {
                Some((r, a)) => {
                    ledger.issued.push(r.clone());
                    ledger.access.push(a.clone());
                    ledger.current = Some((r, a));
                    if write == Write::Login {
                        ledger.logins += 1;
                        if ledger.logins == 1 {
                            ready.wait().await;
                        }
                    } else {
                        ledger.rotations += 1;
                    }
                }
                None => {
                    ledger
                        .anomalies
                        .push(format!("{write:?} 200 without a pair: {}", reply.body));
                    ledger.current = None;
                }
            },
            (Write::Blacklist, StatusCode::OK) => {
                ledger.current = None;
                ledger.blacklists += 1;
            }
            (Write::RevokeAll, StatusCode::OK) => {
                ledger.current = None;
                let before = std::mem::take(&mut ledger.access);
                ledger.revoked_access.extend(before);
                for doubtful in &mut ledger.doubtful {
                    doubtful.revoked_later = true;
                }
                ledger.revocations += 1;
            }
            (write, status) => {
                // The token is this client's alone and unspent by any answer it got.
                ledger.anomalies.push(format!(
                    "{write:?} of the current token {status}: {}",
                    reply.body
                ));
                ledger.current = None;
            }
        }
    }
}

/// What the server says to a refresh with `token`.
pub(crate) async fn refresh_status(client: &Client, base: &str, token: &str) -> StatusCode {
    post(
        client,
        format!("{base}/api/token/refresh/"),
        json!({ "refresh": token }),
        None,
    )
    .await
    .map_or(StatusCode::BAD_GATEWAY, |reply| reply.status)
}

/// What checking a ledger found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub(crate) failures: Vec<String>,
    /// Requests made to check acknowledged answers.
    pub(crate) requests: usize,
    /// Doubtful writes that took effect, and that did not.
    pub(crate) took_effect: usize,
    pub(crate) did_not: usize,
    /// Doubtful writes whose token a later acknowledged logout everywhere spent anyway (checked
    /// as refused, whatever became of the write).
    pub(crate) spent_later: usize,
}

/// Checks a ledger against the server: every token an acknowledged answer spent is refused,
/// the current one refreshes, access tokens from before an acknowledged logout everywhere are
/// refused; each doubtful write is found to have happened or not, never answered otherwise.
pub(crate) async fn check(client: &Client, base: &str, ledger: &Ledger) -> Checked {
    let mut checked = Checked {
        failures: ledger.anomalies.clone(),
        spent_later: ledger
            .doubtful
            .iter()
            .filter(|d| d.revoked_later && d.settled.is_none())
            .count(),
        took_effect: ledger
            .doubtful
            .iter()
            .filter(|d| d.settled == Some(true))
            .count(),
        did_not: ledger
            .doubtful
            .iter()
            .filter(|d| d.settled == Some(false))
            .count(),
        ..Checked::default()
    };
    let current = ledger.current.as_ref().map(|(r, _)| r.clone());
    let open: Vec<&Doubtful> = ledger
        .doubtful
        .iter()
        .filter(|d| !d.revoked_later && d.settled.is_none())
        .collect();
    // With rotation and blacklisting after rotation, a refresh with a rotated-out token
    // revokes its whole family (reuse detection), the live end included, and would hide a
    // token of the family left unspent. So the doubtful tokens and the current one are asked
    // with a refresh first, and the spent ones with verify, which answers from the blacklist
    // and changes nothing.
    for doubtful in &open {
        match refresh_status(client, base, &doubtful.token).await {
            StatusCode::UNAUTHORIZED => checked.took_effect += 1,
            StatusCode::OK => checked.did_not += 1,
            status => checked.failures.push(format!(
                "the token of a doubtful {:?} got {status}",
                doubtful.write
            )),
        }
    }
    if let Some(token) = &current {
        checked.requests += 1;
        let reply = post(
            client,
            format!("{base}/api/token/refresh/"),
            json!({ "refresh": token }),
            None,
        )
        .await;
        let status = reply.as_ref().map_or(StatusCode::BAD_GATEWAY, |r| r.status);
        if status != StatusCode::OK {
            let last: Vec<_> = ledger
                .answers
                .iter()
                .rev()
                .take(8)
                .map(|a| (a.write, a.status))
                .collect();
            checked.failures.push(format!(
                "the newest successor of acknowledged rotations got {status} {}: in flight \
                 {:?}, the last answers (newest first) {last:?}",
                reply.map(|r| r.body).unwrap_or_default(),
                ledger.in_flight,
            ));
        }
    }
    // Every other token was spent by an acknowledged rotation, blacklist or revoke-all, or by
    // the refresh that settled a doubtful write.
    for (at, token) in ledger.issued.iter().enumerate() {
        if Some(token) == current.as_ref() || open.iter().any(|d| &d.token == token) {
            continue;
        }
        checked.requests += 1;
        // simplejwt's verify answers a blacklisted token 400 `Token is blacklisted`.
        let reply = post(
            client,
            format!("{base}/api/token/verify/"),
            json!({ "token": token }),
            None,
        )
        .await;
        let status = reply.as_ref().map_or(StatusCode::BAD_GATEWAY, |r| r.status);
        let blacklisted = reply.is_ok_and(|r| {
            r.status == StatusCode::BAD_REQUEST
                && r.body == json!({"non_field_errors": ["Token is blacklisted"]})
        });
        if !blacklisted {
            checked.failures.push(format!(
                "a token spent by an acknowledged answer got {status} from verify: token {} of the {} \
                 issued, {} rotations acknowledged, in flight {:?}",
                at + 1,
                ledger.issued.len(),
                ledger.rotations,
                ledger.in_flight,
            ));
        }
    }
    for access in &ledger.revoked_access {
        checked.requests += 1;
        let status = client
            .get(format!("{base}/hello/"))
            .bearer_auth(access)
            .send()
            .await
            .map_or(StatusCode::BAD_GATEWAY, |r| r.status());
        if status != StatusCode::UNAUTHORIZED {
            checked.failures.push(format!(
                "an access token issued before an acknowledged revoke-all got {status}"
            ));
        }
    }
    checked
}
