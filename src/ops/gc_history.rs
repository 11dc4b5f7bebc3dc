//! The last collection runs of this process (in memory), shown by the web interface's
//! operations page: when each ran and what it freed.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::gc::GcReport;

/// How many runs are kept.
pub const KEPT: usize = 10;

/// One finished collection.
#[derive(Debug, Clone)]
pub struct GcRun {
    /// When it finished (unix seconds).
    pub finished: u64,
    pub report: GcReport,
}

static RUNS: Mutex<VecDeque<GcRun>> = Mutex::new(VecDeque::new());

/// Notes a finished collection (dry runs included: they say what a run would free).
pub fn record(report: &GcReport) {
    let mut report = report.clone();
    report.items.clear(); // the counts are kept, not every item
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    if runs.len() == KEPT {
        runs.pop_front();
    }
    runs.push_back(GcRun {
        finished: crate::meta::now_secs(),
        report,
    });
}

/// The kept runs, newest first.
pub fn recent() -> Vec<GcRun> {
    let runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.iter().rev().cloned().collect()
}
