//! A short look at a batch's instance between jobs: first (when asked) arm the deadline the
//! next job needs (or the later one its running jobs need), or disarm it, under the deadline
//! lock; then report, one `rtb-probe` line each,
//! the free space on Docker's disk, the deadline armed now, and the job containers running.
//! The pool reads it before handing the instance another job, `stop` and `attach` before
//! ending an instance other jobs may still use.

use std::time::SystemTime;

use super::deadline::{arm_for_jobs, locked};

/// What the probe changes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Nothing: only look.
    Look,
    /// Arm this deadline, or a later one the jobs running there need (`None`: disarm, a job
    /// without one is about to run).
    To(Option<SystemTime>),
}

/// The instance's deadline, as the probe read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// A poweroff is armed at this epoch (seconds).
    At(u64),
    /// rtb-deadline is there and nothing is armed.
    Nothing,
    /// Neither rtb-deadline nor a scheduled shutdown could be read.
    Unknown,
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Free KiB on the file system holding Docker's data (containers' writable layers).
    pub disk_free_kib: Option<u64>,
    pub deadline: Armed,
    /// Job ids of the job containers running.
    pub jobs: Vec<String>,
}

/// The probe script. Its report lines start with `rtb-probe `; nothing else in the output
/// counts.
pub fn script(arm: Arm) -> String {
    let arm = match arm {
        Arm::Look => String::new(),
        Arm::To(d) => locked(&arm_for_jobs(None, d)),
    };
    // The deadline: rtb-deadline's armed epoch (our AMI: units named rtb-deadline-EPOCH-...;
    // the test world: "stops at EPOCH"), the earliest if two are armed (it fires first), else
    // a shutdown scheduled by `shutdown -h +N`.
    format!(
        "set -u\n{arm}\
         root=$(docker info --format '{{{{.DockerRootDir}}}}' 2>/dev/null) || root=\n\
         [ -n \"$root\" ] && [ -d \"$root\" ] || root=/\n\
         echo \"rtb-probe disk_free_kib=$(df -Pk \"$root\" 2>/dev/null | awk 'NR == 2 {{ print $4 }}')\"\n\
         at=$(rtb-deadline --status 2>/dev/null | sed -n 's/.*\\(stops at \\|rtb-deadline-\\)\\([0-9]\\{{9,\\}}\\).*/\\2/p' | sort -n | head -n 1)\n\
         if [ -z \"$at\" ] && [ -r /run/systemd/shutdown/scheduled ]; then\n\
         \x20 usec=$(sed -n 's/^USEC=//p' /run/systemd/shutdown/scheduled)\n\
         \x20 [ -n \"$usec\" ] && at=$((usec / 1000000))\n\
         fi\n\
         if [ -n \"$at\" ]; then echo \"rtb-probe deadline=$at\"\n\
         elif command -v rtb-deadline >/dev/null 2>&1; then echo 'rtb-probe deadline=none'\n\
         else echo 'rtb-probe deadline=unknown'; fi\n\
         echo \"rtb-probe jobs=$(docker ps --filter label=rtb-job --format '{{{{.Label \"rtb-job\"}}}}' 2>/dev/null | tr '\\n' ' ')\"\n"
    )
}

/// Read the probe's report out of the command's output.
pub fn parse(stdout: &str) -> Probe {
    let mut p = Probe {
        disk_free_kib: None,
        deadline: Armed::Unknown,
        jobs: Vec::new(),
    };
    for line in stdout.lines() {
        let Some((key, value)) = line
            .strip_prefix("rtb-probe ")
            .and_then(|l| l.split_once('='))
        else {
            continue;
        };
        let value = value.trim();
        match key {
            "disk_free_kib" => p.disk_free_kib = value.parse().ok(),
            "deadline" => {
                p.deadline = match value {
                    "none" => Armed::Nothing,
                    v => v.parse().map(Armed::At).unwrap_or(Armed::Unknown),
                }
            }
            "jobs" => p.jobs = value.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_and_everything_else_ignored() {
        let table: &[(&str, Probe)] = &[
            (
                "rtb-deadline: instance stops at 1800000000 (in 60 s)\nrtb-probe disk_free_kib=52428800\nrtb-probe deadline=1800000000\nrtb-probe jobs=b-1 b-2 \n",
                Probe {
                    disk_free_kib: Some(52_428_800),
                    deadline: Armed::At(1_800_000_000),
                    jobs: vec!["b-1".into(), "b-2".into()],
                },
            ),
            (
                "rtb-probe disk_free_kib=\nrtb-probe deadline=none\nrtb-probe jobs=\n",
                Probe {
                    disk_free_kib: None,
                    deadline: Armed::Nothing,
                    jobs: vec![],
                },
            ),
            (
                "rtb-probe deadline=unknown\n",
                Probe {
                    disk_free_kib: None,
                    deadline: Armed::Unknown,
                    jobs: vec![],
                },
            ),
            (
                "",
                Probe {
                    disk_free_kib: None,
                    deadline: Armed::Unknown,
                    jobs: vec![],
                },
            ),
        ];
        for (out, want) in table {
            assert_eq!(&parse(out), want, "{out:?}");
        }
    }
}
