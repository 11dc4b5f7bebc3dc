//! Start-up under real environments: foreign `KURA_*` variables (the client's own, or what
//! Kubernetes injects for a Service named `kura`) must not stop the server.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// What Kubernetes injects into pods next to a Service named `kura`, plus the client's own
/// `KURA_JOBS`: none of them is a server setting.
const FOREIGN: &[(&str, &str)] = &[
    ("KURA_JOBS", "8"),
    ("KURA_PORT", "tcp://10.96.0.12:5000"),
    ("KURA_SERVICE_HOST", "10.96.0.12"),
    ("KURA_SERVICE_PORT", "5000"),
    ("KURA_PORT_5000_TCP", "tcp://10.96.0.12:5000"),
    ("KURA_PORT_5000_TCP_ADDR", "10.96.0.12"),
    ("KURA_PORT_5000_TCP_PORT", "5000"),
    ("KURA_PORT_5000_TCP_PROTO", "tcp"),
];

#[test]
fn foreign_kura_variables_are_ignored_with_one_warning_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "1", "--root"])
        .arg(dir.path())
        .envs(FOREIGN.iter().copied())
        .env("KURA_GC__GRACE", "15m")
        .env("KURA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        line.starts_with("kura listening on http://127.0.0.1:"),
        "did not start: {line:?} {err}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("KURA_JOBS")).collect();
    assert_eq!(warnings.len(), 1, "one warning line naming them: {err}");
    for (name, _) in FOREIGN {
        assert!(
            warnings[0].contains(name),
            "{name} not named: {}",
            warnings[0]
        );
    }
    assert!(!warnings[0].contains("KURA_GC__GRACE"), "{}", warnings[0]);
}

#[test]
fn variables_that_map_to_config_keys_are_applied_beside_foreign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "[gc]\ngrace = \"2h\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["config", "check", f.to_str().unwrap()])
        .envs(FOREIGN.iter().copied())
        .env("KURA_GC__GRACE", "15m")
        .env("KURA_LIMITS__MAX_CONCURRENT_UPLOADS", "9")
        .env("KURA_METRICS__ENABLED", "false")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(text.contains("grace = \"15m\""), "{text}");
    assert!(text.contains("max_concurrent_uploads = 9"), "{text}");
    assert!(text.contains("enabled = false"), "{text}");
    assert!(
        err.contains("KURA_JOBS"),
        "the ignored variables are named: {err}"
    );
}

#[test]
fn a_bad_value_in_a_variable_that_maps_to_a_key_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["config", "check", f.to_str().unwrap()])
        .env("KURA_GC__GRACE", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("grace"), "{err}");
}

#[test]
fn unknown_keys_in_a_config_file_still_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kura.toml");
    std::fs::write(&f, "[gc]\ngrac = \"2h\"\n").unwrap();
    let (ok, _, err) = common::kura_cmd(&["config", "check", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("grac"), "{err}");
}
