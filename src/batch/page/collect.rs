//! The page's model, from what is known of a batch:
//! - [`from_run`]: the batch that runs here (its jobs, the pool's ends and the attempts under
//!   way), pure;
//! - [`from_records`]: the registry's and an earlier page's knowledge, brought up to date from
//!   the jobs' records in S3 (`report`, and the AWS Batch engine's live page).
//!
//! The thumbnails and log tails are fetched apart ([`super::fetch`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::StreamExt;
use rtb_model::{JobRecords, JobResult, S3Url};

use super::{Attempt, Card, Ending, Page, State};
use crate::batch::jobs::BatchJob;
use crate::batch::pool::{outcome_word, Attempt as PoolAttempt, JobEnd, Snapshot};
use crate::cloud::{Cloud, CloudError};

pub use super::fetch::Fetched;
use crate::report::Outcome;

/// S3 reads at once while collecting (a 1,000-job batch is not 1,000 requests at once).
const CONCURRENCY: usize = 16;

/// A batch that runs here, as the pool (or the AWS Batch follow loop) knows it.
pub struct RunFacts<'a> {
    pub batch: &'a str,
    pub engine: &'a str,
    pub jobs: &'a [BatchJob],
    /// The CSV's columns, in the file's order (a card lists its row's values so).
    pub columns: &'a [String],
    pub snapshot: &'a Snapshot,
    pub started: SystemTime,
    pub now: SystemTime,
    /// The batch's wall time, once it is over (the page is then final).
    pub wall_s: Option<f64>,
}

fn ending(a: &PoolAttempt) -> Ending {
    match (a.retried_because.is_some(), a.outcome) {
        (true, _) => Ending::Retried,
        (false, Outcome::Succeeded) => Ending::Succeeded,
        (false, Outcome::Detached) => Ending::Running,
        (false, _) => Ending::Failed,
    }
}

fn note(a: &PoolAttempt) -> String {
    // With what interrupted it and what it resumed from, as the summary says them.
    let mut n = format!(
        "{}{}",
        outcome_word(a.outcome),
        crate::batch::resume::note(&a.resume)
    );
    if let Some(why) = &a.retried_because {
        n.push_str(&format!("; retried: {why}"));
    }
    n
}

fn time(rfc3339: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(rfc3339).ok()
}

/// A row's values in the CSV's column order (then any other, by name).
fn row_values(job: &BatchJob, columns: &[String]) -> Vec<(String, String)> {
    let values = &job.row.values;
    let mut out: Vec<(String, String)> = columns
        .iter()
        .filter_map(|c| values.get(c).map(|v| (c.clone(), v.clone())))
        .collect();
    for (k, v) in values {
        if !columns.contains(k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

/// The page of a batch that runs here.
pub fn from_run(f: &RunFacts<'_>) -> Page {
    let live = f.wall_s.is_none();
    let mut page = Page {
        batch: f.batch.to_string(),
        engine: f.engine.to_string(),
        generated_at: f.now,
        started_at: Some(f.started),
        wall_s: f.wall_s,
        live,
        jobs: Vec::with_capacity(f.jobs.len()),
        ..Page::default()
    };
    let none = JobEnd::default();
    for (j, job) in f.jobs.iter().enumerate() {
        let end = f.snapshot.ends.get(j).unwrap_or(&none);
        let report = end.report.as_ref();
        let result = report.and_then(|r| r.result.as_ref());
        let mut card = Card::new(&job.job_id, State::Queued, "queued");
        card.row = row_values(job, f.columns);
        card.output = job.plan.output.as_ref().map(|o| o.to_string());
        card.records = report.and_then(|r| r.records.clone());
        card.picture = result.and_then(|r| r.picture.clone());
        for (k, a) in end.attempts.iter().enumerate() {
            let last = k + 1 == end.attempts.len();
            // Timed by the pool; else (AWS Batch, --detach) the runner's own times.
            let (start, stop, boot_s) = match a.ran {
                Some(s) => (Some(s.started), Some(s.ended), s.boot_s),
                None => match result.filter(|_| last) {
                    Some(r) => (time(&r.started_at), time(&r.finished_at), 0.0),
                    None => (None, None, 0.0),
                },
            };
            let ending = ending(a);
            card.attempts.push(Attempt {
                n: k as u32 + 1,
                instance: a
                    .instance_id
                    .clone()
                    .or_else(|| result.filter(|_| last).and_then(|r| r.instance_id.clone())),
                start,
                boot_s,
                end: if ending == Ending::Running {
                    None
                } else {
                    stop
                },
                ending,
                note: note(a),
            });
        }
        card.duration_s =
            (!end.attempts.is_empty()).then(|| end.attempts.iter().map(|a| a.seconds).sum());
        let (state, outcome) = match (f.snapshot.running.get(&j), report, &end.not_run) {
            (Some(r), _, _) => {
                card.attempts.push(Attempt {
                    n: r.attempt,
                    instance: r.instance_id.clone(),
                    start: Some(r.since),
                    boot_s: r.boot_s,
                    end: None,
                    ending: Ending::Running,
                    note: "running".into(),
                });
                (
                    State::Running,
                    if r.attempt > 1 {
                        format!("running (attempt {})", r.attempt)
                    } else {
                        "running".into()
                    },
                )
            }
            (None, _, Some(why)) if why.starts_with("succeeded") => {
                (State::SucceededBefore, "succeeded before".into())
            }
            (None, _, Some(why)) => (State::NotRun, format!("not run: {why}")),
            (None, Some(_), None) if f.snapshot.queued.contains(&j) => (
                State::Queued,
                format!("queued again after attempt {}", end.attempts.len()),
            ),
            (None, Some(r), None) => match r.outcome {
                Outcome::Succeeded => (State::Succeeded, "succeeded".into()),
                Outcome::Detached => (State::Running, "detached: runs on its own".into()),
                o => {
                    card.error = r.error.clone();
                    (
                        State::Failed,
                        format!("{} (exit {})", outcome_word(o), r.exit_code),
                    )
                }
            },
            (None, None, None) if live => (State::Queued, "queued".into()),
            (None, None, None) => (State::NotRun, "not run".into()),
        };
        card.state = state;
        card.outcome = outcome;
        page.jobs.push(card);
    }
    page
}

/// What this workstation knows of one job without S3: from the registry.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub job_id: String,
    pub output: Option<S3Url>,
    /// The instance of its newest attempt, as the client saw it.
    pub instance_id: Option<String>,
    /// How the client saw it end, when it did.
    pub ended: Option<(String, i32)>,
}

/// The page of a batch from what is known of it (an earlier page's model, the registry, the
/// jobs under an output), brought up to date from the jobs' records in S3: a job the earlier
/// page saw end keeps its card; the others are read again.
pub async fn from_records(
    cloud: &Cloud,
    batch: &str,
    engine: &str,
    base: Option<Page>,
    known: Vec<Known>,
    now: SystemTime,
) -> Result<Page, CloudError> {
    let mut page = base.unwrap_or_else(|| Page {
        batch: batch.to_string(),
        engine: engine.to_string(),
        ..Page::default()
    });
    page.generated_at = now;
    page.live = false;
    let mut by_id: BTreeMap<String, Known> =
        known.into_iter().map(|k| (k.job_id.clone(), k)).collect();
    // Jobs the earlier page did not have, by id.
    let mut more: Vec<Card> = by_id
        .keys()
        .filter(|id| !page.jobs.iter().any(|c| &c.job_id == *id))
        .map(|id| Card::new(id, State::Queued, "queued"))
        .collect();
    page.jobs.append(&mut more);
    let stale: Vec<(usize, Known)> = page
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.state.is_final() || c.attempts.is_empty())
        .map(|(i, c)| {
            let mut k = by_id.remove(&c.job_id).unwrap_or_default();
            k.job_id = c.job_id.clone();
            if k.output.is_none() {
                k.output = c.output.as_deref().and_then(|o| o.parse().ok());
            }
            (i, k)
        })
        .collect();
    let mut read = futures::stream::iter(stale.into_iter().map(|(i, k)| async move {
        let card = match &k.output {
            Some(o) => card_from_records(cloud, &k, o).await.map(Some),
            None => Ok(None),
        };
        (i, card)
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some((i, card)) = read.next().await {
        if let Some(mut card) = card? {
            let old = &page.jobs[i];
            card.row = old.row.clone();
            card.cost_usd = old.cost_usd;
            page.jobs[i] = card;
        }
    }
    drop(read);
    page.started_at = page
        .jobs
        .iter()
        .flat_map(|c| c.attempts.iter().filter_map(|a| a.start))
        .min()
        .or(page.started_at);
    if page.wall_s.is_none() && page.jobs.iter().all(|c| c.state.is_final()) {
        let end = page
            .jobs
            .iter()
            .flat_map(|c| c.attempts.iter().filter_map(|a| a.end))
            .max();
        if let (Some(s), Some(e)) = (page.started_at, end) {
            page.wall_s = e.duration_since(s).ok().map(|d| d.as_secs_f64());
        }
    }
    Ok(page)
}

/// The page of a batch that runs elsewhere (AWS Batch): its first page, brought up to date
/// from the jobs' records each time it is asked for.
pub struct Refresh<'a> {
    cloud: &'a Cloud,
    base: Page,
    known: Vec<Known>,
}

impl<'a> Refresh<'a> {
    pub fn new(cloud: &'a Cloud, base: Page, known: Vec<Known>) -> Refresh<'a> {
        Refresh { cloud, base, known }
    }

    /// The page now; the first page when S3 does not answer.
    pub async fn page(&self) -> Page {
        let b = &self.base;
        let page = from_records(
            self.cloud,
            &b.batch,
            &b.engine,
            Some(b.clone()),
            self.known.clone(),
            SystemTime::now(),
        )
        .await
        .unwrap_or_else(|_| b.clone());
        Page {
            started_at: b.started_at,
            ..page
        }
    }
}

/// One job's card from its records: every attempt of its newest run (or the job's own folder,
/// for a job run alone), each from its `result.json`.
async fn card_from_records(cloud: &Cloud, k: &Known, output: &S3Url) -> Result<Card, CloudError> {
    let base = JobRecords::under_output(output, &k.job_id);
    let folders = cloud
        .subfolders(base.bucket(), &base.root().dir_prefix())
        .await?;
    let mut attempts: Vec<(u32, String)> = Vec::new();
    let newest_run = folders
        .iter()
        .filter_map(|f| rtb_model::layout::parse_attempt_dir(f).map(|(run, _)| run))
        .max()
        .map(str::to_string);
    if let Some(run) = &newest_run {
        attempts = folders
            .iter()
            .filter_map(|f| rtb_model::layout::parse_attempt_dir(f))
            .filter(|(r, _)| r == run)
            .map(|(_, n)| (n, format!("{run}-a{n}/")))
            .collect();
        attempts.sort();
    }
    let records: Vec<(u32, JobRecords)> = if attempts.is_empty() {
        vec![(1, base.clone())]
    } else {
        attempts
            .iter()
            .map(|(n, f)| (*n, JobRecords::at(base.root().join(f))))
            .collect()
    };
    let mut card = Card::new(&k.job_id, State::Queued, "queued");
    card.output = Some(output.to_string());
    let count = records.len();
    let mut newest: Option<JobResult> = None;
    for (i, (n, r)) in records.iter().enumerate() {
        let result = cloud.job_result(r).await?;
        let last = i + 1 == count;
        let ending = match (&result, last) {
            (Some(res), _) if res.outcome == rtb_model::Outcome::Succeeded => Ending::Succeeded,
            (_, false) => Ending::Retried,
            (Some(_), true) => Ending::Failed,
            (None, true) => Ending::Running,
        };
        if result.is_none() && !last {
            // An attempt that never wrote its record (its instance was lost): counted.
            card.attempts.push(Attempt {
                n: *n,
                instance: None,
                start: None,
                boot_s: 0.0,
                end: None,
                ending,
                note: "no result record; retried".into(),
            });
            continue;
        }
        if let Some(res) = &result {
            card.attempts.push(Attempt {
                n: *n,
                // The client's own word for the newest attempt, else the runner's.
                instance: k
                    .instance_id
                    .clone()
                    .filter(|_| last)
                    .or_else(|| res.instance_id.clone()),
                start: time(&res.started_at),
                boot_s: 0.0,
                end: time(&res.finished_at),
                ending,
                note: format!(
                    "{}{}",
                    outcome_text(res.outcome),
                    if last { "" } else { "; retried" }
                ),
            });
        }
        if last {
            card.records = Some(r.root().to_string());
            newest = result;
        }
    }
    card.duration_s = card
        .attempts
        .iter()
        .filter_map(|a| Some(a.end?.duration_since(a.start?).ok()?.as_secs_f64()))
        .reduce(|a, b| a + b);
    match &newest {
        Some(res) => {
            card.picture = res.picture.clone();
            if res.outcome == rtb_model::Outcome::Succeeded {
                card.state = State::Succeeded;
                card.outcome = "succeeded".into();
            } else {
                card.state = State::Failed;
                card.outcome = format!("{} (exit {})", outcome_text(res.outcome), res.exit_code);
                card.error = res.error.clone();
            }
        }
        None => match &k.ended {
            // The client saw it end without a record (launch failed, instance lost...).
            Some((outcome, code)) => {
                card.state = if outcome == "succeeded" {
                    State::Succeeded
                } else {
                    State::Failed
                };
                card.outcome = format!("{outcome} (exit {code})");
                for a in &mut card.attempts {
                    if a.ending == Ending::Running {
                        a.ending = Ending::Failed;
                    }
                }
            }
            None => {
                let records = records.last().map(|(_, r)| r);
                let started = match records {
                    Some(r) => cloud.log_started(r).await?,
                    None => false,
                };
                if started {
                    card.state = State::Running;
                    card.outcome = "running".into();
                    card.records = records.map(|r| r.root().to_string());
                    if card.attempts.last().is_none_or(|a| a.end.is_some()) {
                        card.attempts.push(Attempt {
                            n: count as u32,
                            instance: k.instance_id.clone(),
                            start: None,
                            boot_s: 0.0,
                            end: None,
                            ending: Ending::Running,
                            note: "running".into(),
                        });
                    }
                }
            }
        },
    }
    Ok(card)
}

fn outcome_text(o: rtb_model::Outcome) -> &'static str {
    match o {
        rtb_model::Outcome::Succeeded => "succeeded",
        rtb_model::Outcome::Failed => "failed",
        rtb_model::Outcome::TimedOut => "timed out",
        rtb_model::Outcome::Interrupted => "interrupted",
        rtb_model::Outcome::RunnerError => "runner error",
        rtb_model::Outcome::Incomplete => "incomplete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::pool::{Running, Span};
    use crate::report::{InstanceFate, Phases, Report};
    use std::time::Duration;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn jobs(n: usize) -> Vec<BatchJob> {
        let d = tempfile::tempdir().unwrap();
        let mut csv = String::from("n,scene\n");
        for i in 1..=n {
            csv.push_str(&format!("{i},s{i}\n"));
        }
        std::fs::write(d.path().join("b.csv"), csv).unwrap();
        std::fs::write(
            d.path().join("b.toml"),
            "[batch]\ncsv = \"b.csv\"\n[job]\nami = \"ami-0123456789abcdef0\"\ncommand = \"r(${scene})\"\noutput = \"s3://out/${n}\"\njob-id = \"j${n}\"\n",
        )
        .unwrap();
        let file = crate::batch::BatchFile::load(&d.path().join("b.toml")).unwrap();
        crate::batch::jobs::jobs(&file, &[], crate::batch::jobs::Engine::Ec2).unwrap()
    }

    fn report(job: &str, outcome: Outcome, code: i32, error: Option<&str>) -> Report {
        Report {
            job_id: job.into(),
            outcome,
            exit_code: code,
            instance_id: Some("i-9".into()),
            instance: InstanceFate::Pooled,
            ami: String::new(),
            instance_type: String::new(),
            region: None,
            output: None,
            records: Some(format!("s3://out/{job}/_rtb-job/{job}/r1-a1/")),
            phases: Phases::default(),
            log_lines: 0,
            result: None,
            error: error.map(str::to_string),
            kept: false,
        }
    }

    fn pool_attempt(outcome: Outcome, instance: &str, retried: Option<&str>) -> PoolAttempt {
        PoolAttempt {
            outcome,
            exit_code: 0,
            instance_id: Some(instance.into()),
            spot: false,
            seconds: 10.0,
            error: None,
            retried_because: retried.map(str::to_string),
            ran: None,
            resume: Default::default(),
        }
    }

    #[test]
    fn an_attempt_s_note_says_what_interrupted_it_and_what_it_resumed_from() {
        let mut lost = pool_attempt(Outcome::InstanceLost, "i-1", Some("AWS reclaimed it"));
        lost.resume.interrupted_by = Some(crate::batch::resume::Interruption::ReclaimNotice);
        assert_eq!(
            note(&lost),
            "instance lost [spot reclaim notice]; retried: AWS reclaimed it"
        );
        let mut again = pool_attempt(Outcome::Succeeded, "i-2", None);
        again.resume.resume_asked = true;
        assert_eq!(note(&again), "succeeded [asked to resume]");
    }

    #[test]
    fn a_running_batch_shows_every_job_where_it_stands() {
        let jobs = jobs(5);
        let mut snap = Snapshot {
            ends: vec![JobEnd::default(); 5],
            ..Snapshot::default()
        };
        // j1: succeeded on i-1 after a 3 s boot.
        snap.ends[0]
            .attempts
            .push(pool_attempt(Outcome::Succeeded, "i-1", None));
        snap.ends[0].attempts[0].ran = Some(Span {
            started: at(0),
            ended: at(10),
            boot_s: 3.0,
        });
        snap.ends[0].report = Some(report("j1", Outcome::Succeeded, 0, None));
        // j2: lost, queued again.
        snap.ends[1].attempts.push(pool_attempt(
            Outcome::InstanceLost,
            "i-2",
            Some("instance lost"),
        ));
        snap.ends[1].attempts[0].ran = Some(Span {
            started: at(0),
            ended: at(5),
            boot_s: 3.0,
        });
        snap.ends[1].report = Some(report("j2", Outcome::InstanceLost, 137, Some("lost")));
        snap.queued.push(1);
        // j3: MATLAB error.
        snap.ends[2]
            .attempts
            .push(pool_attempt(Outcome::JobFailed, "i-1", None));
        snap.ends[2].attempts[0].ran = Some(Span {
            started: at(10),
            ended: at(20),
            boot_s: 0.0,
        });
        snap.ends[2].report = Some(report(
            "j3",
            Outcome::JobFailed,
            1,
            Some("the command failed: boom"),
        ));
        // j4: running on i-1; j5: waiting.
        snap.running.insert(
            3,
            Running {
                attempt: 1,
                since: at(20),
                instance_id: Some("i-1".into()),
                boot_s: 0.0,
            },
        );
        let page = from_run(&RunFacts {
            batch: "b",
            engine: "ec2",
            jobs: &jobs,
            columns: &["scene".to_string(), "n".to_string()],
            snapshot: &snap,
            started: at(0),
            now: at(30),
            wall_s: None,
        });
        assert!(page.live);
        let states: Vec<(State, &str)> = page
            .jobs
            .iter()
            .map(|c| (c.state, c.outcome.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                (State::Succeeded, "succeeded"),
                (State::Queued, "queued again after attempt 1"),
                (State::Failed, "failed (exit 1)"),
                (State::Running, "running"),
                (State::Queued, "queued"),
            ]
        );
        let j1 = &page.jobs[0];
        // In the CSV's order as given, not by name.
        assert_eq!(
            j1.row,
            [("scene".into(), "s1".into()), ("n".into(), "1".into())]
        );
        assert_eq!(j1.output.as_deref(), Some("s3://out/1"));
        assert_eq!(j1.attempts[0].start, Some(at(0)));
        assert_eq!(j1.attempts[0].boot_s, 3.0);
        assert_eq!(page.jobs[1].attempts[0].ending, Ending::Retried);
        assert_eq!(
            page.jobs[2].error.as_deref(),
            Some("the command failed: boom")
        );
        let running = &page.jobs[3].attempts[0];
        assert_eq!(
            (running.ending, running.end, running.instance.as_deref()),
            (Ending::Running, None, Some("i-1"))
        );
        assert_eq!(page.counts().attempts, 4);
    }

    #[test]
    fn the_final_page_has_no_queue_and_keeps_jobs_not_run() {
        let jobs = jobs(3);
        let mut snap = Snapshot {
            ends: vec![JobEnd::default(); 3],
            ..Snapshot::default()
        };
        snap.ends[0].not_run = Some("succeeded in an earlier run (--resume)".into());
        snap.ends[1].not_run = Some("not started: the batch was stopped".into());
        let page = from_run(&RunFacts {
            batch: "b",
            engine: "ec2",
            jobs: &jobs,
            columns: &["scene".to_string(), "n".to_string()],
            snapshot: &snap,
            started: at(0),
            now: at(30),
            wall_s: Some(30.0),
        });
        assert!(!page.live);
        let states: Vec<State> = page.jobs.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            [State::SucceededBefore, State::NotRun, State::NotRun]
        );
        assert_eq!(
            page.jobs[1].outcome,
            "not run: not started: the batch was stopped"
        );
    }
}
