//! Spot without lost work, the pool's part: what interrupted an attempt (AWS's reclaim
//! notice, a lost instance, a stop), how many reclaims a job has had, and whether its next
//! attempt resumes from what an earlier one checkpointed.
//!
//! The runner does the work on the instance (checkpoints, the notice, the restore); the pool
//! reads what it left: `interrupted.json` in the attempt's records tells a reclaim from
//! another lost instance (the client never sees a lost runner's `result.json`), and the next
//! attempt's `result.json` says what it restored. The decisions are pure and table-tested.

use rtb_model::checkpoint::Interrupted;
use rtb_model::{contract, Resumed};

use super::pool::Attempt;
use super::retry;
use crate::cloud::Cloud;
use crate::plan::{Plan, Work};
use crate::report::{Outcome, Report};

/// What interrupted an attempt, as the summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interruption {
    /// AWS's spot interruption notice came, then the instance was gone: a reclaim (it does
    /// not use up `retries`).
    ReclaimNotice,
    /// The instance was lost without an interruption notice (the console, a crash, a spot
    /// reclaim whose notice the runner never saw).
    InstanceLost,
    /// The batch was stopped (Ctrl-C, `stop --batch`, the budget).
    Stopped,
    /// The job ran past its timeout.
    TimedOut,
}

impl Interruption {
    pub fn words(self) -> &'static str {
        match self {
            Interruption::ReclaimNotice => "spot reclaim notice",
            Interruption::InstanceLost => "instance lost without a notice",
            Interruption::Stopped => "stopped",
            Interruption::TimedOut => "timed out",
        }
    }
}

/// An attempt's interruption and resume, in the summary (flattened into each attempt).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Resumption {
    /// What interrupted the attempt, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<Interruption>,
    /// AWS's notice as the runner recorded it (`interrupted.json`, or `result.json` when the
    /// job finished after all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<Interrupted>,
    /// The attempt was told to restore the newest checkpoint of the attempts before it
    /// (RTB_RESUME_FROM=previous).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resume_asked: bool,
    /// What it restored, from its `result.json` (files, bytes, from which attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
}

impl Resumption {
    /// The attempt that ended as `report` says, with AWS's `notice` if one came.
    pub fn of(report: &Report, notice: Option<Interrupted>, resume_asked: bool) -> Resumption {
        Resumption {
            interrupted_by: interruption(report.outcome, notice.as_ref()),
            notice,
            resume_asked,
            resumed: report.result.as_ref().and_then(|r| r.resumed.clone()),
        }
    }

    pub fn reclaimed(&self) -> bool {
        self.interrupted_by == Some(Interruption::ReclaimNotice)
    }
}

/// What interrupted an attempt that ended with `outcome`. A lost instance is a reclaim only
/// when the runner recorded AWS's interruption notice: a rebalance recommendation alone
/// is advice, and a loss after it is an ordinary loss.
pub fn interruption(outcome: Outcome, notice: Option<&Interrupted>) -> Option<Interruption> {
    match outcome {
        Outcome::InstanceLost if notice.is_some_and(Interrupted::is_interruption) => {
            Some(Interruption::ReclaimNotice)
        }
        Outcome::InstanceLost => Some(Interruption::InstanceLost),
        Outcome::Interrupted => Some(Interruption::Stopped),
        Outcome::TimedOut => Some(Interruption::TimedOut),
        _ => None,
    }
}

/// The reclaims among a job's attempts so far.
pub fn reclaims(attempts: &[Attempt]) -> u32 {
    attempts.iter().filter(|a| a.resume.reclaimed()).count() as u32
}

/// Whether the next attempt of a job restores a checkpoint: only after an attempt that lost
/// its instance ([`retry::resume_from`]), and only when there is one to restore: the job
/// checkpoints (`checkpoint-every`), or that attempt was reclaimed (its runner checkpointed
/// on AWS's notice, as it does on spot).
pub fn resumes(checkpoints: bool, earlier: &[Attempt]) -> bool {
    let seen: Vec<(u32, Outcome)> = earlier
        .iter()
        .zip(1u32..)
        .map(|(a, n)| (n, a.outcome))
        .collect();
    let Some(lost) = retry::resume_from(&seen) else {
        return false;
    };
    checkpoints
        || lost
            .checked_sub(1)
            .and_then(|i| earlier.get(i as usize))
            .is_some_and(|a| a.resume.reclaimed())
}

/// The plan of a job's next attempt, told to resume when [`resumes`] says so. `previous`
/// lets the runner walk back past an attempt lost before its first checkpoint to the newest
/// one that saved something.
pub fn prepare(plan: Plan, earlier: &[Attempt]) -> Plan {
    if resumes(plan.checkpoint_every().is_some(), earlier) {
        plan.resuming_previous()
    } else {
        plan
    }
}

/// The attempt planned as `plan` was told to resume.
pub fn asked(plan: &Plan) -> bool {
    match &plan.work {
        Work::Container(c) => c.env.iter().any(|(k, _)| k == contract::RESUME_FROM.name),
        Work::Shell(_) => false,
    }
}

/// AWS's notice for an attempt that has ended: from its `result.json` when the runner lived
/// to write one, else (a lost instance) from the `interrupted.json` it wrote on the notice.
/// None when there was none or it cannot be read (the loss is then counted as a failure).
pub async fn notice(cloud: &Cloud, plan: &Plan, report: &Report) -> Option<Interrupted> {
    if let Some(n) = report.result.as_ref().and_then(|r| r.notice.clone()) {
        return Some(n);
    }
    if report.outcome != Outcome::InstanceLost {
        return None;
    }
    let records = plan.work_records()?;
    cloud
        .get_json::<Interrupted>(records.bucket(), &records.interrupted_key())
        .await
        .ok()
        .flatten()
}

/// The summary's words for an attempt's interruption and resume ("" when neither).
pub fn note(r: &Resumption) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(i) = r.interrupted_by {
        match (&r.notice, i) {
            (Some(n), Interruption::ReclaimNotice) => {
                parts.push(format!("{} at {} (AWS: {})", i.words(), n.seen_at, n.time))
            }
            _ => parts.push(i.words().to_string()),
        }
    }
    match &r.resumed {
        Some(x) => parts.push(format!(
            "resumed from attempt {}: {} file{} restored",
            x.from_attempt,
            x.files,
            if x.files == 1 { "" } else { "s" }
        )),
        None if r.resume_asked => parts.push("asked to resume".to_string()),
        None => {}
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_model::checkpoint::{CHECKPOINT_SCHEMA, REBALANCE, SPOT_INTERRUPTION};

    fn notice(kind: &str) -> Interrupted {
        Interrupted {
            schema: CHECKPOINT_SCHEMA,
            job_id: "j".into(),
            attempt: 1,
            notice: kind.into(),
            action: Some("terminate".into()),
            time: "2026-12-04T10:02:00Z".into(),
            seen_at: "2026-12-04T10:00:01Z".into(),
        }
    }

    fn attempt(outcome: Outcome, reclaimed: bool) -> Attempt {
        Attempt {
            outcome,
            exit_code: 0,
            instance_id: None,
            spot: false,
            seconds: 1.0,
            error: None,
            retried_because: None,
            ran: None,
            resume: Resumption {
                interrupted_by: reclaimed.then_some(Interruption::ReclaimNotice),
                ..Resumption::default()
            },
        }
    }

    #[test]
    fn what_interrupted_an_attempt() {
        use Interruption::*;
        let (spot, rebalance) = (notice(SPOT_INTERRUPTION), notice(REBALANCE));
        let table: &[(Outcome, Option<&Interrupted>, Option<Interruption>)] = &[
            (Outcome::InstanceLost, Some(&spot), Some(ReclaimNotice)),
            (Outcome::InstanceLost, Some(&rebalance), Some(InstanceLost)),
            (Outcome::InstanceLost, None, Some(InstanceLost)),
            // The notice came, but the job finished (or failed) before the instance went.
            (Outcome::Succeeded, Some(&spot), None),
            (Outcome::JobFailed, Some(&spot), None),
            (Outcome::Interrupted, None, Some(Stopped)),
            (Outcome::TimedOut, None, Some(TimedOut)),
            (Outcome::AgentNeverOnline, None, None),
            (Outcome::Unknown, Some(&spot), None),
        ];
        for (outcome, n, want) in table {
            assert_eq!(interruption(*outcome, *n), *want, "{outcome:?} {n:?}");
        }
    }

    #[test]
    fn reclaims_are_counted_across_attempts() {
        use Outcome::*;
        let table: &[(&[(Outcome, bool)], u32)] = &[
            (&[], 0),
            (&[(InstanceLost, true)], 1),
            (&[(InstanceLost, true), (InstanceLost, false)], 1),
            (
                &[
                    (InstanceLost, true),
                    (LaunchFailed, false),
                    (InstanceLost, true),
                ],
                2,
            ),
        ];
        for (attempts, want) in table {
            let a: Vec<Attempt> = attempts.iter().map(|(o, r)| attempt(*o, *r)).collect();
            assert_eq!(reclaims(&a), *want, "{attempts:?}");
        }
    }

    #[test]
    fn a_retry_resumes_after_a_lost_instance_when_a_checkpoint_was_made() {
        use Outcome::*;
        /// (checkpoints, earlier attempts (outcome, reclaimed), resumes)
        type Case<'a> = (bool, &'a [(Outcome, bool)], bool);
        let table: &[Case] = &[
            (true, &[], false),
            (true, &[(InstanceLost, false)], true),
            (false, &[(InstanceLost, false)], false),
            // Reclaimed: the runner checkpointed on the notice.
            (false, &[(InstanceLost, true)], true),
            (
                false,
                &[(InstanceLost, true), (AgentNeverOnline, false)],
                true,
            ),
            (false, &[(InstanceLost, true), (InstanceLost, false)], false),
            (
                true,
                &[(InstanceLost, false), (AgentNeverOnline, false)],
                true,
            ),
            (true, &[(InstanceLost, false), (JobFailed, false)], false),
            (true, &[(JobFailed, false)], false),
            (true, &[(RemoteFailed, false)], false),
        ];
        for (checkpoints, earlier, want) in table {
            let a: Vec<Attempt> = earlier.iter().map(|(o, r)| attempt(*o, *r)).collect();
            assert_eq!(
                resumes(*checkpoints, &a),
                *want,
                "{checkpoints} {earlier:?}"
            );
        }
    }

    #[test]
    fn the_summary_names_the_notice_and_what_was_restored() {
        let reclaimed = Resumption {
            interrupted_by: Some(Interruption::ReclaimNotice),
            notice: Some(notice(SPOT_INTERRUPTION)),
            ..Resumption::default()
        };
        assert_eq!(
            note(&reclaimed),
            " [spot reclaim notice at 2026-12-04T10:00:01Z (AWS: 2026-12-04T10:02:00Z)]"
        );
        let resumed = Resumption {
            resume_asked: true,
            resumed: Some(Resumed {
                from_attempt: 1,
                from: "s3://b/o/_rtb-job/j/r1-a1/".into(),
                files: 12,
                bytes: 240,
                missed: 0,
                seconds: 0.4,
            }),
            ..Resumption::default()
        };
        assert_eq!(
            note(&resumed),
            " [resumed from attempt 1: 12 files restored]"
        );
        let lost = Resumption {
            interrupted_by: Some(Interruption::InstanceLost),
            resume_asked: true,
            ..Resumption::default()
        };
        assert_eq!(
            note(&lost),
            " [instance lost without a notice; asked to resume]"
        );
        assert_eq!(note(&Resumption::default()), "");
    }
}
