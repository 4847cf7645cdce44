//! The shell text the instance runs: the user data that arms the deadline at boot, the job
//! script sent through SSM, and the stop script. Every value from the user is quoted as one
//! shell word (shlex), so no input can end a word, a line or the script early.
//!
//! - [`deadline`]: arming (and re-arming) the instance's own deadline
//! - [`container`]: starting the job's container, waiting for it, re-attaching, stopping it
//! - [`probe`]: a look at a batch's instance between jobs (disk, deadline, jobs running)
//! - this file: the job script, composed of those parts, and what they share

mod container;
mod deadline;
pub mod probe;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use crate::plan::{Plan, Work};
pub use container::{reattach_script, stop_grace, stop_script, STOP_GRACE_MAX, STOP_GRACE_MIN};
use container::{start_container, wait_part};
pub use deadline::user_data;
use deadline::{arm_after_job, arm_at, arm_for_jobs, forget_need, locked};

/// A batch's instance, which its jobs share one after another (and side by side with
/// per-instance > 1): what a job's script does differently there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    /// An earlier job ran there: the runner empties its scratch folders before it starts.
    pub reused: bool,
}

/// The container's name on the instance, so later commands (stop, re-attach) can find it.
pub fn container_name(job_id: &str) -> String {
    format!("rtb-job-{job_id}")
}

/// Exit code of the job script when the container could not be started or was lost. The
/// runner never uses it, so the client can tell the two apart.
pub const CONTAINER_START_FAILED: i32 = 125;

/// Variables forwarded from the instance's own environment when it sets them: custom S3/IMDS
/// endpoints (VPC endpoints, the local test world). Never credentials.
const FORWARDED: &[&str] = &["AWS_ENDPOINT_URL", "AWS_EC2_METADATA_SERVICE_ENDPOINT"];

/// One shell word. Plan checks refuse NUL bytes, the only thing a shell word cannot hold.
pub fn quote(s: &str) -> String {
    shlex::try_quote(&s.replace('\0', ""))
        .map(|q| q.into_owned())
        .unwrap_or_default()
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The script sent with AWS-RunShellScript. Attached, it waits for the job and ends with its
/// exit code; detached (`--detach`), it ends as soon as the job has started.
pub fn job_script(plan: &Plan, region: Option<&str>) -> String {
    compose(plan, region, None)
}

/// The script of a batch's job on its shared instance: the deadline armed is the latest its
/// running jobs need (never cut under a co-tenant), armed and the container started under
/// the instance's deadline lock; the container is removed once it has ended (its outputs are
/// uploaded by then), so finished jobs do not fill the disk.
pub fn shared_job_script(plan: &Plan, region: Option<&str>, shared: Shared) -> String {
    compose(plan, region, Some(shared))
}

fn compose(plan: &Plan, region: Option<&str>, shared: Option<Shared>) -> String {
    let mut s = format!("# run-render job {}\nset -u\n", plan.job_id);
    let deadline = plan.deadline;
    let container = matches!(plan.work, Work::Container(_));
    match (shared, deadline) {
        // A shared instance's container job arms it under the lock, with its start.
        (Some(_), _) if container => {}
        (Some(_), d) => s.push_str(&locked(&arm_for_jobs(Some(&plan.job_id), d))),
        (None, Some(d)) => {
            s.push_str("# Arm the deadline again: the AMI may not run user data.\n");
            s.push_str(&arm_at(&epoch(d).to_string()));
        }
        (None, None) => {}
    }
    let grace = if plan.detach {
        AFTER_DETACHED
    } else {
        AFTER_JOB
    };
    let after = (!plan.keep).then(|| arm_after_job(deadline, grace));
    match &plan.work {
        Work::Shell(cmd) if plan.detach => {
            // The command runs on by itself, outside SSM (no 48 h limit), once.
            let body = format!(
                "sh -c {cmd}\necho $? > \"$state/{job}.code\"\n{after}",
                cmd = quote(cmd),
                job = plan.job_id,
                after = after.unwrap_or_default(),
            );
            s.push_str(&once(&plan.job_id, "shell", &body));
            s.push_str("exit 0\n");
        }
        Work::Shell(cmd) => {
            s.push_str(&format!(
                "sh -c {}\ncode=$?\n{}exit $code\n",
                quote(cmd),
                after.unwrap_or_default()
            ));
        }
        Work::Container(c) => {
            let start = start_container(
                &plan.job_id,
                &plan.launch.client_token,
                c,
                region,
                shared.is_some_and(|h| h.reused),
            );
            match shared {
                // An earlier job's watcher may be about to arm its short after-job grace:
                // under the lock, it either does so before this job arms its deadline, or
                // finds this job's container running and leaves the deadline alone.
                Some(_) => s.push_str(&locked(&format!(
                    "{}{start}",
                    arm_for_jobs(Some(&plan.job_id), deadline)
                ))),
                None => s.push_str(&start),
            }
            // The instance ends itself after the job, whoever is watching: a watcher outside
            // SSM (no 48 h limit) waits for the container, then re-arms the deadline (on a
            // shared instance only when no other job of ours runs there by then).
            if let Some(after) = after {
                let name = quote(&container_name(&plan.job_id));
                let after = match shared {
                    Some(_) => locked(&format!(
                        "{}if [ -z \"$(docker ps -q --filter name=^rtb-job- 2>/dev/null)\" ]; then\n{after}fi\n",
                        forget_need(&plan.job_id)
                    )),
                    None => after,
                };
                s.push_str(&once(
                    &plan.job_id,
                    "watch",
                    &format!("docker wait {name} >/dev/null 2>&1\n{after}"),
                ));
            }
            if plan.detach {
                s.push_str("exit 0\n");
            } else {
                s.push_str(&wait_part(
                    &quote(&container_name(&plan.job_id)),
                    c.records.is_some(),
                    shared.is_some(),
                ));
            }
        }
    }
    s
}

/// Where the instance keeps what run-render's scripts leave for each other (cleared at boot);
/// `RTB_STATE_DIR` moves it (tests).
pub(super) const STATE_DIR: &str = "state=${RTB_STATE_DIR:-/run/run-render}\n";

/// Run `body` once per job on this instance, detached from the SSM command: a systemd unit
/// where systemd runs, else a new session. A second delivery of the script starts nothing.
/// (Job ids are letters, digits, `-`, `_` and `.`: safe inside double quotes.)
fn once(job_id: &str, what: &str, body: &str) -> String {
    let unit = quote(&format!("rtb-{what}-{job_id}"));
    let mark = format!("\"$state/{what}-{job_id}\"");
    let body = quote(&format!("{STATE_DIR}{body}"));
    format!(
        "{STATE_DIR}mkdir -p \"$state\"\n\
         if mkdir {mark} 2>/dev/null; then\n\
         \x20 if ! {{ command -v systemd-run >/dev/null 2>&1 && systemd-run --quiet --collect --unit={unit} /bin/sh -c {body} >/dev/null 2>&1; }}; then\n\
         \x20   setsid /bin/sh -c {body} </dev/null >/dev/null 2>&1 &\n\
         \x20 fi\n\
         fi\n"
    )
}

/// After the job: if nobody is left to terminate the instance (the client was killed, the
/// laptop closed), it should not idle until the job's deadline. `--keep` opts out.
pub const AFTER_JOB: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// A detached job's instance has nobody to wait for: it ends soon after the job.
pub const AFTER_DETACHED: std::time::Duration = std::time::Duration::from_secs(30);
