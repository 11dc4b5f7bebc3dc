//! htpasswd alone (no rules): as in Distribution, every authenticated user may pull, push and
//! delete; nobody may use `/admin/` unless a rule grants it. The start-up log says so.

mod auth_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use auth_support::{AuthServer, KillOnDrop, basic_of, catalog, http, push_image, write_htpasswd};
use kura::auth::AuthConfig;

fn htpasswd_only(dir: &std::path::Path) -> AuthConfig {
    let file = write_htpasswd(dir);
    toml::from_str(&format!("htpasswd = {:?}", file.display().to_string())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_alone_lets_every_user_pull_push_and_delete_but_not_administer() {
    let tmp = tempfile::tempdir().unwrap();
    let s = AuthServer::start(&htpasswd_only(tmp.path()), None).await;
    let dave = basic_of("dave");
    let d = push_image(&s.base, "any/where", "v1", &dave).await;
    push_image(&s.base, "else", "v1", &basic_of("bob")).await;
    let r = http()
        .get(s.url("/v2/any/where/manifests/v1"))
        .header("Authorization", &dave)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(catalog(&s.base, &dave).await, ["any/where", "else"]);
    let r = http()
        .delete(s.url(&format!("/v2/any/where/manifests/{d}")))
        .header("Authorization", &dave)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http()
        .post(s.url("/admin/gc?dry_run=true"))
        .header("Authorization", &dave)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "admin stays off without a rule");
    let r = http()
        .get(s.url("/v2/else/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "anonymous callers still log in");
}

/// Starts `kura serve` with `flags` and returns the `access policy` line of its log.
fn policy_line(root: &std::path::Path, flags: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "1", "--root"])
        .arg(root)
        .args(flags)
        .env("KURA_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kura");
    let stderr = child.stderr.take().unwrap();
    let _kill = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().take(200) {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    // Bounded in lines and in time: the line comes before the server listens.
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("an access policy line in the start-up log");
        if line.contains("access policy") {
            return line;
        }
    }
}

#[test]
fn the_start_up_log_states_the_effective_access_policy_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_htpasswd(tmp.path());
    let line = policy_line(
        &tmp.path().join("a"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    assert!(
        line.contains("every authenticated user may pull, push and delete every repository"),
        "{line}"
    );
    assert!(line.contains("admin: nobody"), "{line}");
    assert!(line.contains("anonymous: nothing"), "{line}");

    let (_, auth_file) = auth_support::auth_config(tmp.path(), "anonymous_pull = true");
    let line = policy_line(
        &tmp.path().join("b"),
        &["--auth-config", auth_file.to_str().unwrap()],
    );
    assert!(line.contains("3 rules over 1 groups"), "{line}");
    assert!(line.contains("admin: alice"), "{line}");
    assert!(line.contains("anonymous: pull"), "{line}");
    assert!(!line.contains("every authenticated user"), "{line}");
}
