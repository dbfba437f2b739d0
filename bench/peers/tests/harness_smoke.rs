//! The benchmark harness, kept working: `bench/run --quick` on this build's binaries (debug,
//! so the figures mean nothing), and every measurement it must make is checked to be there,
//! answered without errors, and reported. A change that breaks the harness fails here instead
//! of at the next benchmark run.
//!
//! Its own test binary, so that its minute of full load doesn't overlap the timing-sensitive
//! tests of the others (cargo runs test binaries one after another). Needs `python3` and
//! `wrk` (Debian's package; `.ci/run` installs it), and for its PostgreSQL part the local
//! server at 127.0.0.1:5432; without them it says SKIPPED loudly, or
//! fails under `DOORMAN_REQUIRE_ALL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A test that can't run here: a failure under `DOORMAN_REQUIRE_ALL=1` (set by `.ci/run`),
/// else a skip said on the real stderr, where it can't go unnoticed.
fn skip_or_fail(reason: &str) {
    if std::env::var("DOORMAN_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("DOORMAN_REQUIRE_ALL=1 but the harness smoke test can't run: {reason}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: the harness smoke test, because {reason} ***\n"
    );
}

/// Whether `program` is installed: it starts (whatever it then answers to `arg`).
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok()
}

/// The directory with this build's `ceiling`, `hash-time` and, built by the same
/// `cargo test --workspace`, `doorman`.
fn binaries() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_ceiling"))
        .parent()?
        .to_path_buf();
    dir.join("doorman").is_file().then_some(dir)
}

#[test]
fn quick_run_measures_every_workload_and_reports_the_targets() {
    if !runs("python3", "--version") {
        return skip_or_fail("python3 is not installed");
    }
    // wrk answers `--version` with its usage and exit status 1: it still ran.
    if !runs("wrk", "--version") {
        return skip_or_fail("wrk is not installed (apt-get install wrk)");
    }
    let Some(bin) = binaries() else {
        return skip_or_fail(
            "doorman's binary is not built beside the benchmark's (run `cargo test --workspace`)",
        );
    };
    // doorman on PostgreSQL joins the paired rounds when the local server answers.
    let postgres = "postgres://postgres@127.0.0.1:5432";
    let with_postgres = Command::new("psql")
        .args(["-q", &format!("{postgres}/postgres"), "-c", "SELECT 1"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !with_postgres {
        skip_or_fail("PostgreSQL does not answer at 127.0.0.1:5432 (its part only)");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let results = tempfile::tempdir().unwrap();
    let out_file = results.path().join("results.jsonl");
    let out = Command::new(root.join("bench/run"))
        .arg("--quick")
        .arg("--bin")
        .arg(&bin)
        .arg("--out")
        .arg(&out_file)
        .args(["--busy-ns", "1000"])
        .args(
            with_postgres
                .then_some(["--postgres", postgres])
                .into_iter()
                .flatten(),
        )
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", results.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/run --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The same measurements on stdout and in --out, one JSON object each.
    let printed: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("BENCH "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let written: Vec<Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed, written);

    let seen: BTreeSet<(String, String)> = printed
        .iter()
        .map(|e| {
            (
                e["server"].as_str().unwrap().to_owned(),
                e["workload"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let wanted = [
        ("ceiling", "hello"),
        ("ceiling", "idle_connections"),
        ("ceiling-stack", "hello"),
        ("doorman", "idle_rss"),
        ("doorman", "hello"),
        ("doorman", "hello_eddsa"),
        ("doorman", "verify"),
        ("doorman", "verify_refresh"),
        ("doorman", "refresh"),
        ("doorman", "refresh_rotate"),
        ("doorman", "login"),
        ("doorman", "hello_alone"),
        ("doorman", "hello_during_login_flood"),
        ("doorman", "single_hash"),
        ("doorman", "idle_connections"),
        ("doorman", "startup"),
        ("ceiling", "paired_hello"),
        ("ceiling-stack", "paired_hello"),
        ("ceiling-busy-1000", "paired_hello"),
        ("handwritten", "paired_hello"),
        ("handwritten", "paired_hello_eddsa"),
        ("handwritten", "paired_hello_eddsa_distinct"),
        ("doorman", "paired_hello_eddsa_distinct"),
        ("doorman", "paired_hello"),
        ("doorman", "paired_hello_eddsa"),
        ("doorman", "paired_verify"),
        ("doorman", "paired_verify_refresh"),
        ("doorman", "paired_refresh"),
    ];
    let on_postgres = [
        ("doorman-pg", "paired_hello"),
        ("doorman-pg", "paired_verify_refresh"),
        ("doorman-pg", "paired_refresh"),
    ];
    let wanted = wanted
        .into_iter()
        .chain(on_postgres.into_iter().filter(|_| with_postgres));
    for (server, workload) in wanted {
        assert!(
            seen.contains(&(server.to_owned(), workload.to_owned())),
            "no {server} {workload} measurement in:\n{stdout}"
        );
    }

    // Every load measurement got answers, all of them successful; all but the flood pairs
    // (two loads at once on one server) with the server's CPU per request.
    for e in printed.iter().filter(|e| e.get("rps").is_some()) {
        assert!(e["ok_rps"].as_f64().unwrap() > 0.0, "nothing answered: {e}");
        assert_eq!(e["errors"], 0, "errors: {e}");
        let flood_pair = matches!(
            e["workload"].as_str(),
            Some("hello_alone" | "hello_during_login_flood")
        );
        assert!(
            flood_pair || e["cpu_us_per_req"].as_f64().is_some_and(|us| us > 0.0),
            "no CPU figure: {e}"
        );
    }

    // The report: the table, and every target with a figure (Django's are left out by --quick).
    assert!(
        stdout.contains("| server | workload | conns | req/s |"),
        "{stdout}"
    );
    let targets = stdout
        .split("## Targets")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no targets in:\n{stdout}"));
    let rows: Vec<&str> = targets
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target"))
        .collect();
    assert!(rows.len() >= 12, "{targets}");
    if with_postgres {
        assert!(
            targets.contains("(PostgreSQL) / doorman /hello/ on PostgreSQL"),
            "{targets}"
        );
    }
    for row in rows {
        let measured = row.contains("| met |") || row.contains("| MISSED |");
        assert!(measured || row.contains("Django"), "not measured: {row}");
    }

    // The bare ceiling is no target, only the physical limit, reported beside the targets.
    assert!(!targets.contains("/ ceiling"), "{targets}");
    let bare = section(&stdout, "## Beside the bare ceiling");
    for workload in ["hello", "hello_eddsa", "verify"] {
        assert_ratio(bare, &format!("| {workload} |"));
    }
    // doorman beside the production-stack ceiling: a ratio for each workload, from the rounds.
    let beside = section(&stdout, "## Beside the production-stack ceiling");
    for workload in ["hello", "hello_eddsa", "verify"] {
        assert_ratio(beside, &format!("| {workload} |"));
    }
    // The calibration: the ceiling with 1000 ns of work per request, against the bare one.
    let calibration = section(&stdout, "## The ceiling with fixed work per request");
    assert_ratio(calibration, "| ceiling + 1000 ns of work |");
}

/// What follows `heading` in the report.
fn section<'a>(report: &'a str, heading: &str) -> &'a str {
    report
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{report}"))
}

/// The row of `section` that starts with `start` has a positive ratio (`1.23x`) in its second
/// column.
fn assert_ratio(section: &str, start: &str) {
    let row = section
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start:?} row in:\n{section}"));
    let ratio = row.split('|').nth(2).unwrap().trim();
    assert!(
        ratio
            .strip_suffix('x')
            .and_then(|r| r.parse::<f64>().ok())
            .is_some_and(|r| r > 0.0),
        "no ratio: {row}"
    );
}

/// `bench/run --help` says how to use it and what the harness takes, and builds and installs
/// nothing: run with an empty target directory, it leaves that directory empty (it once built
/// all of doorman in release mode before printing the harness's usage).
#[test]
fn help_prints_the_usage_without_building_anything() {
    if !runs("python3", "--version") {
        return skip_or_fail("python3 is not installed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = tempfile::tempdir().unwrap();
    let out = Command::new(root.join("bench/run"))
        .arg("--help")
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("Usage: bench/run"), "{stdout}");
    assert!(stdout.contains("--bin DIR"), "{stdout}");
    assert!(
        stdout.contains("--hash-time"),
        "the harness's options: {stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "--help wrote into the target directory: {left:?}"
    );
}
