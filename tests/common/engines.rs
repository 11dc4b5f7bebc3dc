//! Engines the tests start themselves when the environment names none (`.ci/run` starts one
//! of each and exports where): a server per machine under `target/<name>`, started by its
//! script in `tests/tools/`, found running by later test processes, which serialise on a
//! file lock so that concurrent ones start a single server between them.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Starts (or finds running) the server of `script` (`tests/tools/<script>`: `status DIR`,
/// `env DIR`, `start DIR PORT`) under `target/<name>`, and returns the `export K=V` lines it
/// printed. `help` says how to install the engine should the script fail.
pub fn start_shared(name: &str, script: &str, help: &str) -> String {
    let dir = repo_path(&format!("target/{name}"));
    std::fs::create_dir_all(repo_path("target")).expect("create target/");
    // Rust opens files close-on-exec: the servers the script starts do not inherit the lock.
    let lock_path = repo_path(&format!("target/{name}.lock"));
    let lock = std::fs::File::create(&lock_path).expect("lock file");
    // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", lock_path.display());
    let script_path = repo_path(&format!("tests/tools/{script}"));
    let running = Command::new(&script_path)
        .arg("status")
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    let out = if running {
        Command::new(&script_path).arg("env").arg(&dir).output()
    } else {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Command::new(&script_path)
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .output()
    }
    .unwrap_or_else(|e| panic!("run tests/tools/{script}: {e}"));
    if !out.status.success() {
        let _ = std::io::stderr().write_all(&out.stderr);
        panic!("tests/tools/{script} failed ({}); {help}", out.status);
    }
    drop(lock);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `export <key>=...` in a script's output.
pub fn exported(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {key}=")))
        .unwrap_or_else(|| panic!("the engine's script printed no {key}"))
        .to_string()
}
