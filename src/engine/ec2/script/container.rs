//! The job's container on the instance: start it (once per attempt), wait for it, wait for
//! it again, stop it gently.

use std::time::SystemTime;

use super::{container_name, quote, CONTAINER_START_FAILED, FORWARDED};
use crate::plan::Container;

/// What `docker stop` gives the runner at least: stop the interpreter, upload the outputs.
pub const STOP_GRACE_MIN: std::time::Duration = std::time::Duration::from_secs(60);
/// Without a deadline, the longest a stop may take (a render's outputs can be large).
pub const STOP_GRACE_MAX: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// Kept free before the deadline: the poweroff itself and the client's last look.
pub(super) const STOP_RESERVE: std::time::Duration = std::time::Duration::from_secs(60);
/// The container's own stop timeout, used when the instance shuts down under a running job
/// (its deadline): Docker then gives the runner this long to save the outputs.
const SHUTDOWN_GRACE_SECS: u64 = 300;

/// Start the job's container, unless it is there already.
pub(super) fn start_container(
    job_id: &str,
    attempt: &str,
    c: &Container,
    region: Option<&str>,
    empty_scratch: bool,
) -> String {
    let name = quote(&container_name(job_id));
    let mut run = vec![
        // An init process passes a stop on to the runner even before it listens (as PID 1 it
        // would ignore an early SIGTERM).
        "docker run -d --init".to_string(),
        format!("--name {name}"),
        format!("--label rtb-job={}", quote(job_id)),
        // Which attempt started it: a retried delivery of this attempt's script waits on it,
        // another attempt's leftover (an earlier try of a batch job) is replaced.
        format!("--label rtb-attempt={}", quote(attempt)),
        // An init reaps what MATLAB's system() calls leave behind.
        "--init".to_string(),
        // When the instance powers off under a running job, Docker gives the runner this
        // long to stop the interpreter and upload the outputs.
        format!("--stop-timeout {SHUTDOWN_GRACE_SECS}"),
        // Renderers started by MATLAB are peers on the host's Docker, on the host network.
        "--network host".to_string(),
        "-v /var/run/docker.sock:/var/run/docker.sock".to_string(),
    ];
    if c.env
        .iter()
        .any(|(k, _)| k == rtb_model::contract::MOUNT_BUCKET.name)
    {
        // mount-s3 is a FUSE file system: the container needs the device and the right to mount.
        run.push(
            "--device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined".to_string(),
        );
    }
    for (host, ctr, ro) in &c.volumes {
        let spec = format!("{host}:{ctr}{}", if *ro { ":ro" } else { "" });
        run.push(format!("-v {}", quote(&spec)));
    }
    if let Some(r) = region {
        run.push(format!("-e {}", quote(&format!("AWS_REGION={r}"))));
    }
    for var in FORWARDED {
        run.push(format!("-e {var}"));
    }
    for (k, v) in &c.env {
        run.push(format!("-e {}", quote(&format!("{k}={v}"))));
    }
    if empty_scratch {
        // An earlier job on this instance may have left files in a scratch folder on a host
        // volume: the runner empties the folders before anything else.
        run.push(format!("-e {}=1", rtb_model::contract::EMPTY_SCRATCH.name));
    }
    run.push(quote(&c.image));

    // A second delivery of this script (SendCommand retried after a lost answer) finds the
    // job's container already there and waits on it: it never starts or removes a second one.
    format!(
        "seen=$(docker inspect --type container --format '{{{{index .Config.Labels \"rtb-attempt\"}}}}' {name} 2>/dev/null) || seen=\n\
         if [ -n \"$seen\" ] && [ \"$seen\" != {attempt} ]; then\n\
         \x20 echo 'run-render: replacing the container an earlier attempt of this job left' >&2\n\
         \x20 docker rm -f {name} >/dev/null 2>&1 || true\n\
         fi\n\
         if docker inspect --type container {name} >/dev/null 2>&1; then\n\
         \x20 echo 'run-render: the job is already running here; waiting for it' >&2\n\
         elif ! {run} >/dev/null; then\n\
         \x20 if ! docker inspect --type container {name} >/dev/null 2>&1; then\n\
         \x20   echo {msg} >&2\n\
         \x20   exit {fail}\n\
         \x20 fi\n\
         fi\n",
        run = run.join(" \\\n  "),
        attempt = quote(attempt),
        msg = quote(&format!(
            "run-render: could not start the rtb-support container from image '{}' (is it on the AMI?)",
            c.image
        )),
        fail = CONTAINER_START_FAILED,
    )
}

/// Wait for the job's container and end with its exit code. The log's tail goes to SSM's
/// output (which keeps 24,000 characters) when there is no S3 log, or when the job failed.
/// On an instance of its own the container stays (a later `attach` or re-attach reads its
/// exit code from it) and goes with the instance; on a batch's shared instance (`remove`)
/// it is removed once its code is read: the runner has uploaded the outputs by then, and the
/// instance runs on, so its writable layer must not pile up.
pub(super) fn wait_part(name: &str, s3_log: bool, remove: bool) -> String {
    let logs = format!("docker logs --tail 200 {name} 2>&1 | tail -c 20000");
    let logs = if s3_log {
        format!("[ \"$code\" = 0 ] || {logs}")
    } else {
        logs
    };
    let rm = if remove {
        format!("docker rm {name} >/dev/null 2>&1 || true\n")
    } else {
        String::new()
    };
    format!(
        "code=$(docker wait {name}) || code={fail}\n\
         [ -n \"$code\" ] || code={fail}\n\
         {logs}\n\
         {rm}\
         exit \"$code\"\n",
        fail = CONTAINER_START_FAILED,
    )
}

/// Wait again for a job container that already exists (after SSM's execution limit or an
/// agent restart ended an earlier wait, or to attach to a detached job). Exits 125 when
/// there is no such container. `remove`: a batch job's wait, which removes it at the end.
pub fn reattach_script(job_id: &str, remove: bool) -> String {
    let name = quote(&container_name(job_id));
    format!(
        "docker inspect --type container {name} >/dev/null 2>&1 || exit {CONTAINER_START_FAILED}\n{}",
        wait_part(&name, false, remove)
    )
}

/// How long `docker stop` lets the runner save the outputs: until shortly before the
/// instance's deadline, at least [`STOP_GRACE_MIN`]; without a deadline, [`STOP_GRACE_MAX`].
pub fn stop_grace(deadline: Option<SystemTime>, now: SystemTime) -> std::time::Duration {
    match deadline {
        Some(d) => d
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(STOP_RESERVE)
            .max(STOP_GRACE_MIN),
        None => STOP_GRACE_MAX,
    }
}

/// Stop the job's container gently: the runner stops the interpreter and uploads what exists.
/// Returns at once; the job's own command ends when the container does.
pub fn stop_script(job_id: &str, grace: std::time::Duration) -> String {
    let name = quote(&container_name(job_id));
    format!(
        "docker inspect --type container {name} >/dev/null 2>&1 || {{ echo 'run-render: no job container to stop' >&2; exit {CONTAINER_START_FAILED}; }}\n\
         (docker stop -t {secs} {name} >/dev/null 2>&1 &)\n",
        secs = grace.as_secs(),
    )
}
