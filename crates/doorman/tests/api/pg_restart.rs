//! PostgreSQL restarted, and its connections killed, under write load, on a cluster of the
//! test's own: doorman (in-process, never restarted) keeps answering, writes fail fast with 503
//! while PostgreSQL is away and succeed again within 2 s of its return, token checks answer
//! from the token throughout, and every acknowledged write holds afterwards.
//!
//! The suite restarts 4 times (crashes and fast shutdowns in turn); `DOORMAN_PG_RESTARTS=20`
//! runs the long version:
//!
//!     DOORMAN_PG_RESTARTS=20 cargo test -p doorman --test api pg_restart:: -- --nocapture

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use crate::helpers::*;
use crate::ledger::{Answered, Checked, Ledger, PASSWORD, Until, Write, check, load};
use crate::outage::{Answer, OwnPostgres, answers, hello_load, timed};

/// Clients writing, one user each.
const WRITERS: usize = 4;

/// Clients checking one access token on `/hello/`.
const CHECKERS: usize = 2;

/// Each checker's pause between checks: without one, token checks (microseconds each) take
/// both cores and the logins' hashing, at the lowest priority, starves.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// The longest any request may take, write or token check, while PostgreSQL is away or coming
/// back.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How long PostgreSQL stays down at each restart.
const DOWN_FOR: Duration = Duration::from_millis(2500);

/// The longest from PostgreSQL's return to the first write acknowledged.
const RECOVERED_WITHIN: Duration = Duration::from_secs(2);

/// doorman on a cluster of its own, with writers keeping ledgers and token checkers running.
struct Rig {
    cluster: OwnPostgres,
    app: TestApp,
    /// The writers' client: a request not answered in 5 s is a hang.
    client: Client,
    stop: Arc<AtomicBool>,
    /// Writes acknowledged so far, all writers together.
    acknowledged: Arc<AtomicUsize>,
    writers: Vec<tokio::task::JoinHandle<Ledger>>,
    checkers: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Rig {
    /// The cluster started, doorman on it with rotation and blacklisting after rotation (no
    /// reuse grace: every rotated-out token must be refused), every writer logged in once and
    /// the checkers running; `None` (after `skip_or_fail`) without PostgreSQL's server binaries.
    async fn start(what: &str) -> Option<Rig> {
        let cluster = match OwnPostgres::create() {
            Ok(cluster) => cluster,
            Err(reason) => {
                skip_or_fail(what, &reason);
                return None;
            }
        };
        tokio::task::block_in_place(|| cluster.start());
        let url = cluster.url();
        let app = spawn_app_with(&[
            ("DOORMAN_DATABASE_URL", &url),
            ("DOORMAN_PRUNE_INTERVAL", "0"),
            // Every token check looks its user up.
            ("DOORMAN_USER_CACHE_TTL", "0"),
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let users: Vec<String> = (0..WRITERS).map(|i| format!("writer{i}")).collect();
        for user in &users {
            app.create_user(user, PASSWORD, true).await;
        }
        let (_, access) = app.login().await;
        let client = Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
        let writers = users
            .into_iter()
            .map(|user| {
                tokio::spawn(load(
                    client.clone(),
                    app.address.clone(),
                    user,
                    ready.clone(),
                    Until::Stopped(stop.clone(), acknowledged.clone()),
                ))
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(30), ready.wait())
            .await
            .expect("every writer logged in within 30 s");
        let checkers = hello_load(&app, &access, CHECKERS, CHECK_EVERY, &stop);
        Some(Rig {
            cluster,
            app,
            client,
            stop,
            acknowledged,
            writers,
            checkers,
        })
    }

    /// Stops the load; the ledgers, every write's answer (in the order sent) and every token
    /// check's.
    async fn finish(&mut self) -> (Vec<Ledger>, Vec<Answered>, Vec<Answer>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ledgers = Vec::new();
        for writer in self.writers.drain(..) {
            let ledger = tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("a writer stopped within 30 s")
                .expect("a writer task");
            ledgers.push(ledger);
        }
        let checks = tokio::time::timeout(
            Duration::from_secs(30),
            answers(std::mem::take(&mut self.checkers)),
        )
        .await
        .expect("the token checkers stopped within 30 s");
        let mut writes: Vec<Answered> = ledgers.iter().flat_map(|l| l.answers.clone()).collect();
        writes.sort_by_key(|a| a.sent);
        (ledgers, writes, checks)
    }

    /// Every ledger checked against doorman, the findings summed.
    async fn check(&self, ledgers: &[Ledger]) -> Checked {
        let mut all = Checked::default();
        for (i, ledger) in ledgers.iter().enumerate() {
            let found = check(&self.client, &self.app.address, ledger).await;
            all.failures.extend(
                found
                    .failures
                    .into_iter()
                    .map(|f| format!("writer{i}: {f}")),
            );
            all.requests += found.requests;
            all.took_effect += found.took_effect;
            all.did_not += found.did_not;
            all.spent_later += found.spent_later;
        }
        all
    }
}

/// When one restart's steps began and ended.
struct Restart {
    mode: &'static str,
    stopping: Instant,
    stopped: Instant,
    starting: Instant,
    started: Instant,
}

/// Restarts from `DOORMAN_PG_RESTARTS`, 4 by default.
fn restarts() -> usize {
    match std::env::var("DOORMAN_PG_RESTARTS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("DOORMAN_PG_RESTARTS={v:?} is not a count")),
        Err(_) => 4,
    }
}

/// Minimum, median and maximum.
fn spread(values: &[Duration]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort();
    match (sorted.first(), sorted.last()) {
        (Some(min), Some(max)) => format!(
            "min {} / median {} / max {} ms",
            min.as_millis(),
            sorted[sorted.len() / 2].as_millis(),
            max.as_millis()
        ),
        _ => "none".into(),
    }
}

/// PostgreSQL crashed (`pg_ctl stop -m immediate`, crash recovery at the next start) and shut
/// down (`-m fast`) in turn, and started again, while writers log in, rotate, blacklist and
/// log out everywhere and token checkers loop on `/hello/`; doorman runs throughout. Per
/// restart: the writes' error window, and the time from `pg_ctl start` returning to the
/// sending of the first write acknowledged (under 2 s); no request takes 2 s or more while
/// PostgreSQL is away (but for logins sent while it was still up or back, whose password
/// hashes run at the lowest priority, which a busy machine stretches); no write sent while it is
/// acknowledged; every token check answers 200; afterwards every ledger holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_write_load_loses_no_acknowledged_write() {
    let _alone = crate::helpers::WHOLE_MACHINE.lock().await;
    let Some(mut rig) = Rig::start("the PostgreSQL restart test").await else {
        return;
    };
    let mut restarts_done = Vec::new();
    for i in 0..restarts() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mode = if i % 2 == 0 { "immediate" } else { "fast" };
        let stopping = Instant::now();
        tokio::task::block_in_place(|| rig.cluster.stop_with(mode));
        let stopped = Instant::now();
        // Down for longer than a request may take: a write waiting for PostgreSQL instead of
        // failing fast would show.
        tokio::time::sleep(DOWN_FOR).await;
        let starting = Instant::now();
        tokio::task::block_in_place(|| rig.cluster.start());
        let started = Instant::now();
        let acknowledged_before = rig.acknowledged.load(Ordering::Relaxed);
        restarts_done.push(Restart {
            mode,
            stopping,
            stopped,
            starting,
            started,
        });
        // The next restart only once doorman is ready again and a write sent after the return
        // was acknowledged (what is measured), so that each restart's recovery shows. After
        // an outage the writers log in again, and a login's password hash runs at the lowest
        // priority: on a busy machine its acknowledgement may come seconds later.
        while started.elapsed() < Duration::from_secs(10) {
            let ready = rig
                .app
                .client
                .get(rig.app.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready && rig.acknowledged.load(Ordering::Relaxed) > acknowledged_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Long enough for the last restart's recovery to show.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let end = Instant::now();
    let (ledgers, writes, checks) = rig.finish().await;

    let mut failures = Vec::new();
    let (mut windows, mut recoveries, mut slowest_during) = (Vec::new(), Vec::new(), Vec::new());
    let mut checks_during = 0;
    for (i, restart) in restarts_done.iter().enumerate() {
        let next = restarts_done.get(i + 1).map_or(end, |r| r.stopping);
        let at = |a: &&Answered| a.at() >= restart.stopping && a.at() < next;
        let refused: Vec<&Answered> = writes
            .iter()
            .filter(at)
            .filter(|a| a.status != Some(StatusCode::OK))
            .collect();
        let (Some(first), Some(last)) = (refused.first(), refused.last()) else {
            failures.push(format!(
                "restart {} ({}): no write was refused: the outage went unseen",
                i + 1,
                restart.mode
            ));
            continue;
        };
        let window = last.at().saturating_duration_since(first.at());
        // Nothing can commit while PostgreSQL is down.
        let acknowledged_while_down = writes
            .iter()
            .filter(|a| a.sent >= restart.stopped && a.sent < restart.starting)
            .filter(|a| a.status == Some(StatusCode::OK))
            .count();
        if acknowledged_while_down > 0 {
            failures.push(format!(
                "restart {}: {acknowledged_while_down} writes sent while PostgreSQL was down \
                 were acknowledged",
                i + 1
            ));
        }
        let Some(first_acknowledged) = writes
            .iter()
            .filter(at)
            .filter(|a| a.sent >= restart.stopped && a.status == Some(StatusCode::OK))
            .min_by_key(|a| a.at())
        else {
            let after: Vec<_> = writes
                .iter()
                .filter(|a| a.sent >= restart.started)
                .take(40)
                .map(|a| {
                    (
                        a.write,
                        a.status.map(|s| s.as_u16()),
                        a.sent.duration_since(restart.started).as_millis(),
                        a.took.as_millis(),
                    )
                })
                .collect();
            failures.push(format!(
                "restart {} ({}): no write acknowledged after PostgreSQL's return; the writes \
                 sent after it (write, status, ms after, ms taken): {after:?}",
                i + 1,
                restart.mode
            ));
            continue;
        };
        let back = first_acknowledged.at();
        // Measured to the write's sending: a login's own time after PostgreSQL's return is
        // its password hash, at the lowest priority, which a busy machine stretches (the
        // database part of every write is bounded below).
        let recovery = first_acknowledged
            .sent
            .saturating_duration_since(restart.started);
        if recovery >= RECOVERED_WITHIN {
            failures.push(format!(
                "restart {} ({}): the first write acknowledged was sent {recovery:?} after \
                 `pg_ctl start` returned",
                i + 1,
                restart.mode
            ));
        }
        // The outage, as the clients saw it: from the stop to the first acknowledgement after.
        let outage = |sent: Instant| sent >= restart.stopping && sent < back;
        // Every write sent while PostgreSQL was down, and every write but a login around that
        // (a login that reaches the database takes the time of its password hash, see above).
        let down = |sent: Instant| sent >= restart.stopped && sent < restart.started;
        let slowest = writes
            .iter()
            .filter(|a| outage(a.sent))
            .filter(|a| down(a.sent) || a.write != Write::Login)
            .map(|a| a.took)
            .max()
            .unwrap_or_default();
        let slowest_check = checks
            .iter()
            .filter(|c| outage(c.at))
            .map(|c| c.took)
            .max()
            .unwrap_or_default();
        if slowest.max(slowest_check) >= ANSWER_WITHIN {
            failures.push(format!(
                "restart {} ({}): during the outage a write took {slowest:?}, a token check \
                 {slowest_check:?}",
                i + 1,
                restart.mode
            ));
        }
        let during = checks.iter().filter(|c| outage(c.at)).count();
        checks_during += during;
        println!(
            "restart {} ({}): stop took {:?}, down {:?}, start took {:?}; {} writes refused \
             over {window:?} (the first {:?} after the stop); first write acknowledged \
             sent {recovery:?} after `pg_ctl start` returned ({:?} after it, its {:?} \
             answered in {:?}); slowest write during the outage {slowest:?}, slowest token \
             check {slowest_check:?} ({during} checks)",
            i + 1,
            restart.mode,
            restart.stopped - restart.stopping,
            restart.starting - restart.stopped,
            restart.started - restart.starting,
            refused.len(),
            first.at().saturating_duration_since(restart.stopping),
            back.saturating_duration_since(restart.started),
            first_acknowledged.write,
            first_acknowledged.took,
        );
        windows.push(window);
        recoveries.push(recovery);
        slowest_during.push(slowest);
    }

    // A token check is answered from the token when its user's lookup fails.
    let refused_checks: Vec<_> = checks
        .iter()
        .filter(|c| c.status != StatusCode::OK)
        .map(|c| c.status)
        .collect();
    if !refused_checks.is_empty() {
        failures.push(format!(
            "{} of {} token checks were refused: {:?}",
            refused_checks.len(),
            checks.len(),
            &refused_checks[..refused_checks.len().min(10)]
        ));
    }
    let refused_writes = writes
        .iter()
        .filter(|a| a.status != Some(StatusCode::OK))
        .count();
    let found = rig.check(&ledgers).await;
    failures.extend(found.failures);
    let acknowledged: usize = ledgers.iter().map(Ledger::acknowledged).sum();
    let kinds: [usize; 4] = [
        ledgers.iter().map(|l| l.logins).sum(),
        ledgers.iter().map(|l| l.rotations).sum(),
        ledgers.iter().map(|l| l.blacklists).sum(),
        ledgers.iter().map(|l| l.revocations).sum(),
    ];
    println!(
        "{} restarts: {acknowledged} writes acknowledged ({} logins, {} rotations, {} \
         blacklists, {} revoke-alls), {refused_writes} refused with 503, doubtful writes: {} took \
         effect, {} did not, {} spent by a later logout everywhere; {} ledger checks; {} token \
         checks ({checks_during} during outages), all 200: {}; error window {}; first write \
         acknowledged sent after `pg_ctl start` {}; slowest write during an outage {}",
        restarts_done.len(),
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        found.took_effect,
        found.did_not,
        found.spent_later,
        found.requests,
        checks.len(),
        refused_checks.is_empty(),
        spread(&windows),
        spread(&recoveries),
        spread(&slowest_during),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(found.requests > 0, "no acknowledged answer to check");
    assert!(kinds[1] > 0, "no rotation acknowledged");
}

/// doorman's connections killed from the server side (`pg_terminate_backend`), three times,
/// under write load and token checks: only requests on those connections may fail, with 503
/// (at most one per connection killed); token checks all answer 200 (a failed lookup falls
/// back to the token); the database is not taken for down; a login right after succeeds; and
/// every acknowledged write holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_cost_only_their_requests() {
    let _alone = crate::helpers::WHOLE_MACHINE.lock().await;
    let Some(mut rig) = Rig::start("the terminated-connections test").await else {
        return;
    };
    let mut terminated = 0;
    let mut busy = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let out = tokio::task::block_in_place(|| {
            rig.cluster.psql(
                "SELECT count(*) FILTER (WHERE killed), count(*) FILTER (WHERE killed AND busy) \
                 FROM (SELECT pg_terminate_backend(pid) AS killed, state <> 'idle' AS busy \
                       FROM pg_stat_activity WHERE application_name = 'doorman') AS doorman",
            )
        })
        .expect("pg_terminate_backend");
        let counts: Vec<usize> = out
            .trim()
            .split('|')
            .map(|n| n.parse().expect("a count"))
            .collect();
        terminated += counts[0];
        busy += counts[1];
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A login right after needs the database: it works.
    let (status, body, _) = timed(
        rig.app
            .client
            .post(rig.app.url("/api/token/"))
            .json(&credentials(ALICE)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ledgers, writes, checks) = rig.finish().await;
    assert!(terminated > 0, "no doorman connection to terminate");

    let refused: Vec<_> = writes
        .iter()
        .filter(|a| a.status != Some(StatusCode::OK))
        .map(|a| (a.write, a.status))
        .collect();
    let refused_checks = checks.iter().filter(|c| c.status != StatusCode::OK).count();
    let slowest = checks.iter().map(|c| c.took).max().unwrap_or_default();
    let slowest_write = writes.iter().map(|a| a.took).max().unwrap_or_default();
    let metrics = metrics_text(&rig.app).await;
    let found = rig.check(&ledgers).await;
    let acknowledged: usize = ledgers.iter().map(Ledger::acknowledged).sum();
    println!(
        "{terminated} connections terminated ({busy} busy); {} writes, {acknowledged} \
         acknowledged, refused: {refused:?} (doubtful: {} took effect, {} did not, {} spent \
         later); {} ledger checks; {} token checks, {refused_checks} refused, slowest \
         {slowest:?}; slowest write {slowest_write:?}",
        writes.len(),
        found.took_effect,
        found.did_not,
        found.spent_later,
        found.requests,
        checks.len(),
    );
    assert!(found.failures.is_empty(), "{}", found.failures.join("\n"));
    assert!(
        refused.len() <= terminated,
        "{} writes refused for {terminated} connections terminated: {refused:?}",
        refused.len()
    );
    assert_eq!(refused_checks, 0, "token checks refused");
    assert!(checks.len() > 50, "too few token checks: {}", checks.len());
    assert!(
        slowest < Duration::from_millis(1500),
        "a token check took {slowest:?}"
    );
    assert!(
        acknowledged > 0 && found.requests > 0,
        "no write acknowledged"
    );
    assert!(
        metrics.contains("doorman_database_reachable 1"),
        "{metrics}"
    );
}
