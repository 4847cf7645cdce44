//! The end of a batch: one table (job, outcome, exit code, attempts, duration, instance-hours,
//! cost, output, and for each job that did not succeed its error; for one that succeeded without
//! a usable image, the runner's flag; for attempts a spot reclaim interrupted or that resumed
//! from a checkpoint, which and how many files they restored) with the batch's cost under it,
//! or one JSON document; and the batch's exit code.

use std::fmt::Write as _;

use super::jobs::BatchJob;
use super::pool::{outcome_word, JobEnd, PoolStats};
use super::resume;
use crate::report::{exit, InstanceFate, Outcome};

pub struct Summary<'a> {
    pub name: &'a str,
    pub jobs: &'a [BatchJob],
    pub ends: &'a [JobEnd],
    pub stats: &'a PoolStats,
    pub wall_s: f64,
    pub interrupted: bool,
    /// What it cost (None: not computed for this engine).
    pub cost: Option<&'a crate::cost::account::BatchCost>,
}

impl Summary<'_> {
    /// 0 only when every job succeeded (or had succeeded before, with --resume); 69 when an
    /// instance's end is unconfirmed; 130 when stopped by a signal; else 71.
    pub fn exit_code(&self) -> i32 {
        if !self.stats.unconfirmed.is_empty()
            || self.ends.iter().any(|e| {
                e.report
                    .as_ref()
                    .is_some_and(|r| r.instance == InstanceFate::Unconfirmed)
            })
        {
            return exit::UNCONFIRMED;
        }
        if self.interrupted {
            return exit::INTERRUPTED;
        }
        if self.ends.iter().all(succeeded) {
            0
        } else {
            exit::BATCH_INCOMPLETE
        }
    }

    pub fn table(&self) -> String {
        let mut o = String::new();
        let ok = self.ends.iter().filter(|e| succeeded(e)).count();
        let _ = writeln!(
            o,
            "\nbatch {}: {ok} of {} jobs succeeded in {}; {} instance{} launched (at most {} at once), {:.2} instance-hours",
            self.name,
            self.jobs.len(),
            crate::cmd::short_duration(std::time::Duration::from_secs_f64(self.wall_s)),
            self.stats.instances_launched,
            if self.stats.instances_launched == 1 { "" } else { "s" },
            self.stats.peak_instances,
            self.stats.instance_hours,
        );
        let w = self
            .jobs
            .iter()
            .map(|j| j.job_id.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let _ = writeln!(
            o,
            "{:<w$}  {:<18} {:>4}  {:>8} {:>9} {:>8} {:>10}  OUTPUT",
            "JOB", "OUTCOME", "EXIT", "ATTEMPTS", "DURATION", "INST-H", "COST"
        );
        for (job, end) in self.jobs.iter().zip(self.ends) {
            let (word, code) = match (&end.report, &end.not_run) {
                (_, Some(why)) if why.starts_with("succeeded") => {
                    ("succeeded before".to_string(), "-".to_string())
                }
                (_, Some(_)) => ("not run".to_string(), "-".to_string()),
                (Some(r), None) => (outcome_word(r.outcome).to_string(), r.exit_code.to_string()),
                (None, None) => ("not run".to_string(), "-".to_string()),
            };
            // + 0.0: an empty sum is -0.0, which would print as "-0.000".
            let secs: f64 = end.attempts.iter().map(|a| a.seconds).sum::<f64>() + 0.0;
            let _ = writeln!(
                o,
                "{:<w$}  {:<18} {:>4}  {:>8} {:>9} {:>8.3} {:>10}  {}",
                job.job_id,
                word,
                code,
                end.attempts.len(),
                if end.attempts.is_empty() {
                    "-".into()
                } else {
                    crate::cmd::short_duration(std::time::Duration::from_secs_f64(secs))
                },
                secs / 3600.0,
                self.job_cost_text(job, end),
                job.plan
                    .output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
            );
            if !succeeded(end) {
                for (n, a) in end.attempts.iter().enumerate() {
                    let why = a.error.as_deref().unwrap_or("");
                    let _ = writeln!(
                        o,
                        "{:<w$}    attempt {}: {} (exit {}){}{}{}",
                        "",
                        n + 1,
                        outcome_word(a.outcome),
                        a.exit_code,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        },
                        resume::note(&a.resume),
                        a.retried_because
                            .as_deref()
                            .map(|r| format!(" -> retried: {r}"))
                            .unwrap_or_default(),
                    );
                }
                if let Some(why) = &end.not_run {
                    let _ = writeln!(o, "{:<w$}    {why}", "");
                }
            } else if let Some((flag, note)) = picture_flag(end) {
                let _ = writeln!(
                    o,
                    "{:<w$}    FLAGGED: {}{}",
                    "",
                    flag.describe(),
                    note.map(|n| format!(" ({n})")).unwrap_or_default()
                );
            }
            if succeeded(end) && end.attempts.len() > 1 {
                // Each attempt retried, and the last when it was interrupted or resumed.
                for (n, a) in end.attempts.iter().enumerate().filter(|(_, a)| {
                    a.retried_because.is_some() || !resume::note(&a.resume).is_empty()
                }) {
                    let _ = writeln!(
                        o,
                        "{:<w$}    attempt {}: {}{}{}",
                        "",
                        n + 1,
                        outcome_word(a.outcome),
                        resume::note(&a.resume),
                        a.retried_because
                            .as_deref()
                            .map(|r| format!(" -> retried: {r}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        if let Some(c) = self.cost {
            o.push_str(&cost_lines(c));
        }
        if self.stats.budget_reached.is_some() {
            let held = self
                .ends
                .iter()
                .filter(|e| e.not_run.as_deref().is_some_and(|w| w.contains("budget")))
                .count();
            let _ = writeln!(
                o,
                "the budget was reached: {held} job(s) not run (not_run, budget); --resume runs them later"
            );
        }
        for id in &self.stats.unconfirmed {
            let _ = writeln!(o, "instance {id} MAY STILL BE RUNNING: aws ec2 terminate-instances --instance-ids {id}");
        }
        o
    }

    pub fn json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .zip(self.ends)
            .map(|(job, end)| {
                let r = end.report.as_ref();
                serde_json::json!({
                    "job_id": job.job_id,
                    "row": job.row.number,
                    "outcome": match (r, &end.not_run) {
                        (_, Some(w)) if w.starts_with("succeeded") => serde_json::json!("succeeded_before"),
                        (_, Some(_)) | (None, None) => serde_json::json!("not_run"),
                        (Some(r), None) => serde_json::to_value(r.outcome).unwrap_or_default(),
                    },
                    "exit_code": r.map(|r| r.exit_code),
                    "attempts": end.attempts,
                    "duration_s": end.attempts.iter().map(|a| a.seconds).sum::<f64>(),
                    "output": job.plan.output.as_ref().map(|o| o.to_string()),
                    "error": r.filter(|_| !succeeded(end)).and_then(|r| r.error.clone()),
                    "not_run": end.not_run,
                    "cost_usd": self.job_usd(job, end),
                    "cost": self.cost.and_then(|c| c.jobs.get(&job.job_id)),
                    "picture_flag": picture_flag(end).map(|(f, _)| f),
                })
            })
            .collect();
        serde_json::json!({
            "batch": self.name,
            "exit_code": self.exit_code(),
            "jobs_total": self.jobs.len(),
            "jobs_succeeded": self.ends.iter().filter(|e| succeeded(e)).count(),
            "wall_s": self.wall_s,
            "pool": self.stats,
            "cost_usd": self.cost.and_then(|c| c.total_usd),
            "currency": crate::cost::CURRENCY,
            "price_source": self.cost.filter(|c| !c.sources.is_empty()).map(|c| c.sources.join(", ")),
            "cost": self.cost.map(|c| serde_json::json!({
                "total_usd": c.total_usd,
                "failed_attempts_usd": c.failed_usd,
                "spot_savings_usd": c.spot_savings_usd,
                // AWS Batch: the attempts' run time, not the instances' (see `basis`).
                "billed_instance_seconds": c.basis.is_none().then_some(c.billed_s),
                "attempt_seconds": c.basis.is_some().then_some(c.billed_s),
                "note": c.note,
                "basis": c.basis,
            })),
            "jobs": jobs,
        })
    }

    fn job_usd(&self, job: &BatchJob, end: &JobEnd) -> Option<f64> {
        let ran = end.attempts.iter().any(|a| a.instance_id.is_some());
        self.cost.and_then(|c| c.job_usd(&job.job_id, ran))
    }

    fn job_cost_text(&self, job: &BatchJob, end: &JobEnd) -> String {
        let usd = self.job_usd(job, end);
        match (usd, self.cost.and_then(|c| c.jobs.get(&job.job_id))) {
            (Some(u), Some(r)) if r.failed_attempts > 0 => {
                format!("{}*", crate::cost::record::usd_text(Some(u)))
            }
            (u, _) => crate::cost::record::usd_text(u),
        }
    }
}

/// The cost lines under the table: the total, where prices came from, what failures cost,
/// what spot saved.
fn cost_lines(c: &crate::cost::account::BatchCost) -> String {
    use crate::cost::record::usd_text;
    let mut o = String::new();
    match c.total_usd {
        Some(t) => {
            let _ = write!(
                o,
                "cost: {} in all ({} {}{})",
                usd_text(Some(t)),
                c.billed_s,
                if c.basis.is_some() {
                    "seconds of the jobs' attempts"
                } else {
                    "billed instance-seconds"
                },
                if c.sources.is_empty() {
                    String::new()
                } else {
                    format!("; prices from {}", c.sources.join(", "))
                }
            );
            if let Some(f) = c.failed_usd.filter(|f| *f > 0.0) {
                let _ = write!(
                    o,
                    "; failed attempts {} of it (* in COST)",
                    usd_text(Some(f))
                );
            }
            if let Some(s) = c.spot_savings_usd.filter(|s| *s > 0.0) {
                let _ = write!(o, "; spot saved {} against on-demand", usd_text(Some(s)));
            }
            o.push('\n');
        }
        None => {
            let _ = writeln!(
                o,
                "cost: unknown ({}); give --price USD_PER_HOUR for a figure",
                c.note.as_deref().unwrap_or("no price")
            );
        }
    }
    if let Some(b) = &c.basis {
        let _ = writeln!(o, "cost: {b}");
    }
    o
}

/// The runner's flag on a job that succeeded without a usable image, and why.
fn picture_flag(e: &JobEnd) -> Option<(rtb_model::PictureFlag, Option<&str>)> {
    if !succeeded(e) {
        return None;
    }
    let p = e.report.as_ref()?.result.as_ref()?.picture.as_ref()?;
    Some((p.flag?, p.note.as_deref()))
}

fn succeeded(e: &JobEnd) -> bool {
    match (&e.report, &e.not_run) {
        (_, Some(why)) => why.starts_with("succeeded"),
        (Some(r), None) => r.outcome == Outcome::Succeeded,
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::pool::Attempt;
    use crate::batch::resume::{Interruption, Resumption};
    use crate::cost::account::BatchCost;

    /// A job reclaimed once, then resumed: both attempts are in the table and the JSON, with
    /// what interrupted the first and what the second restored.
    #[test]
    fn each_attempt_says_what_interrupted_it_and_what_it_resumed_from() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n\n1\n").unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(&f, "[batch]\ncsv = \"jobs.csv\"\n[job]\nami = \"ami-0123456789abcdef0\"\ncommand = \"r\"\noutput = \"s3://lab/${n}\"\n").unwrap();
        let file = crate::batch::BatchFile::load(&f).unwrap();
        let jobs = crate::batch::jobs::jobs(&file, &[], crate::batch::Engine::Ec2).unwrap();
        let notice = rtb_model::checkpoint::Interrupted {
            schema: 1,
            job_id: "b-1".into(),
            attempt: 1,
            notice: rtb_model::checkpoint::SPOT_INTERRUPTION.into(),
            action: Some("terminate".into()),
            time: "2026-12-04T10:02:00Z".into(),
            seen_at: "2026-12-04T10:00:03Z".into(),
        };
        let attempt = |outcome, resume| Attempt {
            outcome,
            exit_code: 0,
            instance_id: Some("i-1".into()),
            spot: true,
            seconds: 60.0,
            error: None,
            retried_because: None,
            ran: None,
            resume,
        };
        let lost = Attempt {
            retried_because: Some("AWS reclaimed the spot instance (interruption notice)".into()),
            ..attempt(
                Outcome::InstanceLost,
                Resumption {
                    interrupted_by: Some(Interruption::ReclaimNotice),
                    notice: Some(notice),
                    ..Resumption::default()
                },
            )
        };
        let resumed = attempt(
            Outcome::Succeeded,
            Resumption {
                resume_asked: true,
                resumed: Some(rtb_model::Resumed {
                    from_attempt: 1,
                    from: "s3://lab/1/_rtb-job/b-1/r1-a1/".into(),
                    files: 12,
                    bytes: 252,
                    missed: 0,
                    seconds: 0.3,
                }),
                ..Resumption::default()
            },
        );
        let report = crate::report::Report {
            job_id: "b-1".into(),
            outcome: Outcome::Succeeded,
            exit_code: 0,
            instance_id: Some("i-2".into()),
            instance: InstanceFate::Pooled,
            ami: String::new(),
            instance_type: String::new(),
            region: None,
            output: None,
            records: None,
            phases: crate::report::Phases::default(),
            log_lines: 0,
            result: None,
            error: None,
            kept: false,
        };
        let ends = vec![JobEnd {
            attempts: vec![lost, resumed],
            report: Some(report),
            not_run: None,
        }];
        let stats = PoolStats::default();
        let s = Summary {
            name: "b",
            jobs: &jobs,
            ends: &ends,
            stats: &stats,
            wall_s: 120.0,
            interrupted: false,
            cost: None,
        };
        let table = s.table();
        for want in [
            "attempt 1: instance lost [spot reclaim notice at 2026-12-04T10:00:03Z (AWS: 2026-12-04T10:02:00Z)] -> retried: AWS reclaimed the spot instance (interruption notice)",
            "attempt 2: succeeded [resumed from attempt 1: 12 files restored]",
        ] {
            assert!(table.contains(want), "{want} not in\n{table}");
        }
        let doc = s.json();
        let a = &doc["jobs"][0]["attempts"];
        assert_eq!(a[0]["interrupted_by"], "reclaim_notice");
        assert_eq!(a[0]["notice"]["time"], "2026-12-04T10:02:00Z");
        assert_eq!(a[0]["outcome"], "instance_lost");
        assert!(a[0].get("resumed").is_none(), "{a}");
        assert_eq!(a[1]["resume_asked"], true);
        assert_eq!(a[1]["resumed"]["files"], 12);
        assert!(a[1].get("interrupted_by").is_none(), "{a}");
    }

    #[test]
    fn the_cost_lines_name_the_total_the_sources_failures_and_savings() {
        let c = BatchCost {
            total_usd: Some(1.5),
            failed_usd: Some(0.25),
            spot_savings_usd: Some(2.0),
            billed_s: 5400,
            sources: vec!["EC2 spot price history".into()],
            ..BatchCost::default()
        };
        let text = cost_lines(&c);
        for want in [
            "cost: $1.5000 in all (5400 billed instance-seconds; prices from EC2 spot price history)",
            "failed attempts $0.2500 of it",
            "spot saved $2.0000 against on-demand",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        // AWS Batch's figure says what it counts and what it leaves out.
        let batch = BatchCost {
            basis: Some(crate::cost::aws_batch::BASIS.into()),
            ..c.clone()
        };
        let text = cost_lines(&batch);
        assert!(
            text.contains("(5400 seconds of the jobs' attempts;")
                && text.contains("idle minutes are the queue's, not a job's"),
            "{text}"
        );
        let text = cost_lines(&BatchCost::unknown("no answer from the Price List API"));
        assert!(
            text.contains("cost: unknown (no answer from the Price List API); give --price"),
            "{text}"
        );
    }
}
