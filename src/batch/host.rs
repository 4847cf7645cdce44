//! One instance of a batch's pool and the jobs on it: which run there now and the deadline
//! they need together (the latest of them: a co-tenant's shorter timeout never cuts a longer
//! job), whether it may take another job, and how it ends once none runs there any more.
//!
//! Before an instance that has run a job takes the next one, it is checked as a fresh
//! instance would be: still running, its deadline moved to what its jobs now need and read
//! back, enough free disk for another job's container. One that fails is retired: it takes
//! no new job, the job goes back to the queue (no attempt spent), and the instance is
//! terminated once its running jobs are done. Whatever one job's end says about the
//! instance, it never ends it under another job still running there (but on a second
//! Ctrl-C).

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime};

use super::scratch;
use crate::cloud::{Cloud, InvocationStatus, Lifecycle};
use crate::engine::ec2::instance::Instance;
use crate::engine::ec2::remote;
use crate::engine::ec2::script::probe::{self, Armed, Probe};
use crate::engine::ec2::script::Shared;
use crate::patience::Patience;
use crate::plan::Plan;
use crate::signals::Interrupts;
use crate::termination::Handback;

/// Free space an instance needs on Docker's disk to take another job: its container's
/// writable layer, scratch folders and outputs. Below it, the next job would likely fail
/// writing; a fresh instance is cheaper than a failed attempt.
pub const MIN_FREE_KIB: u64 = 2 * 1024 * 1024;
/// How far a deadline read back may fall short of the one asked for (`shutdown -h +MINUTES`,
/// the fallback, counts in the instance's clock).
const DEADLINE_SLACK_S: u64 = 60;
/// How long the check may take on the instance.
const CHECK_LIMIT: Duration = Duration::from_secs(120);

/// How the instance must end: the strongest any of its jobs' ends asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    /// Terminate and confirm.
    Normally,
    /// It went away under a job: confirm it is terminated.
    Gone,
    /// AWS stopped answering: it is left to its own deadline.
    Unreachable,
    /// A second signal: request termination and go.
    Now,
}

pub struct Host {
    pub id: String,
    /// The one handle that ends it.
    instance: RefCell<Option<Instance>>,
    /// The jobs running there now (by index) and the deadline each needs (`None`: none).
    running: RefCell<Vec<(usize, Option<SystemTime>)>>,
    /// Jobs that have ended there.
    ended: Cell<usize>,
    /// Why it takes no new job, once it does not.
    retired: RefCell<Option<String>>,
    ending: Cell<Ending>,
    /// How long its calls may go unanswered (the batch's `api-patience`).
    patience: Duration,
}

impl Host {
    pub fn new(instance: Instance, patience: Duration) -> Host {
        Host {
            id: instance.id.clone(),
            instance: RefCell::new(Some(instance)),
            running: RefCell::new(Vec::new()),
            ended: Cell::new(0),
            retired: RefCell::new(None),
            ending: Cell::new(Ending::Normally),
            patience,
        }
    }

    /// It may take another job.
    pub fn open(&self) -> bool {
        self.retired.borrow().is_none()
    }

    /// A job has ended here: the next one finds what it left, so it is checked first.
    pub fn used(&self) -> bool {
        self.ended.get() > 0
    }

    /// Take no new job here. True the first time (the reason is then the one kept).
    pub fn retire(&self, why: &str) -> bool {
        let mut r = self.retired.borrow_mut();
        if r.is_some() {
            return false;
        }
        *r = Some(why.to_string());
        true
    }

    pub fn ending(&self) -> Ending {
        self.ending.get()
    }

    /// The deadline the instance must keep with `next` added to the jobs running there:
    /// the latest of them, or none when one of them has none.
    pub fn needs(&self, next: Option<SystemTime>) -> Option<SystemTime> {
        latest(self.running.borrow().iter().map(|(_, d)| *d).chain([next]))
    }

    /// Job `j` starts here: how its script shares the instance.
    pub fn start(&self, j: usize, plan: &Plan) -> Shared {
        let shared = Shared {
            reused: self.used() && scratch::on_host_volume(plan),
        };
        self.running.borrow_mut().push((j, plan.deadline));
        shared
    }

    /// Job `j` has ended here; what its end says about the instance. Returns why it now
    /// takes no new job, when that is new.
    pub fn finish(&self, j: usize, back: &Handback) -> Option<String> {
        self.running.borrow_mut().retain(|(k, _)| *k != j);
        self.ended.set(self.ended.get() + 1);
        let (ending, why) = match back {
            Handback::Reusable => return None,
            Handback::Retire(why) => (Ending::Normally, *why),
            Handback::Gone => (Ending::Gone, "it went away under a job"),
            Handback::Unreachable => (Ending::Unreachable, "AWS stopped answering"),
            Handback::Now => (Ending::Now, "asked to stop at once"),
        };
        self.ending.set(self.ending.get().max(ending));
        self.retire(why).then(|| why.to_string())
    }

    /// Whether it can take the job `plan` now, as a fresh instance could: running, its
    /// deadline armed at what its jobs need with this one (read back), enough free disk.
    pub async fn ready_for(&self, plan: &Plan, cloud: &Cloud) -> Result<(), String> {
        match cloud.instance_state(&self.id).await {
            Ok(Some(s)) if s.name == Lifecycle::Running => {}
            Ok(Some(s)) => return Err(format!("it is {}", s.describe())),
            Ok(None) => return Err("EC2 no longer knows it".into()),
            Err(e) => return Err(format!("its state could not be read ({e})")),
        }
        let need = self.needs(plan.deadline);
        let patience = Patience::new(self.patience);
        let command = remote::send(
            cloud,
            &self.id,
            &probe::script(probe::Arm::To(need)),
            CHECK_LIMIT,
            &format!("run-render check before {}", plan.job_id),
            &patience,
        )
        .await
        .map_err(|e| format!("its check could not be sent ({e})"))?;
        let inv = remote::wait_command(cloud, &self.id, &command, &patience)
            .await
            .map_err(|e| format!("its check did not end ({e})"))?;
        if inv.status != InvocationStatus::Success {
            return Err(format!(
                "its check failed ({:?}, code {})",
                inv.status, inv.response_code
            ));
        }
        fit(&probe::parse(&inv.stdout), need)
    }

    /// End it, now that no job of the batch runs there: terminate and confirm (a further
    /// signal hurries it), request it at once after a second signal, or leave it to its
    /// deadline when AWS stopped answering. Err says why its end is not confirmed.
    pub async fn end(&self, cloud: &Cloud, interrupts: &Interrupts) -> Result<(), String> {
        let Some(instance) = self.instance.borrow_mut().take() else {
            return Ok(());
        };
        let patience = Patience::new(self.patience);
        let patience = &patience;
        let hurried = |i: Instance| async move {
            let asked = i.request_termination(patience).await;
            i.abandon();
            match asked {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "termination of {} requested, not confirmed",
                    self.id
                )),
                Err(e) => Err(format!("could not request termination of {}: {e}", self.id)),
            }
        };
        match self.ending.get() {
            Ending::Now => hurried(instance).await,
            Ending::Unreachable => {
                instance.abandon();
                Err(format!(
                    "{} was left to its own deadline: AWS stopped answering",
                    self.id
                ))
            }
            Ending::Normally | Ending::Gone if interrupts.count() >= 2 => hurried(instance).await,
            Ending::Normally | Ending::Gone => {
                let seen = interrupts.count();
                tokio::select! {
                    done = instance.terminate_within(patience) => done.map(|_| ()).map_err(|e| e.to_string()),
                    // Asked again while waiting: make sure the request is out, then go.
                    _ = interrupts.reached(seen + 1) => {
                        hurried(Instance::adopt(cloud, self.id.clone())).await
                    }
                }
            }
        }
    }
}

/// The latest of some deadlines, none when one of them is none.
fn latest(deadlines: impl IntoIterator<Item = Option<SystemTime>>) -> Option<SystemTime> {
    let mut out = None;
    for d in deadlines {
        let d = d?;
        out = Some(out.map_or(d, |o: SystemTime| o.max(d)));
    }
    out
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn when(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
        .to_string()
}

/// Whether an instance that looks like `p` (after arming `need`) can take another job.
pub fn fit(p: &Probe, need: Option<SystemTime>) -> Result<(), String> {
    match p.disk_free_kib {
        None => return Err("its free disk could not be read".into()),
        Some(kib) if kib < MIN_FREE_KIB => {
            return Err(format!(
                "only {} MiB free on its Docker disk (a job needs {} MiB)",
                kib / 1024,
                MIN_FREE_KIB / 1024
            ))
        }
        Some(_) => {}
    }
    match (need.map(epoch), p.deadline) {
        (Some(n), Armed::At(at)) if at + DEADLINE_SLACK_S < n => Err(format!(
            "its deadline could not be moved to {} (the next job's timeout + margin): it stays at {}",
            when(n),
            when(at)
        )),
        (Some(_), Armed::At(_)) | (None, Armed::Nothing | Armed::Unknown) => Ok(()),
        (Some(n), Armed::Nothing) => Err(format!(
            "no deadline could be armed on it (the next job needs {})",
            when(n)
        )),
        (Some(_), Armed::Unknown) => Err(
            "its deadline cannot be read (no rtb-deadline, no scheduled shutdown), so the next job's cannot be confirmed"
                .into(),
        ),
        (None, Armed::At(at)) => Err(format!(
            "a deadline at {} stays armed, and the next job has none (timeout none)",
            when(at)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn probe(disk: Option<u64>, deadline: Armed) -> Probe {
        Probe {
            disk_free_kib: disk,
            deadline,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn reuse_needs_disk_and_the_deadline_read_back() {
        let plenty = Some(50 * 1024 * 1024);
        // (probe, the deadline needed, refused with these words or "" for fit)
        let table: Vec<(Probe, Option<u64>, &str)> = vec![
            (probe(plenty, Armed::At(T)), Some(T), ""),
            (probe(plenty, Armed::At(T + 600)), Some(T), ""),
            // shutdown -h +N rounds to minutes on the instance's clock.
            (probe(plenty, Armed::At(T - 30)), Some(T), ""),
            (
                probe(plenty, Armed::At(T - 600)),
                Some(T),
                "its deadline could not be moved to 2027-01-15T08:00:00Z (the next job's timeout + margin): it stays at 2027-01-15T07:50:00Z",
            ),
            (probe(plenty, Armed::Nothing), Some(T), "no deadline could be armed"),
            (probe(plenty, Armed::Unknown), Some(T), "cannot be read"),
            (probe(plenty, Armed::Nothing), None, ""),
            (probe(plenty, Armed::Unknown), None, ""),
            (probe(plenty, Armed::At(T)), None, "stays armed, and the next job has none"),
            (probe(Some(MIN_FREE_KIB - 1), Armed::At(T)), Some(T), "only 2047 MiB free"),
            (probe(Some(MIN_FREE_KIB), Armed::At(T)), Some(T), ""),
            (probe(None, Armed::At(T)), Some(T), "free disk could not be read"),
        ];
        for (p, need, want) in table {
            match (fit(&p, need.map(at)), want) {
                (Ok(()), "") => {}
                (Ok(()), w) => panic!("{p:?} {need:?}: fit, wanted {w:?}"),
                (Err(e), "") => panic!("{p:?} {need:?}: {e}"),
                (Err(e), w) => assert!(e.contains(w), "{e}\nwanted: {w}"),
            }
        }
    }

    #[test]
    fn the_deadline_is_the_latest_its_jobs_need() {
        let table: Vec<(Vec<Option<u64>>, Option<u64>)> = vec![
            (vec![Some(T)], Some(T)),
            (vec![Some(T + 3600), Some(T)], Some(T + 3600)),
            (vec![Some(T), Some(T + 3600)], Some(T + 3600)),
            (vec![Some(T), None], None),
            (vec![], None),
        ];
        for (deadlines, want) in table {
            assert_eq!(
                latest(deadlines.iter().map(|d| d.map(at))),
                want.map(at),
                "{deadlines:?}"
            );
        }
    }
}
