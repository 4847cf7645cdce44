//! What the pool tells the rest of the batch: each job's attempts and end, its state at one
//! moment (for the live page), and its own account.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::batch::resume::Resumption;
use crate::report::{Outcome, Report};

/// One attempt at a job, as the summary shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub outcome: Outcome,
    pub exit_code: i32,
    pub instance_id: Option<String>,
    /// It ran on a spot instance (EC2's word, not what was asked for; the attempt's
    /// attempt.json has both).
    pub spot: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was tried again, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_because: Option<String>,
    /// When it ran: the ledger's times and the page's timeline.
    #[serde(skip)]
    pub ran: Option<Span>,
    /// What interrupted it and what it resumed from (keys of their own in the summary).
    #[serde(flatten)]
    pub resume: Resumption,
}

/// When an attempt ran: from its start (the launch, when it launched its instance) to its end,
/// of which `boot_s` launching and booting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub boot_s: f64,
}

/// An attempt under way, for the live page.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub attempt: u32,
    pub since: SystemTime,
    pub instance_id: Option<String>,
    /// Seconds from `since` until its instance was ready, when it launched one.
    pub boot_s: f64,
}

/// The pool's state at one moment, for the live page.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ends: Vec<JobEnd>,
    pub running: BTreeMap<usize, Running>,
    pub queued: Vec<usize>,
}

/// What became of one job.
#[derive(Debug, Clone, Default)]
pub struct JobEnd {
    pub attempts: Vec<Attempt>,
    /// The last attempt's report.
    pub report: Option<Report>,
    /// When the job was not run by this batch (it succeeded earlier, or the batch stopped
    /// first), why.
    pub not_run: Option<String>,
}

/// The pool's own account, for the summary and the benchmark.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PoolStats {
    pub instances_launched: usize,
    pub peak_instances: usize,
    /// Launch to termination, summed over the pool's instances.
    pub instance_hours: f64,
    /// Instances whose termination could not be confirmed.
    pub unconfirmed: Vec<String>,
    /// Why the budget stopped the batch, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_reached: Option<String>,
    /// When the pool saw each instance end (the ledger's end where EC2 gives no time).
    #[serde(skip)]
    pub ended_at: std::collections::BTreeMap<String, std::time::SystemTime>,
}

/// An attempt that took `seconds` and ended now: when it began and ended.
pub fn ran_until_now(seconds: f64) -> Option<Span> {
    let ended = SystemTime::now();
    let took = Duration::try_from_secs_f64(seconds).ok()?;
    Some(Span {
        started: ended.checked_sub(took)?,
        ended,
        boot_s: 0.0,
    })
}
