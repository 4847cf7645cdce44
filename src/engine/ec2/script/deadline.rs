//! The instance's own deadline: a one-shot poweroff armed at boot (user data) and again by
//! each job, so the instance ends itself whatever happens to the client.

use std::time::SystemTime;

use super::{epoch, STATE_DIR};
use crate::plan::Plan;

/// Arm the instance's deadline at the epoch the shell expression `when` gives: `rtb-deadline`
/// (on our AMI, and in the test world) arms a one-shot poweroff at that time; where it is
/// missing, or fails, `shutdown -h +MINUTES` does. (rtb-deadline keeps an earlier deadline
/// armed when it cannot arm the new one.)
pub(super) fn arm_at(when: &str) -> String {
    format!(
        "at={when}\n\
         if ! {{ command -v rtb-deadline >/dev/null 2>&1 && rtb-deadline \"$at\"; }}; then\n\
         \x20 shutdown -h +$(( (at - $(date +%s) + 59) / 60 )) >/dev/null 2>&1 || true\n\
         fi\n"
    )
}

/// User data: cloud-init runs it at boot, so the deadline holds even if the job script never
/// arrives (client killed, agent never online).
pub fn user_data(plan: &Plan) -> Option<String> {
    plan.deadline.map(|d| {
        format!(
            "#!/bin/sh\n# run-render: on-instance deadline for job {}\n{}",
            plan.job_id,
            arm_at(&epoch(d).to_string())
        )
    })
}

/// Re-arm the deadline to a short grace after the job, never later than the deadline the
/// user set: min(deadline, now + grace).
pub(super) fn arm_after_job(deadline: Option<SystemTime>, grace: std::time::Duration) -> String {
    let soon = format!("$(( $(date +%s) + {} ))", grace.as_secs());
    let when = match deadline {
        Some(d) => {
            let d = epoch(d);
            format!("$(soon={soon}; [ \"$soon\" -lt {d} ] && echo \"$soon\" || echo {d})")
        }
        None => soon,
    };
    format!(
        "# The job is over: end the instance soon, never later than its deadline.\n{}",
        arm_at(&when)
    )
}

/// Disarm whatever deadline is armed: a job without one (`--timeout none`) shares the
/// instance, and an earlier job's short after-job grace must not end it.
const DISARM: &str = "if command -v rtb-deadline >/dev/null 2>&1; then rtb-deadline --cancel >/dev/null 2>&1 || true; fi\n\
                      shutdown -c >/dev/null 2>&1 || true\n";

/// On a shared instance, arm the latest deadline its running jobs need (run it under
/// [`locked`]). Each job leaves its own need in the state folder (`need-<job id>`: an epoch,
/// or `none`), and a need counts while that job's container runs: whatever order the jobs'
/// scripts run in, a shorter timeout never cuts a longer co-tenant. `job` is the job starting
/// now (its need is recorded, and counts before its container runs); `need` counts in any
/// case (the pool's check, for the job it is about to start). With a need of `none` anywhere,
/// the deadline is disarmed.
pub(super) fn arm_for_jobs(job: Option<&str>, need: Option<SystemTime>) -> String {
    let need = need.map_or_else(|| "none".to_string(), |d| epoch(d).to_string());
    let record = job
        .map(|j| format!("echo {need} > \"$state/need-{j}\"\n"))
        .unwrap_or_default();
    format!(
        "# The deadline: the latest that the jobs running here need.\n\
         {record}need={need}\n\
         for f in \"$state\"/need-*; do\n\
         \x20 [ -e \"$f\" ] || continue\n\
         \x20 j=${{f##*/need-}}\n\
         \x20 if [ \"$j\" != '{me}' ] && [ \"$(docker inspect --type container -f '{{{{.State.Running}}}}' \"rtb-job-$j\" 2>/dev/null)\" != true ]; then\n\
         \x20   rm -f \"$f\"; continue\n\
         \x20 fi\n\
         \x20 v=$(cat \"$f\")\n\
         \x20 if [ \"$v\" = none ] || [ \"$need\" = none ]; then need=none\n\
         \x20 elif [ \"$v\" -gt \"$need\" ] 2>/dev/null; then need=$v; fi\n\
         done\n\
         if [ \"$need\" = none ]; then\n{DISARM}else\n{arm}fi\n",
        me = job.unwrap_or_default(),
        arm = arm_at("$need"),
    )
}

/// A job of a shared instance has ended: its need no longer counts.
pub(super) fn forget_need(job: &str) -> String {
    format!("rm -f \"$state/need-{job}\"\n")
}

/// `body` holding the instance's deadline lock (fd 9, as rtb-deadline's own, which it closes
/// for everything it leaves running): a job that arms its deadline and starts its container,
/// and a watcher that finds no job left and arms the short after-job grace, cannot
/// interleave. After 60 s without the lock, `body` runs anyway.
pub(super) fn locked(body: &str) -> String {
    format!(
        "{STATE_DIR}mkdir -p \"$state\"\n\
         {{\n\
         {{ command -v flock >/dev/null 2>&1 && flock -w 60 9; }} || true\n\
         {body}}} 9>>\"$state/deadline.lock\"\n"
    )
}
