//! Following a batch, not each job: one loop per pool asks AWS about all of the pool's running
//! jobs at once, and each job's follow loop reads what it learnt instead of asking itself.
//!
//! - the instances: one DescribeInstances for every instance of the batch (by its tag,
//!   paged), so a job whose instance went away ends;
//! - the jobs' ends: the runner's result record in S3 (`result.json`, a HEAD per running job),
//!   and SSM's list of the batch's commands (ListCommands, newest first, paged only until
//!   every command asked about is found): right after a job's record is found, until its
//!   command has ended, and slowly otherwise (a job that ends without a record: its
//!   container never started). A job that ended with a record needs no call of its own; one
//!   without reads its invocation once, for its exit code and error.
//!
//! Every call here is a poll ([`crate::cloud::rate::Need::Poll`]): when the client's budget
//! runs low these loops slow down, and the jobs' own calls go first. A failed call is tried
//! again at the next tick: each job's own calls decide when AWS has stopped answering.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rtb_model::JobRecords;

use crate::cloud::{Cloud, InvocationStatus, Select};

/// How often the batch's instances are described (one call a page, whatever the jobs).
const INSTANCES_EVERY: Duration = Duration::from_secs(5);
/// How often each running job's result record is looked for (one HEAD each): a job's end is
/// seen about this late, and the next job starts on its lane about this much later. A few
/// jobs are looked at often, many less so: 30 ms a job, from 0.15 s to 2 s (at most 40 HEADs
/// a second, at parallel 6; 50 at parallel 100, far under S3's 5,500; $0.0004 per 1,000).
const RESULTS_FASTEST: Duration = Duration::from_millis(150);
const RESULTS_SLOWEST: Duration = Duration::from_secs(2);
const RESULTS_PER_JOB: Duration = Duration::from_millis(30);
/// SSM's list of commands is read right after a job's record is found (and then with each
/// look for records until its command has ended), and otherwise this often (for a job that
/// ends without a record).
const COMMANDS_SLOW: Duration = Duration::from_secs(20);
/// SSM lists commands newest first, a page of 50 at a time, so the list is read back only to
/// the oldest command still followed (less this, for the workstation's clock): a long batch
/// does not page through every command it ever sent, nor a lab's older ones.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// What the batch's loop has learnt of one job, for its follow loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing yet: still running, as far as the watch knows.
    Running,
    /// The runner has written its result record; how SSM says the command ended, once it has.
    Recorded(Option<InvocationStatus>),
    /// SSM says the command ended, and the runner wrote no record (yet).
    Ended(InvocationStatus),
    /// Its instance went away under it (EC2's description of its state).
    Gone(String),
}

#[derive(Debug)]
struct Followed {
    instance: String,
    command: String,
    /// When the command was sent (as this workstation's clock says).
    sent: SystemTime,
    records: Option<JobRecords>,
    recorded: bool,
    /// The command's status once it has ended.
    ended: Option<InvocationStatus>,
    gone: Option<String>,
}

impl Followed {
    fn seen(&self) -> Seen {
        match (self.recorded, self.ended, &self.gone) {
            (true, ended, _) => Seen::Recorded(ended),
            (false, Some(s), _) => Seen::Ended(s),
            (false, None, Some(g)) => Seen::Gone(g.clone()),
            (false, None, None) => Seen::Running,
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// job id -> what is followed.
    jobs: BTreeMap<String, Followed>,
    /// Commands sent before this are none of the batch's (SSM's list is filtered by it).
    since: SystemTime,
}

/// The batch's watch: one per pool; clones share it.
#[derive(Clone)]
pub struct Watch {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            inner: Arc::new(Mutex::new(Inner {
                jobs: BTreeMap::new(),
                // A minute early: the workstation's clock may be behind AWS's.
                since: SystemTime::now() - CLOCK_MARGIN,
            })),
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// A job the watch follows; it is forgotten when this is dropped.
pub struct Following {
    watch: Watch,
    job_id: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.watch.lock().jobs.remove(&self.job_id);
    }
}

impl Following {
    /// What the watch has learnt of the job.
    pub fn seen(&self) -> Seen {
        self.watch
            .lock()
            .jobs
            .get(&self.job_id)
            .map_or(Seen::Running, Followed::seen)
    }

    /// The job's command changed (the wait was taken up again): follow that one.
    pub fn command(&self, command: &str) {
        if let Some(f) = self.watch.lock().jobs.get_mut(&self.job_id) {
            f.command = command.to_string();
            f.sent = SystemTime::now();
            f.ended = None;
        }
    }
}

/// One pass's view of a job not yet done.
struct Pending {
    job: String,
    instance: String,
    command: String,
    records: Option<JobRecords>,
    recorded: bool,
    sent: SystemTime,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow a job: its instance, its command there, and its records.
    pub fn follow(
        &self,
        job_id: &str,
        instance: &str,
        command: &str,
        records: Option<JobRecords>,
    ) -> Following {
        self.lock().jobs.insert(
            job_id.to_string(),
            Followed {
                instance: instance.to_string(),
                command: command.to_string(),
                sent: SystemTime::now(),
                records,
                recorded: false,
                ended: None,
                gone: None,
            },
        );
        Following {
            watch: self.clone(),
            job_id: job_id.to_string(),
        }
    }

    /// The loop: it never ends (the pool selects on it beside its work).
    pub async fn run(&self, cloud: &Cloud, batch: &str) {
        let mut instances = tokio::time::interval(INSTANCES_EVERY);
        instances.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commands = tokio::time::Instant::now();
        let mut next_results = tokio::time::Instant::now();
        // A job that recorded its end waits for SSM to say its script ended before its lane
        // takes the next job: its command is looked for again between the looks for records.
        let mut recheck: Option<tokio::time::Instant> = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            tokio::select! {
                _ = instances.tick() => self.instances(cloud, batch).await,
                _ = tokio::time::sleep_until(recheck.unwrap_or(far)), if recheck.is_some() => {
                    recheck = None;
                    self.commands(cloud, false).await;
                }
                _ = tokio::time::sleep_until(next_results) => {
                    let jobs = self.lock().jobs.len();
                    next_results = tokio::time::Instant::now() + results_every(jobs);
                    self.results(cloud).await;
                    let slow = last_commands.elapsed() >= COMMANDS_SLOW;
                    if self.commands(cloud, slow).await && slow {
                        last_commands = tokio::time::Instant::now();
                    }
                    if self.pending().iter().any(|p| p.recorded) {
                        recheck = Some(tokio::time::Instant::now() + results_every(jobs) / 2);
                    }
                }
            }
        }
    }

    /// The jobs whose command has not been seen to end.
    fn pending(&self) -> Vec<Pending> {
        self.lock()
            .jobs
            .iter()
            .filter(|(_, f)| f.ended.is_none())
            .map(|(j, f)| Pending {
                job: j.clone(),
                instance: f.instance.clone(),
                command: f.command.clone(),
                records: f.records.clone(),
                recorded: f.recorded,
                sent: f.sent,
            })
            .collect()
    }

    fn update(&self, job_id: &str, change: impl FnOnce(&mut Followed)) {
        if let Some(f) = self.lock().jobs.get_mut(job_id) {
            change(f);
        }
    }

    async fn instances(&self, cloud: &Cloud, batch: &str) {
        let pending = self.pending();
        if pending.is_empty() {
            return;
        }
        let select = Select {
            owner: None,
            job_id: None,
            batch: Some(batch),
            launch_token: None,
            ids: &[],
        };
        let Ok(found) = cloud.tagged_instances(&select).await else {
            return;
        };
        for Pending { job, instance, .. } in pending {
            let gone = found
                .iter()
                .find(|i| i.id == instance)
                .filter(|i| i.state.is_gone())
                .map(|i| i.state.describe());
            if let Some(state) = gone {
                self.update(&job, |f| f.gone = Some(state));
            }
        }
    }

    async fn results(&self, cloud: &Cloud) {
        for p in self.pending() {
            let Some(records) = p.records.filter(|_| !p.recorded) else {
                continue;
            };
            if let Ok(true) = cloud.result_written(&records).await {
                self.update(&p.job, |f| f.recorded = true);
            }
        }
    }

    /// Look in SSM's list for the commands of the recorded jobs (`all`: of every job not seen
    /// to end). Right after records are found only their commands are looked for, so the list
    /// is read only as far back as they are. False when there was none to look for.
    async fn commands(&self, cloud: &Cloud, all: bool) -> bool {
        let pending: Vec<Pending> = self
            .pending()
            .into_iter()
            .filter(|p| all || p.recorded)
            .collect();
        if pending.is_empty() {
            return false;
        }
        let since = list_since(self.lock().since, pending.iter().map(|p| p.sent));
        let wanted: Vec<&str> = pending.iter().map(|p| p.command.as_str()).collect();
        let Ok(statuses) = cloud.command_statuses(since, &wanted).await else {
            return true;
        };
        for Pending { job, command, .. } in &pending {
            if let Some(s) = statuses.get(command).filter(|s| s.is_done()) {
                let (command, s) = (command.clone(), *s);
                // Only if the job still waits for that command (not a newer one).
                self.update(job, |f| {
                    if f.command == command {
                        f.ended = Some(s);
                    }
                });
            }
        }
        true
    }
}

/// How far back SSM's list of commands is read: to the oldest of the `sent` commands (less the
/// clock margin), never before the batch's own start (`floor`).
fn list_since(floor: SystemTime, sent: impl Iterator<Item = SystemTime>) -> SystemTime {
    sent.min()
        .map(|oldest| oldest - CLOCK_MARGIN)
        .map_or(floor, |t| t.max(floor))
}

/// How often `jobs` running jobs' records are looked for.
fn results_every(jobs: usize) -> Duration {
    (RESULTS_PER_JOB * jobs as u32).clamp(RESULTS_FASTEST, RESULTS_SLOWEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_looked_for_often_when_few_jobs_run() {
        let table = [
            (0, 150),
            (1, 150),
            (6, 180),
            (20, 600),
            (100, 2000),
            (1000, 2000),
        ];
        for (jobs, ms) in table {
            assert_eq!(
                results_every(jobs),
                Duration::from_millis(ms),
                "{jobs} jobs"
            );
        }
    }

    #[test]
    fn the_list_of_commands_is_read_back_only_to_the_oldest_followed() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s);
        let floor = t(0);
        let table: [(&[u64], SystemTime); 4] = [
            (&[], floor),
            (&[30], floor),
            (&[600, 900], t(600 - 60)),
            (&[3600, 120, 5000], t(120 - 60)),
        ];
        for (sent, want) in table {
            assert_eq!(
                list_since(floor, sent.iter().map(|&s| t(s))),
                want,
                "{sent:?}"
            );
        }
    }

    #[test]
    fn what_a_job_is_told() {
        let s = InvocationStatus::Success;
        let f = InvocationStatus::Failed;
        // (record written, command's end, instance gone) -> what the job is told: a record
        // is the truth about the job, even when the instance went away after it.
        let table = [
            (false, None, None, Seen::Running),
            (true, None, None, Seen::Recorded(None)),
            (true, Some(s), None, Seen::Recorded(Some(s))),
            (true, None, Some("terminated"), Seen::Recorded(None)),
            (false, Some(f), None, Seen::Ended(f)),
            (false, Some(f), Some("terminated"), Seen::Ended(f)),
            (
                false,
                None,
                Some("terminated"),
                Seen::Gone("terminated".into()),
            ),
        ];
        for (recorded, ended, gone, want) in table {
            let followed = Followed {
                instance: "i-1".into(),
                command: "c".into(),
                sent: SystemTime::now(),
                records: None,
                recorded,
                ended,
                gone: gone.map(str::to_string),
            };
            assert_eq!(followed.seen(), want, "{recorded} {ended:?} {gone:?}");
        }
    }

    #[test]
    fn a_job_is_forgotten_when_its_follow_ends_and_a_new_command_starts_afresh() {
        let w = Watch::default();
        let following = w.follow("j", "i-1", "c1", None);
        w.update("j", |f| f.ended = Some(InvocationStatus::TimedOut));
        assert_eq!(following.seen(), Seen::Ended(InvocationStatus::TimedOut));
        following.command("c2");
        assert_eq!(following.seen(), Seen::Running);
        assert_eq!(w.pending().len(), 1);
        drop(following);
        assert!(w.pending().is_empty());
    }
}
