//! Docker credential helpers (`credHelpers`, `credsStore`; the `docker-credential-<name>`
//! protocol): the helper here is a small shell program put on `PATH` — the protocol's real
//! interface — keeping entries as files. `kura login` stores through it (nothing in
//! config.json), `kura push`/`pull` against a kura with an htpasswd file get credentials from
//! it, `kura logout` erases through it, an identity token it holds (`<token>` user) is traded
//! at kura's OAuth2 token endpoint, and a helper missing from `PATH` is a clear error.

mod auth_support;
mod client_support;
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use auth_support::write_users;
use client_support::{Client, Out, p, run_command, single_image};

const HELPER: &str = r#"#!/bin/sh
# docker-credential-fake: one file per server URL in $FAKE_STORE.
store="$FAKE_STORE"
echo "$1" >> "$store/calls"
key() { printf '%s' "$1" | tr '/:' '__'; }
case "$1" in
get)
    read -r server
    if [ -f "$store/$(key "$server")" ]; then cat "$store/$(key "$server")"; else
        echo "credentials not found in native keychain"; exit 1; fi ;;
store)
    json=$(cat)
    server=$(printf '%s' "$json" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf '%s' "$json" > "$store/$(key "$server")" ;;
erase)
    read -r server
    if [ -f "$store/$(key "$server")" ]; then rm "$store/$(key "$server")"; else
        echo "credentials not found in native keychain"; exit 1; fi ;;
*) exit 1 ;;
esac
"#;

/// A directory holding `docker-credential-fake`, and the helper's store.
struct FakeHelper {
    bin: PathBuf,
    store: PathBuf,
}

impl FakeHelper {
    fn install(dir: &Path) -> FakeHelper {
        let bin = dir.join("bin");
        let store = dir.join("store");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        let prog = bin.join("docker-credential-fake");
        std::fs::write(&prog, HELPER).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeHelper { bin, store }
    }

    /// The actions the helper was called with, in order.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.store.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn entry(&self, server: &str) -> PathBuf {
        self.store.join(server.replace(['/', ':'], "_"))
    }

    /// Runs `kura <args>` with the helper on `PATH`.
    async fn kura(&self, c: &Client, args: &[&str]) -> Out {
        let mut cmd = c.command(args);
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path).env("FAKE_STORE", &self.store);
        run_command(cmd).await
    }
}

fn ok(out: Out, what: &str) -> Out {
    assert!(
        out.success,
        "{what} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

/// A kura whose users are in an htpasswd file (admin may do everything), with `extra` auth
/// settings; returns the guard and `host:port`.
fn start_kura(dir: &Path, extra: &str) -> (common::KillOnDrop, String) {
    let htpasswd = dir.join("htpasswd");
    write_users(&htpasswd, &[("admin", "admin-pw")]);
    let auth = dir.join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "htpasswd = {:?}\n{extra}\n[[rules]]\nusers = [\"admin\"]\nrepositories = [\"*\"]\nactions = [\"*\", \"admin\"]\n",
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    let (kura, base) = common::spawn_kura_guarded(&dir.join("root"), &["--auth-config", p(&auth)]);
    (kura, base.trim_start_matches("http://").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_push_pull_and_logout_go_through_the_configured_helper() {
    let tmp = tempfile::tempdir().unwrap();
    let helper = FakeHelper::install(tmp.path());
    let (_kura, host) = start_kura(tmp.path(), "");
    let c = Client::new();
    std::fs::write(
        c.config_file(),
        serde_json::json!({"credHelpers": {&host: "fake"}, "psFormat": "kept"}).to_string(),
    )
    .unwrap();

    let out = ok(
        helper
            .kura(
                &c,
                &["login", &host, "-u", "admin", "--password", "admin-pw"],
            )
            .await,
        "login",
    );
    assert!(
        out.stdout.contains("docker-credential-fake"),
        "{}",
        out.stdout
    );
    assert_eq!(helper.calls(), ["store"]);
    let stored = std::fs::read_to_string(helper.entry(&host)).unwrap();
    assert!(stored.contains("\"Secret\":\"admin-pw\""), "{stored}");
    let config = std::fs::read_to_string(c.config_file()).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(parsed["auths"].get(&host).is_none(), "{config}");
    assert!(
        !config.contains("admin-pw"),
        "password in config.json: {config}"
    );
    assert!(config.contains("psFormat"), "{config}");

    let (src, desc) = single_image(&tmp.path().join("src"));
    let image = format!("{host}/team/app:v1");
    ok(
        helper.kura(&c, &["push", "-q", p(&src.dir), &image]).await,
        "push",
    );
    let dest = tmp.path().join("pulled");
    ok(
        helper.kura(&c, &["pull", "-q", &image, p(&dest)]).await,
        "pull",
    );
    let digest = desc["digest"].as_str().unwrap();
    assert_eq!(
        client_support::reachable(&dest, digest),
        client_support::reachable(&src.dir, digest)
    );
    assert!(
        helper.calls().iter().filter(|c| *c == "get").count() >= 2,
        "{:?}",
        helper.calls()
    );

    ok(helper.kura(&c, &["logout", &host]).await, "logout");
    assert_eq!(helper.calls().last().map(String::as_str), Some("erase"));
    assert!(!helper.entry(&host).exists());
    let out = helper
        .kura(&c, &["pull", "-q", &image, p(&tmp.path().join("again"))])
        .await;
    assert!(!out.success, "pulled after logout");
    let out = helper.kura(&c, &["logout", &host]).await;
    assert!(
        !out.success && out.stderr.contains("not logged in"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_token_from_the_default_helper_is_traded_at_the_token_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let helper = FakeHelper::install(tmp.path());
    let (_kura, host) = start_kura(tmp.path(), "[token]\nservice = \"kura-test\"\n");
    // An identity token as `docker login` keeps one: a refresh token of the OAuth2 endpoint.
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{host}/auth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=admin&password=admin-pw&service=kura-test&client_id=docker&access_type=offline")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = answer["refresh_token"].as_str().expect("refresh_token");
    std::fs::write(
        helper.entry(&host),
        serde_json::json!({"ServerURL": &host, "Username": "<token>", "Secret": refresh})
            .to_string(),
    )
    .unwrap();
    let c = Client::new();
    std::fs::write(
        c.config_file(),
        serde_json::json!({"credsStore": "fake"}).to_string(),
    )
    .unwrap();
    let (src, _) = single_image(&tmp.path().join("src"));
    let image = format!("{host}/team/app:v1");
    ok(
        helper.kura(&c, &["push", "-q", p(&src.dir), &image]).await,
        "push",
    );
    ok(
        helper
            .kura(&c, &["pull", "-q", &image, p(&tmp.path().join("pulled"))])
            .await,
        "pull",
    );
    assert!(helper.calls().contains(&"get".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_missing_from_path_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let helper = FakeHelper::install(tmp.path());
    let (_kura, host) = start_kura(tmp.path(), "");
    let c = Client::new();
    std::fs::write(
        c.config_file(),
        serde_json::json!({"credsStore": "nonexistent"}).to_string(),
    )
    .unwrap();
    let out = helper
        .kura(
            &c,
            &[
                "pull",
                "-q",
                &format!("{host}/team/app:v1"),
                p(&tmp.path().join("d")),
            ],
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("docker-credential-nonexistent is not on PATH"),
        "{}",
        out.stderr
    );
}
