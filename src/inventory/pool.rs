//! A batch pool's instance, as the pool's records tell (its tags name its run, never a job:
//! they cannot change after launch). Fetch the record and the runner's results of the jobs
//! it lists, then decide: which jobs run on it now, its deadline, and what `cleanup` does.

use std::time::{Duration, SystemTime};

use rtb_model::{InstanceRecord, JobRecords, S3Url};

use super::Verdict;
use crate::cloud::{Cloud, CloudError, TaggedInstance};

/// An instance whose jobs have all ended is left this long for its client to hand it the
/// next one (that takes a second); after it, nobody is coming (a live client ends an idle
/// instance at once, and a dead client's instance also ends itself 10 minutes after its
/// last job).
pub const IDLE_GRACE: Duration = Duration::from_secs(5 * 60);

/// A job on the instance that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub job_id: String,
    pub attempt: u32,
    pub records: Option<JobRecords>,
    /// When it was handed to the instance.
    pub started_at: Option<SystemTime>,
    pub deadline: Option<SystemTime>,
    /// The runner has written log chunks: the job has started.
    pub log_started: bool,
}

/// What is known of one pool instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSeen {
    /// The record exists (the pool has handed the instance a job).
    pub recorded: bool,
    /// Jobs handed to it that have not ended: neither the client nor the runner's result
    /// record says they did. In the order they were handed over.
    pub current: Vec<Current>,
    /// When its last job ended.
    pub last_end: Option<SystemTime>,
    /// Every job ever handed to it, in order, once each.
    pub handed: Vec<String>,
}

impl PoolSeen {
    /// The latest deadline any job on it needs (the instance's own deadline is re-armed to
    /// it with each job); None when no current job has one.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.current.iter().filter_map(|c| c.deadline).max()
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.current.iter().map(|c| c.job_id.clone()).collect()
    }

    pub fn runs(&self, job_id: &str) -> bool {
        self.current.iter().any(|c| c.job_id == job_id)
    }
}

fn time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Read a pool instance's record and the result records of the jobs it lists as unended.
/// An instance that is not a pool's gives the default (nothing recorded).
pub async fn fetch(cloud: &Cloud, i: &TaggedInstance) -> Result<PoolSeen, CloudError> {
    let Some(run) = i.pool.as_ref().and_then(|p| p.records.as_ref()) else {
        return Ok(PoolSeen::default());
    };
    let Some(record) = cloud.instance_record(run, &i.id).await? else {
        return Ok(PoolSeen::default());
    };
    see(cloud, &record).await
}

async fn see(cloud: &Cloud, record: &InstanceRecord) -> Result<PoolSeen, CloudError> {
    let mut seen = PoolSeen {
        recorded: true,
        ..PoolSeen::default()
    };
    let mut ends: Vec<SystemTime> = Vec::new();
    for a in &record.jobs {
        if !seen.handed.contains(&a.job_id) {
            seen.handed.push(a.job_id.clone());
        }
        if let Some(t) = a.ended_at.as_deref() {
            ends.extend(time(t));
            continue;
        }
        let records = a.records.parse::<S3Url>().ok().map(JobRecords::at);
        // The client may have died before writing the end: the runner's result says it.
        let (result, log_started) = match &records {
            Some(r) => {
                let result = cloud.job_result(r).await?;
                let started = result.is_some() || cloud.log_started(r).await?;
                (result, started)
            }
            None => (None, false),
        };
        if let Some(r) = result {
            ends.extend(time(&r.finished_at));
            continue;
        }
        seen.current.push(Current {
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            records,
            started_at: time(&a.started_at),
            deadline: a.deadline.as_deref().and_then(time),
            log_started,
        });
    }
    seen.last_end = ends.into_iter().max();
    Ok(seen)
}

/// What `cleanup` does with a pool instance (not gone, not a service's: `super::verdict`
/// decides those first). `client_alive`: its batch's client runs on this machine.
pub fn verdict(
    i: &TaggedInstance,
    seen: &PoolSeen,
    client_alive: bool,
    now: SystemTime,
    older_than: Duration,
) -> Verdict {
    let since = |t: Option<SystemTime>| {
        t.and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
    };
    let jobs = seen.job_ids().join(", ");
    if let Some(d) = seen.deadline() {
        if d <= now {
            return Verdict::PastDeadline;
        }
    }
    if client_alive {
        return Verdict::Keep("its batch's client is running it".into());
    }
    if !seen.recorded {
        // Launched, and no job handed to it yet (or its record is not written yet).
        return if since(i.launched) >= older_than {
            Verdict::NoJob
        } else {
            Verdict::Keep(format!(
                "a batch's instance, no job handed to it yet, but only {} old (--older-than {})",
                humantime::format_duration(Duration::from_secs(since(i.launched).as_secs())),
                humantime::format_duration(older_than)
            ))
        };
    }
    if seen.current.iter().any(|c| c.log_started) {
        let running: Vec<&str> = seen
            .current
            .iter()
            .filter(|c| c.log_started)
            .map(|c| c.job_id.as_str())
            .collect();
        return Verdict::Keep(format!(
            "{} {} running on it",
            if running.len() == 1 { "job" } else { "jobs" },
            running.join(", ")
        ));
    }
    if !seen.current.is_empty() {
        let handed = seen.current.iter().filter_map(|c| c.started_at).max();
        return if since(handed) >= older_than {
            Verdict::NoJob
        } else {
            Verdict::Keep(format!("job {jobs} was handed to it and is starting"))
        };
    }
    if since(seen.last_end.or(i.launched)) < IDLE_GRACE {
        return Verdict::Keep(format!(
            "between jobs of batch {}: its client may hand it the next",
            i.batch.as_deref().unwrap_or("-")
        ));
    }
    Verdict::JobEnded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{InstanceState, Lifecycle, Pool};

    fn pool_instance(age: u64) -> TaggedInstance {
        TaggedInstance {
            id: "i-1".into(),
            state: InstanceState {
                name: Lifecycle::Running,
                reason: None,
            },
            instance_type: "t3.micro".into(),
            launched: Some(SystemTime::now() - Duration::from_secs(age)),
            job_id: None,
            owner: Some("me".into()),
            records: None,
            batch: Some("b".into()),
            pool: Some(Pool {
                run: "r1".into(),
                records: None,
            }),
            spot: false,
            launch_token: None,
            // The launch job's deadline, long past: the tag does not speak for job N.
            deadline: Some(SystemTime::now() - Duration::from_secs(60)),
            managed_by: None,
        }
    }

    fn current(job: &str, started_ago: u64, log: bool, deadline_in: i64) -> Current {
        let now = SystemTime::now();
        Current {
            job_id: job.into(),
            attempt: 1,
            records: None,
            started_at: Some(now - Duration::from_secs(started_ago)),
            deadline: Some(if deadline_in >= 0 {
                now + Duration::from_secs(deadline_in as u64)
            } else {
                now - Duration::from_secs((-deadline_in) as u64)
            }),
            log_started: log,
        }
    }

    #[test]
    fn cleanup_of_a_pool_instance_follows_the_job_it_runs_now() {
        let now = SystemTime::now();
        let limit = Duration::from_secs(3600);
        let old = pool_instance(4 * 3600);
        let seen = |current: Vec<Current>, last_end_ago: Option<u64>| PoolSeen {
            recorded: true,
            current,
            last_end: last_end_ago.map(|a| now - Duration::from_secs(a)),
            handed: Vec::new(),
        };
        let keep = |v: Verdict, has: &str| match v {
            Verdict::Keep(why) => assert!(why.contains(has), "{why}"),
            other => panic!("{other:?}, wanted to keep it ({has})"),
        };
        // Job 2 runs (job 1 ended long ago): kept, whatever the launch tags say.
        keep(
            verdict(
                &old,
                &seen(vec![current("b-2", 600, true, 3600)], Some(700)),
                false,
                now,
                limit,
            ),
            "job b-2 running",
        );
        // Two lanes.
        keep(
            verdict(
                &old,
                &seen(
                    vec![
                        current("b-3", 60, true, 3600),
                        current("b-4", 30, true, 7200),
                    ],
                    None,
                ),
                false,
                now,
                limit,
            ),
            "jobs b-3, b-4 running",
        );
        // The latest deadline among its jobs passed: ended.
        assert_eq!(
            verdict(
                &old,
                &seen(vec![current("b-2", 600, true, -5)], None),
                false,
                now,
                limit
            ),
            Verdict::PastDeadline
        );
        // A job handed over a moment ago, not started yet.
        keep(
            verdict(
                &old,
                &seen(vec![current("b-5", 5, false, 3600)], Some(10)),
                false,
                now,
                limit,
            ),
            "handed to it",
        );
        // Handed over long ago and never started: nobody is running it.
        assert_eq!(
            verdict(
                &old,
                &seen(vec![current("b-5", 7200, false, 3600)], None),
                false,
                now,
                limit
            ),
            Verdict::NoJob
        );
        // Between two jobs: its client may hand it the next.
        keep(
            verdict(&old, &seen(vec![], Some(20)), false, now, limit),
            "between jobs",
        );
        // Every job ended long ago: its client is gone.
        assert_eq!(
            verdict(&old, &seen(vec![], Some(3600)), false, now, limit),
            Verdict::JobEnded
        );
        // No job handed to it yet: judged by its age.
        let young = pool_instance(60);
        keep(
            verdict(&young, &PoolSeen::default(), false, now, limit),
            "no job handed to it yet",
        );
        assert_eq!(
            verdict(&old, &PoolSeen::default(), false, now, limit),
            Verdict::NoJob
        );
        // Its client runs here.
        keep(
            verdict(&old, &seen(vec![], Some(3600)), true, now, limit),
            "client",
        );
    }
}
