//! The container image, built and run here: `deploy/build-image` builds `deploy/Containerfile`
//! with podman from a static doorman, the image's file system is exported, and doorman runs from
//! it under `chroot` as the image's user, as a container runtime would start it: it creates its
//! database and key in the image's data directory, resolves its database's host name from
//! `/etc/hosts`, and answers a login and `/hello/`. (`podman run` needs namespaces that this
//! machine's sandbox doesn't give; `podman build` of a `FROM scratch` image needs none.)
//!
//! The static binary is built by the test itself, in the dev profile, into
//! `<target>/x86_64-unknown-linux-gnu/debug/doorman` beside the test build, so that later runs
//! find it built; `.ci/run` installs podman.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::*;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory the test binaries were built in (`.../debug/doorman` is the binary).
fn target_dir() -> PathBuf {
    let bin = assert_cmd::cargo::cargo_bin("doorman");
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the doorman binary lies in <target>/<profile>/")
}

fn podman() -> Option<PathBuf> {
    ["/usr/bin/podman", "/usr/local/bin/podman"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// `cmd`'s stdout, failing the test with its stderr when it doesn't succeed.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// doorman linked statically against glibc, built (or found built) for the image.
fn static_doorman() -> PathBuf {
    let target = target_dir();
    run(Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--locked", "--quiet", "--target", TARGET])
        .args(["-p", "doorman", "--bin", "doorman"]));
    target.join(TARGET).join("debug/doorman")
}

/// The image, removed at the end of the test.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(podman) = podman() {
            let _ = Command::new(podman)
                .args(["rmi", "--force", &self.0])
                .output();
        }
    }
}

/// The image's file system, as `podman export` gives it, unpacked (owners kept) under `root`.
fn export(podman: &Path, image: &str, root: &Path) {
    let container = run(Command::new(podman).args(["create", image]));
    let container = container.trim();
    let tar = root.with_extension("tar");
    let exported = Command::new(podman)
        .args(["export", "--output"])
        .arg(&tar)
        .arg(container)
        .output();
    let _ = Command::new(podman).args(["rm", container]).output();
    assert!(exported.unwrap().status.success(), "podman export failed");
    std::fs::create_dir(root).unwrap();
    run(Command::new("tar")
        .args([
            "--extract",
            "--same-owner",
            "--same-permissions",
            "--numeric-owner",
        ])
        .arg("--file")
        .arg(&tar)
        .arg("--directory")
        .arg(root));
}

/// Every path under `dir`, directories included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// The image's configuration: (user, environment, entrypoint + cmd).
fn image_config(podman: &Path, image: &str) -> (String, Vec<(String, String)>, Vec<String>) {
    let inspected = run(Command::new(podman).args(["image", "inspect", image]));
    let inspected: Value = serde_json::from_str(&inspected).unwrap();
    let config = &inspected[0]["Config"];
    let user = config["User"].as_str().unwrap_or_default().to_owned();
    let env = config["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let command = ["Entrypoint", "Cmd"]
        .iter()
        .flat_map(|key| config[*key].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (user, env, command)
}

/// doorman from the unpacked image, as the image's user, with the image's environment plus
/// `settings`.
fn in_image(
    root: &Path,
    user: &str,
    env: &[(String, String)],
    settings: &[(&str, &str)],
) -> Command {
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.env_clear()
        .arg(format!("--userspec={user}"))
        .arg(root)
        .arg("/usr/local/bin/doorman");
    for (key, value) in env {
        cmd.env(key, value);
    }
    for (key, value) in settings {
        cmd.env(key, value);
    }
    cmd
}

fn migrate(mut cmd: Command) {
    let out = cmd.arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "migrate in the image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_user(mut cmd: Command, name: &str, password: &str) {
    use std::io::Write;
    let mut child = cmd
        .args(["user", "create", name, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "user create in the image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves from the image until a login and `/hello/` are answered.
async fn serve_login_and_hello(mut serve: Command, user: (&str, &str)) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    serve.env("DOORMAN_BIND", format!("127.0.0.1:{port}"));
    let mut child = Running(serve.stderr(Stdio::piped()).spawn().unwrap());
    let lines = stderr_lines(&mut child.0);
    lines_until(&lines, |line| line.contains("doorman is listening"));

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let res = client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": user.0, "password": user.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pair: Value = res.json().await.unwrap();
    let access = pair["access"].as_str().unwrap();
    let res = get_hello_at(&client, &base, access).await;
    assert_eq!(res.status(), 200);
}

/// The server child, stopped at the end of the test also when an assertion fails first.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_built_with_podman_runs_doorman_as_nonroot() {
    let Some(podman) = podman() else {
        skip_or_fail(
            "the container image test",
            "podman is not installed (apt-get install podman)",
        );
        return;
    };
    let binary = static_doorman();
    // What the image holds must be all the binary needs: no shared library, no loader.
    let linked = Command::new("ldd").arg(&binary).output().unwrap();
    let linked = String::from_utf8_lossy(&linked.stdout).into_owned()
        + &String::from_utf8_lossy(&linked.stderr);
    assert!(
        !linked.contains("=>") && !linked.contains("ld-linux"),
        "the image's doorman is dynamically linked:\n{linked}"
    );

    let image = Image(format!(
        "localhost/doorman-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    run(Command::new(repo_root().join("deploy/build-image"))
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", &image.0]));
    let (user, env, command) = image_config(&podman, &image.0);
    assert_eq!(user, "65532:65532");
    assert_eq!(command, ["/usr/local/bin/doorman", "serve"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    export(&podman, &image.0, &root);

    // The layout, and nothing else: the user in /etc/passwd and /etc/group, the data directory
    // the user's alone.
    let mut paths: Vec<String> = walk(&root)
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "etc",
            "etc/group",
            "etc/nsswitch.conf",
            "etc/passwd",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/doorman",
            "var",
            "var/lib",
            "var/lib/doorman",
        ]
    );

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("nonroot:x:65532:"), "{group}");
    use std::os::unix::fs::MetadataExt;
    let data = root.join("var/lib/doorman");
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65532, 65532, 0o700)
    );
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    assert_eq!(
        std::fs::metadata(root.join("usr/local/bin/doorman"))
            .unwrap()
            .uid(),
        0,
        "the binary belongs to root, not to the user that runs it"
    );

    // The device files every OCI runtime puts in a container's /dev (runtime-spec, "Default
    // Devices"): doorman's random numbers come from /dev/urandom when the static binary can't
    // find libc's getrandom.
    let dev = root.join("dev");
    std::fs::create_dir(&dev).unwrap();
    for (name, minor) in [
        ("null", "3"),
        ("zero", "5"),
        ("random", "8"),
        ("urandom", "9"),
    ] {
        run(Command::new("mknod")
            .args(["-m", "0666"])
            .arg(dev.join(name))
            .args(["c", "1", minor]));
    }

    // As shipped: SQLite in the data directory, a key generated beside it.
    let user_spec = user.as_str();
    migrate(in_image(&root, user_spec, &env, &[]));
    create_user(
        in_image(&root, user_spec, &env, &[]),
        "nina",
        "nina-password-1234",
    );
    serve_login_and_hello(
        {
            let mut cmd = in_image(&root, user_spec, &env, &[]);
            cmd.arg("serve");
            cmd
        },
        ("nina", "nina-password-1234"),
    )
    .await;
    let made: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap())
        .collect();
    let names: Vec<String> = made
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "doorman.sqlite3"), "{names:?}");
    assert!(
        names.len() >= 2,
        "no generated key beside the database: {names:?}"
    );
    for entry in &made {
        assert_eq!(entry.metadata().unwrap().uid(), 65532, "{:?}", entry.path());
    }

    // PostgreSQL named by a host the image resolves from the /etc/hosts a runtime writes.
    run_on(Backend::Postgres, async {
        let database = TestDatabase::create(dir.path()).await;
        let Some(url) = database
            .url
            .contains("@127.0.0.1:")
            .then(|| database.url.replacen("@127.0.0.1:", "@dbhost:", 1))
        else {
            skip_or_fail(
                "the container's name resolution",
                "the test PostgreSQL isn't at 127.0.0.1",
            );
            return;
        };
        let settings = [("DOORMAN_DATABASE_URL", url.as_str())];
        // Without the name in /etc/hosts the database can't be reached...
        let unresolved = in_image(&root, user_spec, &env, &settings)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(!unresolved.status.success());
        // ...with it, the schema is created, and the server answers.
        std::fs::write(
            root.join("etc/hosts"),
            "127.0.0.1 localhost\n127.0.0.1 dbhost\n",
        )
        .unwrap();
        migrate(in_image(&root, user_spec, &env, &settings));
        create_user(
            in_image(&root, user_spec, &env, &settings),
            "olga",
            "olga-password-1234",
        );
        let mut serve = in_image(&root, user_spec, &env, &settings);
        serve.arg("serve");
        serve_login_and_hello(serve, ("olga", "olga-password-1234")).await;
    })
    .await;
}
