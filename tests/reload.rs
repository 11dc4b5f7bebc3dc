//! Live reload of a running `kura serve` (the real binary): under a loop of authenticated
//! pulls, the htpasswd file and the access rules change and the server is told by SIGHUP and by
//! `POST /admin/reload`. No pull fails for a reload; a new user works at once, a removed user
//! gets 401 at once; a setting that cannot change live is reported as needing a restart; a
//! broken configuration is refused (422 with why) and the old users keep working. Webhook
//! endpoints are replaced, added and removed by a reload.

mod auth_support;
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_support::{basic, http, push_image, write_users};
use serde_json::Value;

/// Writes the auth config: `admin` may do everything; each of `pullers` may pull `team/*`.
fn write_rules(path: &Path, htpasswd: &Path, pullers: &[&str], extra_actions: &str) {
    let users: Vec<String> = pullers.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "htpasswd = {:?}\n# The test's expected 401s must not lock 127.0.0.1 out.\nmax_failed_logins = 1000\n\n[[rules]]\nusers = [\"admin\"]\nrepositories = [\"*\"]\nactions = [\"*\", \"admin\"]\n\n[[rules]]\nusers = [{}]\nrepositories = [\"team/*\"]\nactions = [\"pull\"{extra_actions}]\n",
        htpasswd.display().to_string(),
        users.join(", ")
    );
    std::fs::write(path, text).unwrap();
}

async fn pull_status(base: &str, auth: &str) -> u16 {
    http()
        .get(format!("{base}/v2/team/app/manifests/v1"))
        .header("Authorization", auth)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reload(base: &str, auth: &str) -> (u16, Value) {
    let mut req = http().post(format!("{base}/admin/reload"));
    if !auth.is_empty() {
        req = req.header("Authorization", auth);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls (every 50 ms, at most 10 s) until `user` pulls with `want`.
async fn await_status(base: &str, auth: &str, want: u16) {
    let start = Instant::now();
    loop {
        let got = pull_status(base, auth).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still {got}, not {want}, 10 s after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_rules_reload_live_under_load_and_a_broken_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let auth_file = tmp.path().join("auth.toml");
    let config = tmp.path().join("kura.toml");
    std::fs::write(&config, "[gc]\ninterval = \"1h\"\n").unwrap();
    write_users(&htpasswd, &[("admin", "admin-pw"), ("carol", "carol-pw")]);
    write_rules(&auth_file, &htpasswd, &["carol"], "");
    let (kura, base) = common::spawn_kura_guarded(
        &tmp.path().join("root"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--auth-config",
            auth_file.to_str().unwrap(),
        ],
    );
    let pid = kura.0.id() as libc::pid_t;
    let admin = basic("admin", "admin-pw");
    let carol = basic("carol", "carol-pw");
    let dave = basic("dave", "dave-pw");
    let erin = basic("erin", "erin-pw");
    push_image(&base, "team/app", "v1", &admin).await;
    assert_eq!(pull_status(&base, &carol).await, 200);
    assert_eq!(pull_status(&base, &dave).await, 401);

    // The load: two loops of authenticated pulls by a user every configuration keeps.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let (stop, base, admin) = (stop.clone(), base.clone(), admin.clone());
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && ok + (failed.len() as u32) < 20_000
                && start.elapsed() < Duration::from_secs(120)
            {
                match pull_status(&base, &admin).await {
                    200 => ok += 1,
                    s => failed.push(s),
                }
            }
            (ok, failed)
        }));
    }

    // SIGHUP: dave is added (and may pull), carol removed.
    write_users(&htpasswd, &[("admin", "admin-pw"), ("dave", "dave-pw")]);
    write_rules(&auth_file, &htpasswd, &["dave"], "");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    await_status(&base, &dave, 200).await;
    assert_eq!(
        pull_status(&base, &carol).await,
        401,
        "removed user still pulls"
    );

    // POST /admin/reload: erin replaces dave, effective for the very next request.
    write_users(&htpasswd, &[("admin", "admin-pw"), ("erin", "erin-pw")]);
    write_rules(&auth_file, &htpasswd, &["erin"], "");
    let (status, report) = reload(&base, &admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], serde_json::json!(["auth"]), "{report}");
    assert_eq!(report["needs_restart"], serde_json::json!([]), "{report}");
    assert_eq!(report["users"], 2, "{report}");
    assert_eq!(pull_status(&base, &erin).await, 200, "new user refused");
    assert_eq!(
        pull_status(&base, &dave).await,
        401,
        "removed user still pulls"
    );

    // Reloading is an admin right.
    let (status, _) = reload(&base, &erin).await;
    assert_eq!(status, 403);

    // A setting that cannot change live is reported, not silently dropped.
    std::fs::write(&config, "[gc]\ninterval = \"2h\"\n").unwrap();
    let (status, report) = reload(&base, &admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["gc"]),
        "{report}"
    );

    // A broken configuration is refused whole: by the admin call with why, by SIGHUP in the log.
    write_users(&htpasswd, &[("admin", "admin-pw")]);
    write_rules(&auth_file, &htpasswd, &["erin"], ", \"fly\"");
    let r = http()
        .post(format!("{base}/admin/reload"))
        .header("Authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("fly"), "{body}");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pull_status(&base, &erin).await,
        200,
        "old user lost to a refused reload"
    );
    assert_eq!(pull_status(&base, &admin).await, 200);

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for l in loops {
        let (ok, failed) = l.await.unwrap();
        assert!(failed.is_empty(), "pulls failed during reloads: {failed:?}");
        total += ok;
    }
    assert!(total > 0, "the load loop made no request");
    drop(kura);
}

/// A webhook receiver on 127.0.0.1 recording the action and tag of every event delivered.
struct Receiver {
    url: String,
    events: Arc<std::sync::Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

fn start_receiver() -> Receiver {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let events: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let ev = events.clone();
    let server = HttpServer::new(move || {
        let ev = ev.clone();
        App::new().route(
            "/events",
            web::post().to(move |body: web::Bytes| {
                let ev = ev.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    for e in v["events"].as_array().unwrap() {
                        let tag = e["target"]["tag"].as_str().unwrap_or("-");
                        ev.lock()
                            .unwrap()
                            .push(format!("{} {tag}", e["action"].as_str().unwrap()));
                    }
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url,
        events,
        handle,
    }
}

impl Receiver {
    /// Waits (at most 15 s) until a push of `tag` was delivered.
    async fn await_push(&self, tag: &str) {
        let want = format!("push {tag}");
        let start = Instant::now();
        while !self.events.lock().unwrap().contains(&want) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{want} not delivered to {}: {:?}",
                self.url,
                self.events.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn got(&self, tag: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.ends_with(&format!(" {tag}")))
    }
}

fn write_hooks(config: &Path, urls: &[&str]) {
    let mut text = String::new();
    for (i, url) in urls.iter().enumerate() {
        text.push_str(&format!(
            "[[notifications.endpoints]]\nname = \"hook{i}\"\nurl = {url:?}\nbackoff = \"100ms\"\nmax_backoff = \"300ms\"\nactions = [\"push\"]\n\n"
        ));
    }
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_are_replaced_and_removed_by_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (start_receiver(), start_receiver());
    let config = tmp.path().join("kura.toml");
    write_hooks(&config, &[&a.url]);
    let (kura, base) = common::spawn_kura_guarded(
        &tmp.path().join("root"),
        &["--config", config.to_str().unwrap()],
    );
    push_image(&base, "team/app", "first", "").await;
    a.await_push("first").await;

    // The endpoint now points at b: the next push goes there, not to a.
    write_hooks(&config, &[&b.url]);
    let (status, report) = reload(&base, "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["notifications"]),
        "{report}"
    );
    assert_eq!(report["needs_restart"], serde_json::json!([]), "{report}");
    push_image(&base, "team/app", "second", "").await;
    b.await_push("second").await;

    // Both endpoints: each gets the next push.
    write_hooks(&config, &[&b.url, &a.url]);
    let (status, report) = reload(&base, "").await;
    assert_eq!(status, 200, "{report}");
    push_image(&base, "team/app", "third", "").await;
    b.await_push("third").await;
    a.await_push("third").await;
    assert!(!a.got("second"), "a retired endpoint was sent an event");

    // No endpoint: nothing is delivered any more (b got every earlier push first).
    write_hooks(&config, &[]);
    let (status, report) = reload(&base, "").await;
    assert_eq!(status, 200, "{report}");
    push_image(&base, "team/app", "fourth", "").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !a.got("fourth") && !b.got("fourth"),
        "a removed endpoint was sent an event"
    );
    drop(kura);
    a.handle.stop(false).await;
    b.handle.stop(false).await;
}

/// Starts `kura serve --config config` without `KURA_LOG` (so the file's level counts), its log
/// going to `log`; returns the guard and base URL.
fn spawn_with_log_file(root: &Path, config: &Path, log: &Path) -> (common::KillOnDrop, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "2", "--root"])
        .arg(root)
        .arg("--config")
        .arg(config)
        .env_remove("KURA_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn kura");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line:?}");
    (common::KillOnDrop(child), base)
}

/// Access-log lines (target `kura::access`, level info) for `path` in `log`, waiting up to
/// `wait` for at least one.
async fn access_lines(log: &Path, path: &str, wait: Duration) -> usize {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| l.contains("kura::access") && l.contains(path))
            .count();
        if n > 0 || start.elapsed() >= wait {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_changes_on_reload_and_a_bad_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, log) = (tmp.path().join("kura.toml"), tmp.path().join("kura.log"));
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
    let (kura, base) = spawn_with_log_file(&tmp.path().join("root"), &config, &log);
    let get = |path: &str| http().get(format!("{base}{path}")).send();
    assert_eq!(get("/v2/before-reload").await.unwrap().status(), 404);
    assert_eq!(
        access_lines(&log, "/v2/before-reload", Duration::from_millis(500)).await,
        0,
        "access lines logged at warn"
    );

    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let (status, report) = reload(&base, "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["log.level"]),
        "{report}"
    );
    assert_eq!(get("/v2/after-reload").await.unwrap().status(), 404);
    assert_eq!(
        access_lines(&log, "/v2/after-reload", Duration::from_secs(5)).await,
        1,
        "no access line at info after the reload"
    );

    // An invalid filter is refused; the level stays info.
    std::fs::write(&config, "[log]\nlevel = \"kura=loudest\"\n").unwrap();
    let (status, body) = reload(&base, "").await;
    assert_eq!(status, 422, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("log.level"), "{body}");
    assert_eq!(get("/v2/after-refusal").await.unwrap().status(), 404);
    assert_eq!(
        access_lines(&log, "/v2/after-refusal", Duration::from_secs(5)).await,
        1
    );
    drop(kura);
}
