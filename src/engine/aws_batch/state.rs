//! AWS Batch's job statuses as typed states, and what a batch's jobs add up to. Pure.

use std::time::SystemTime;

use serde::Serialize;

/// A job's state in AWS Batch. RUNNABLE is the one to watch: ready, but not placed on an
/// instance yet (see [`super::diagnose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Submitted,
    Pending,
    Runnable,
    Starting,
    Running,
    Succeeded,
    Failed,
}

/// Every state, in the order a job goes through them (ListJobs is asked once per state).
pub const ALL: [JobState; 7] = [
    JobState::Submitted,
    JobState::Pending,
    JobState::Runnable,
    JobState::Starting,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
];

impl JobState {
    /// From AWS Batch's status name (`None` for one this client does not know).
    pub fn parse(status: &str) -> Option<JobState> {
        Some(match status.to_ascii_uppercase().as_str() {
            "SUBMITTED" => JobState::Submitted,
            "PENDING" => JobState::Pending,
            "RUNNABLE" => JobState::Runnable,
            "STARTING" => JobState::Starting,
            "RUNNING" => JobState::Running,
            "SUCCEEDED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            _ => return None,
        })
    }

    pub fn as_aws(self) -> &'static str {
        match self {
            JobState::Submitted => "SUBMITTED",
            JobState::Pending => "PENDING",
            JobState::Runnable => "RUNNABLE",
            JobState::Starting => "STARTING",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// One job as AWS Batch reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// AWS Batch's id (an array child's is `<parent>:<index>`).
    pub batch_job_id: String,
    pub name: String,
    pub state: JobState,
    /// Why it is in this state (AWS's words: "Host EC2 ... terminated.", "Essential container
    /// in task exited", the reason given to Terminate/Cancel...).
    pub reason: Option<String>,
    /// The container's exit code, once it exited. (moto has it in ListJobs only.)
    pub exit_code: Option<i32>,
    /// The container's own reason (e.g. "CannotPullContainerError: ...").
    pub container_reason: Option<String>,
    #[serde(skip)]
    pub created_at: Option<SystemTime>,
    #[serde(skip)]
    pub started_at: Option<SystemTime>,
    #[serde(skip)]
    pub stopped_at: Option<SystemTime>,
}

/// AWS Batch's epoch milliseconds.
pub fn from_millis(ms: Option<i64>) -> Option<SystemTime> {
    let ms = u64::try_from(ms?).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms))
}

/// Counts per state, in [`ALL`]'s order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub counts: std::collections::BTreeMap<JobState, usize>,
}

impl Tally {
    pub fn of<'a>(jobs: impl IntoIterator<Item = &'a JobStatus>) -> Tally {
        let mut t = Tally::default();
        for j in jobs {
            *t.counts.entry(j.state).or_default() += 1;
        }
        t
    }

    pub fn get(&self, s: JobState) -> usize {
        self.counts.get(&s).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Every job ended (success or failure).
    pub fn all_final(&self) -> bool {
        self.total() > 0
            && self.get(JobState::Succeeded) + self.get(JobState::Failed) == self.total()
    }
}

/// An array parent's state from its children: AWS reports a parent with a failed child as
/// FAILED only once every child ended, and moto leaves it SUBMITTED forever; the children are
/// the truth. `expected` is the array's size (children not listed yet count as submitted).
pub fn parent_state(children: &[JobStatus], expected: usize) -> JobState {
    let t = Tally::of(children);
    let missing = expected.saturating_sub(t.total());
    if missing == 0 && t.all_final() {
        return if t.get(JobState::Failed) > 0 {
            JobState::Failed
        } else {
            JobState::Succeeded
        };
    }
    // The furthest any unfinished child got, as AWS shows a parent while children run.
    ALL.iter()
        .rev()
        .filter(|s| !s.is_final())
        .find(|s| t.get(**s) > 0)
        .copied()
        .unwrap_or(if missing > 0 || t.total() == 0 {
            JobState::Submitted
        } else {
            JobState::Running
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState) -> JobStatus {
        JobStatus {
            batch_job_id: "j".into(),
            name: "n".into(),
            state,
            reason: None,
            exit_code: None,
            container_reason: None,
            created_at: None,
            started_at: None,
            stopped_at: None,
        }
    }

    #[test]
    fn statuses_parse_and_round_trip() {
        for s in ALL {
            assert_eq!(JobState::parse(s.as_aws()), Some(s));
        }
        assert_eq!(JobState::parse("running"), Some(JobState::Running));
        assert_eq!(JobState::parse("SCHEDULED"), None);
        assert!(JobState::Failed.is_final() && !JobState::Running.is_final());
    }

    #[test]
    fn an_array_parent_is_what_its_children_add_up_to() {
        use JobState::*;
        let cases: &[(&[JobState], usize, JobState)] = &[
            (&[Succeeded, Succeeded], 2, Succeeded),
            (&[Succeeded, Failed], 2, Failed),
            (&[Succeeded, Running], 2, Running),
            (&[Runnable, Failed], 2, Runnable),
            (&[Succeeded], 2, Submitted),
            (&[], 3, Submitted),
            (&[Starting, Runnable, Succeeded], 3, Starting),
        ];
        for (states, expected, want) in cases {
            let children: Vec<JobStatus> = states.iter().map(|s| job(*s)).collect();
            assert_eq!(parent_state(&children, *expected), *want, "{states:?}");
        }
    }

    #[test]
    fn tallies_count_and_know_when_all_ended() {
        let jobs = [job(JobState::Succeeded), job(JobState::Failed)];
        let t = Tally::of(&jobs);
        assert!(t.all_final());
        assert_eq!((t.get(JobState::Failed), t.total()), (1, 2));
        assert!(!Tally::default().all_final());
        assert_eq!(
            from_millis(Some(1000)),
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(1))
        );
        assert_eq!(from_millis(Some(-1)), None);
    }
}
