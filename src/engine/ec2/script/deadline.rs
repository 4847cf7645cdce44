//! The instance's own deadline: a one-shot poweroff armed at boot (user data) and again by
//! each job, so the instance ends itself whatever happens to the client.

use std::time::SystemTime;

use super::epoch;
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
