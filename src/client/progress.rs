//! What the client tells its user while it works: indicatif progress bars (per blob, plus a
//! total) on a terminal, nothing in quiet mode, or one JSON object per line for scripts.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// How the client reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Progress bars on stderr (when it is a terminal) and a summary on stdout.
    Human,
    /// Only results (a digest, a list) on stdout.
    Quiet,
    /// One JSON event per line on stdout.
    Json,
}

struct Inner {
    mode: OutputMode,
    multi: Option<MultiProgress>,
    total: Mutex<Option<ProgressBar>>,
}

/// The reporter shared by every transfer of one command. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

/// The first 12 hex digits of a digest, as `docker` shows layers.
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

impl Progress {
    /// A reporter in `mode`.
    pub fn new(mode: OutputMode) -> Progress {
        let multi = (mode == OutputMode::Human)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            inner: Arc::new(Inner {
                mode,
                multi,
                total: Mutex::new(None),
            }),
        }
    }

    /// The mode.
    pub fn mode(&self) -> OutputMode {
        self.inner.mode
    }

    /// Starts the total bar over `bytes` bytes.
    pub fn start_total(&self, label: &str, bytes: u64) {
        if let Some(m) = &self.inner.multi {
            let bar = m.add(ProgressBar::new(bytes));
            bar.set_style(style(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
            ));
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            *self.inner.total.lock().expect("total lock") = Some(bar);
        }
    }

    /// A bar for one blob of `size` bytes.
    pub fn blob(&self, digest: &str, size: u64) -> BlobBar {
        let bar = self.inner.multi.as_ref().map(|m| {
            let total = self.inner.total.lock().expect("total lock");
            let bar = ProgressBar::new(size);
            let bar = match total.as_ref() {
                Some(t) => m.insert_before(t, bar),
                None => m.add(bar),
            };
            bar.set_style(style("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}"));
            bar.set_prefix(short(digest).to_string());
            bar
        });
        let total = self.inner.total.lock().expect("total lock").clone();
        BlobBar {
            progress: self.clone(),
            bar,
            total,
            digest: digest.to_string(),
            size,
            pos: 0,
        }
    }

    /// Emits a JSON event (JSON mode only).
    pub fn event(&self, value: Value) {
        if self.inner.mode == OutputMode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    /// A line for a human (human mode only), printed above the bars.
    pub fn info(&self, msg: &str) {
        match &self.inner.multi {
            Some(m) if !m.is_hidden() => {
                let _ = m.println(msg);
            }
            Some(_) => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Reports the result of a whole-image operation: `<verb> <reference>@<digest>` for a
    /// human, the digest alone when quiet, a `done` event in JSON.
    pub fn result(&self, verb: &str, reference: &str, m: &super::image::Manifest) {
        match self.inner.mode {
            OutputMode::Human => println!("{verb} {reference}@{}", m.digest),
            OutputMode::Quiet => println!("{}", m.digest),
            OutputMode::Json => self.event(json!({
                "event": "done", "action": verb, "reference": reference,
                "digest": m.digest.to_string(), "mediaType": m.media_type,
                "size": m.bytes.len(),
            })),
        }
    }

    /// Finishes and clears the total bar.
    pub fn finish(&self) {
        if let Some(t) = self.inner.total.lock().expect("total lock").take() {
            t.finish();
        }
    }
}

/// Progress of one blob transfer.
pub struct BlobBar {
    progress: Progress,
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
    digest: String,
    size: u64,
    pos: u64,
}

impl BlobBar {
    /// Sets how many bytes are done (moving back when a transfer resumes earlier).
    pub fn set_position(&mut self, pos: u64) {
        if let Some(t) = &self.total {
            if pos >= self.pos {
                t.inc(pos - self.pos);
            } else {
                t.set_position(t.position().saturating_sub(self.pos - pos));
            }
        }
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        self.pos = pos;
    }

    /// Adds `n` done bytes.
    pub fn advance(&mut self, n: u64) {
        self.set_position(self.pos + n);
    }

    /// Reports that the transfer resumes at `offset` after `error`.
    pub fn resumed(&mut self, offset: u64, error: &str) {
        self.set_position(offset);
        self.progress.event(json!({
            "event": "resume", "digest": self.digest, "offset": offset, "size": self.size,
            "error": error,
        }));
        self.progress.info(&format!(
            "{}: resuming at byte {offset} after: {error}",
            short(&self.digest)
        ));
    }

    /// Reports a retry after `error`.
    pub fn retrying(&self, error: &str) {
        self.progress.event(json!({
            "event": "retry", "digest": self.digest, "error": error,
        }));
    }

    /// Ends the bar with `action` (`exists`, `mounted`, `uploaded`, `downloaded`...) and
    /// emits the blob's JSON event with `extra` fields.
    pub fn done(mut self, action: &str, extra: Value) {
        self.set_position(self.size);
        if let Some(b) = &self.bar {
            b.finish_with_message(action.to_string());
        }
        let mut ev = json!({
            "event": "blob", "digest": self.digest, "size": self.size, "action": action,
        });
        if let (Some(e), Value::Object(x)) = (ev.as_object_mut(), extra) {
            e.extend(x);
        }
        self.progress.event(ev);
    }
}
