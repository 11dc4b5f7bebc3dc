//! The data path driven as real clients drive it: curl streaming one HTTP/1.1 request into or
//! out of a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs curl with `args` plus `-w` printing `fmt`; panics unless it exits 0 (`-f`: HTTP errors
/// fail too). Returns what `-w` printed.
fn curl(args: &[&str], fmt: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-H", "Expect:", "-w", fmt])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("curl is installed");
    assert!(out.status.success(), "curl {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Starts an upload session; returns its absolute location.
fn start_upload(base: &str, repo: &str) -> String {
    let w = curl(
        &[
            "-X",
            "POST",
            "-o",
            "/dev/null",
            &format!("{base}/v2/{repo}/blobs/uploads/"),
        ],
        "%{http_code} %header{location}",
    );
    assert!(w.starts_with("202"), "POST answered {w}");
    absolute(base, w.split_once(' ').unwrap().1)
}

/// `location` with the `digest` query parameter added.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// One monolithic push as Docker's clients make it (the spec's POST then PUT): a POST opens
/// the session, one PUT streams the whole `file` and closes it. The single-POST form is not
/// used because Distribution 2.8 does not implement it.
pub fn push_mono(base: &str, repo: &str, file: &Path, digest: &str) -> Duration {
    let t = Instant::now();
    let loc = start_upload(base, repo);
    let w = curl(
        &[
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            file.to_str().unwrap(),
            &with_digest(&loc, digest),
        ],
        "%{http_code}",
    );
    assert!(w.starts_with("201"), "monolithic PUT answered {w}");
    t.elapsed()
}

/// A chunked push: POST, one PATCH per file of `chunks` (each its own curl, following the
/// Location the previous answer gave, as a client does), then the closing PUT.
pub fn push_chunks(base: &str, repo: &str, chunks: &[PathBuf], digest: &str) -> Duration {
    let t = Instant::now();
    let mut loc = start_upload(base, repo);
    let mut offset = 0u64;
    for chunk in chunks {
        let len = std::fs::metadata(chunk).unwrap().len();
        let w = curl(
            &[
                "-X",
                "PATCH",
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                &format!("Content-Range: {offset}-{}", offset + len - 1),
                "-T",
                chunk.to_str().unwrap(),
                &loc,
            ],
            "%{http_code} %header{location}",
        );
        assert!(w.starts_with("202"), "PATCH answered {w}");
        loc = absolute(base, w.split_once(' ').unwrap().1);
        offset += len;
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let w = curl(
        &[
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            &format!("{loc}{sep}digest={digest}"),
        ],
        "%{http_code}",
    );
    assert!(w.starts_with("201"), "closing PUT answered {w}");
    t.elapsed()
}

/// `location` (as a Location header gives it) as an absolute URL on `base`.
pub fn absolute(base: &str, location: &str) -> String {
    let location = location.trim();
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// Pulls `path` (optionally a byte range) into `out`; returns the bytes received and the time
/// taken, curl's start included (a few milliseconds), as for the pushes.
pub fn pull(base: &str, path: &str, range: Option<(u64, u64)>, out: &Path) -> (u64, Duration) {
    let url = format!("{base}{path}");
    let range = range.map(|(a, b)| format!("{a}-{b}"));
    let mut args = vec!["-o", out.to_str().unwrap()];
    if let Some(r) = &range {
        args.extend(["-r", r.as_str()]);
    }
    args.push(&url);
    let t = Instant::now();
    let w = curl(&args, "%{http_code} %{size_download}");
    let d = t.elapsed();
    let (code, n) = w.split_once(' ').unwrap();
    assert!(code == "200" || code == "206", "pull answered {w}");
    (n.parse().unwrap(), d)
}

/// Pushes each `(file, digest)` monolithically into its own repository (`<prefix>-<i>`), all at once (one
/// thread per push driving its curls); returns the wall time until the last one finished.
pub fn push_parallel(base: &str, prefix: &str, files: &[(PathBuf, String)]) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for (i, (file, digest)) in files.iter().enumerate() {
            s.spawn(move || push_mono(base, &format!("{prefix}-{i}"), file, digest));
        }
    });
    t.elapsed()
}
