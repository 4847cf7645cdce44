//! The shell text the instance runs: the user data that arms the deadline at boot, the job
//! script sent through SSM, and the stop script. Every value from the user is quoted as one
//! shell word (shlex), so no input can end a word, a line or the script early.

use std::time::SystemTime;

use crate::plan::{Container, Plan, Work};

/// The container's name on the instance, so later commands (stop, re-attach) can find it.
pub fn container_name(job_id: &str) -> String {
    format!("rtb-job-{job_id}")
}

/// Exit code of the job script when the container could not be started or was lost. The
/// runner never uses it, so the client can tell the two apart.
pub const CONTAINER_START_FAILED: i32 = 125;

/// What `docker stop` gives the runner at least: stop the interpreter, upload the outputs.
pub const STOP_GRACE_MIN: std::time::Duration = std::time::Duration::from_secs(60);
/// Without a deadline, the longest a stop may take (a render's outputs can be large).
pub const STOP_GRACE_MAX: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// Kept free before the deadline: the poweroff itself and the client's last look.
const STOP_RESERVE: std::time::Duration = std::time::Duration::from_secs(60);
/// The container's own stop timeout, used when the instance shuts down under a running job
/// (its deadline): Docker then gives the runner this long to save the outputs.
const SHUTDOWN_GRACE_SECS: u64 = 300;

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

/// Arm the instance's deadline at the epoch the shell expression `when` gives: `rtb-deadline`
/// (on our AMI, and in the test world) arms a one-shot poweroff at that time; where it is
/// missing, or fails, `shutdown -h +MINUTES` does. (rtb-deadline keeps an earlier deadline
/// armed when it cannot arm the new one.)
fn arm_at(when: &str) -> String {
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

/// The script sent with AWS-RunShellScript. Attached, it waits for the job and ends with its
/// exit code; detached (`--detach`), it ends as soon as the job has started.
pub fn job_script(plan: &Plan, region: Option<&str>) -> String {
    let mut s = format!("# run-render job {}\nset -u\n", plan.job_id);
    if let Some(d) = plan.deadline {
        s.push_str("# Arm the deadline again: the AMI may not run user data.\n");
        s.push_str(&arm_at(&epoch(d).to_string()));
    }
    let grace = if plan.detach {
        AFTER_DETACHED
    } else {
        AFTER_JOB
    };
    let after = (!plan.keep).then(|| arm_after_job(plan.deadline, grace));
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
            s.push_str(&start_container(
                &plan.job_id,
                &plan.launch.client_token,
                c,
                region,
            ));
            if let (Some(d), Some(_)) = (plan.deadline, &plan.batch) {
                // A batch's instance runs one job after another: an earlier job's watcher may
                // have armed its short after-job grace a moment ago. This job's own deadline,
                // armed again now that its container runs, replaces it.
                s.push_str(&arm_at(&epoch(d).to_string()));
            }
            // The instance ends itself after the job, whoever is watching: a watcher outside
            // SSM (no 48 h limit) waits for the container, then re-arms the deadline (on a
            // batch's instance only when no other job of ours runs there by then).
            if let Some(after) = after {
                let name = quote(&container_name(&plan.job_id));
                let after = if plan.batch.is_some() {
                    format!(
                        "if [ -z \"$(docker ps -q --filter name=^rtb-job- 2>/dev/null)\" ]; then\n{after}fi\n"
                    )
                } else {
                    after
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
                ));
            }
        }
    }
    s
}

/// Where the instance keeps what run-render's scripts leave for each other (cleared at boot);
/// `RTB_STATE_DIR` moves it (tests).
const STATE_DIR: &str = "state=${RTB_STATE_DIR:-/run/run-render}\n";

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

/// Re-arm the deadline to a short grace after the job, never later than the deadline the
/// user set: min(deadline, now + grace).
fn arm_after_job(deadline: Option<SystemTime>, grace: std::time::Duration) -> String {
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

/// Start the job's container, unless it is there already.
fn start_container(job_id: &str, attempt: &str, c: &Container, region: Option<&str>) -> String {
    let name = quote(&container_name(job_id));
    let mut run = vec![
        "docker run -d".to_string(),
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
/// The container stays (a later `attach` or re-attach reads its exit code from it); the
/// instance goes with it.
fn wait_part(name: &str, s3_log: bool) -> String {
    let logs = format!("docker logs --tail 200 {name} 2>&1 | tail -c 20000");
    let logs = if s3_log {
        format!("[ \"$code\" = 0 ] || {logs}")
    } else {
        logs
    };
    format!(
        "code=$(docker wait {name}) || code={fail}\n\
         [ -n \"$code\" ] || code={fail}\n\
         {logs}\n\
         exit \"$code\"\n",
        fail = CONTAINER_START_FAILED,
    )
}

/// Wait again for a job container that already exists (after SSM's execution limit or an
/// agent restart ended an earlier wait, or to attach to a detached job). Exits 125 when
/// there is no such container.
pub fn reattach_script(job_id: &str) -> String {
    let name = quote(&container_name(job_id));
    format!(
        "docker inspect --type container {name} >/dev/null 2>&1 || exit {CONTAINER_START_FAILED}\n{}",
        wait_part(&name, false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan_with(command: &str, toolboxes: &str, volume_dir: &str) -> Plan {
        Plan::from_args(
            crate::cli::parse_run([
                "run-render",
                "--ami",
                "ami-0123456789abcdef0",
                "--command",
                command,
                "--toolboxes",
                toolboxes,
                "--volume",
                &format!("/{volume_dir}:/{volume_dir}"),
                "--output",
                "s3://out-bucket/x",
                "--job-id",
                "j1",
            ])
            .unwrap(),
            SystemTime::now(),
        )
        .unwrap()
    }

    /// A folder of stand-ins for the instance's tools: `docker` records the arguments of
    /// `docker run` (NUL-separated), knows the container once it was run (or when
    /// `$SANDBOX/container` exists beforehand), and answers `docker wait` with 0;
    /// `rtb-deadline` records each time it is armed (and fails when `$SANDBOX/deadline-fails`
    /// exists); `shutdown` records its argument. The script runs with only that folder and
    /// the basic system folders on PATH, so nothing real can be reached.
    struct Sandbox {
        dir: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let dir = tempfile::tempdir().unwrap();
            for (name, body) in [
                ("docker", "case \"$1\" in\n\
                    run) for a in \"$@\"; do printf '%s\\0' \"$a\" >> \"$SANDBOX/args\"; done; touch \"$SANDBOX/container\" ;;\n\
                    inspect) [ -e \"$SANDBOX/container\" ] || exit 1 ;;\n\
                    wait) echo 0 ;;\n\
                    stop) echo \"$@\" >> \"$SANDBOX/stops\" ;;\n\
                    esac\nexit 0"),
                ("rtb-deadline", "[ -e \"$SANDBOX/deadline-fails\" ] && exit 1\necho \"$1\" >> \"$SANDBOX/deadlines\""),
                ("shutdown", "echo \"$2\" >> \"$SANDBOX/shutdowns\""),
                // No systemd here: the detached watcher takes its setsid path.
                ("systemd-run", "exit 1"),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
            }
            Sandbox { dir }
        }

        fn touch(&self, name: &str) {
            std::fs::write(self.dir.path().join(name), b"").unwrap();
        }

        fn lines(&self, name: &str) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join(name))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn run(&self, script: &str) -> std::process::Output {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .env_clear()
                .env(
                    "PATH",
                    format!("{}:/usr/bin:/bin", self.dir.path().display()),
                )
                .env("SANDBOX", self.dir.path())
                .env("RTB_STATE_DIR", self.dir.path().join("state"))
                .output()
                .unwrap()
        }

        fn docker_args(&self) -> Vec<String> {
            let bytes = std::fs::read(self.dir.path().join("args")).unwrap_or_default();
            String::from_utf8(bytes)
                .unwrap()
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }

        /// The deadlines armed, once there are `n` of them (the after-job one comes from a
        /// watcher in the background), or what there is after 5 s.
        fn wait_deadlines(&self, n: usize) -> Vec<u64> {
            let start = std::time::Instant::now();
            loop {
                let armed = self.deadlines();
                if armed.len() >= n || start.elapsed() > std::time::Duration::from_secs(5) {
                    return armed;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }

        fn deadlines(&self) -> Vec<u64> {
            std::fs::read_to_string(self.dir.path().join("deadlines"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        }
    }

    /// Run a script and return the `docker run` arguments it used.
    fn docker_args(script: &str) -> Vec<String> {
        let sandbox = Sandbox::new();
        let out = sandbox.run(script);
        assert!(
            out.status.success(),
            "script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox.docker_args()
    }

    #[test]
    fn container_script_shape() {
        let plan = plan_with("disp('hi')", "{'isetbio'}", "home/ubuntu");
        let s = job_script(&plan, Some("eu-west-1"));
        let sandbox = Sandbox::new();
        let out = sandbox.run(&s);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let args = sandbox.docker_args();
        // Armed at the plan's deadline before the job, then ~10 min after it ended.
        let deadline = plan
            .deadline
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let armed = sandbox.wait_deadlines(2);
        assert_eq!(armed.len(), 2, "{armed:?}");
        assert_eq!(armed[0], deadline);
        assert!(armed[1] < deadline, "{armed:?}");
        assert_eq!(&args[..2], ["run", "-d"]);
        // A second delivery starts no second watcher.
        sandbox.run(&s);
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(
            sandbox.deadlines().len(),
            3,
            "only the deadline is armed again"
        );
        assert!(args
            .windows(2)
            .any(|w| w == ["-v", "/home/ubuntu:/home/ubuntu"]));
        assert!(args.windows(2).any(|w| w == ["-e", "COMMAND=disp('hi')"]));
        assert!(args.windows(2).any(|w| w == ["-e", "AWS_REGION=eu-west-1"]));
        assert!(args.windows(2).any(|w| w == ["-e", "RTB_JOB_ID=j1"]));
        assert_eq!(args.last().unwrap(), "rtb-support:ami");
        assert!(!s.contains("AWS_SECRET") && !s.contains("AWS_ACCESS_KEY"));
    }

    #[test]
    fn shell_mode_runs_the_command_as_one_word() {
        let plan = Plan::from_args(
            crate::cli::parse_run([
                "run-render",
                "--ami",
                "ami-0123456789abcdef0",
                "--shell",
                "echo a; exit 7",
                "--timeout",
                "none",
            ])
            .unwrap(),
            SystemTime::now(),
        )
        .unwrap();
        let s = job_script(&plan, None);
        let sandbox = Sandbox::new();
        let out = sandbox.run(&s);
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
        // No deadline was asked for, but the instance still ends soon after the command.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let armed = sandbox.deadlines();
        assert_eq!(armed.len(), 1, "{armed:?}");
        assert!(armed[0] >= now + 590 && armed[0] <= now + 610, "{armed:?}");
    }

    fn plan_args(extra: &[&str]) -> Plan {
        let mut v = vec![
            "run-render",
            "--ami",
            "ami-0123456789abcdef0",
            "--job-id",
            "j1",
        ];
        v.extend_from_slice(extra);
        Plan::from_args(crate::cli::parse_run(v).unwrap(), SystemTime::now()).unwrap()
    }

    fn now_secs() -> u64 {
        epoch(SystemTime::now())
    }

    /// A failed re-arm must not leave the instance without a deadline: the fallback
    /// (`shutdown -h +MINUTES`) runs when rtb-deadline fails, not only when it is missing.
    #[test]
    fn failing_rtb_deadline_falls_back_to_shutdown() {
        let plan = plan_args(&[
            "--shell",
            "true",
            "--timeout",
            "30m",
            "--deadline-margin",
            "0s",
        ]);
        let sandbox = Sandbox::new();
        sandbox.touch("deadline-fails");
        let out = sandbox.run(&job_script(&plan, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shutdowns = sandbox.lines("shutdowns");
        // Once for the deadline (+30 min), once for the after-job grace (+10 min).
        assert_eq!(shutdowns, ["+30", "+10"], "{shutdowns:?}");
        assert!(sandbox.deadlines().is_empty());
    }

    /// The after-job grace never moves the deadline later than the one the user set.
    #[test]
    fn after_job_grace_never_extends_the_deadline() {
        let plan = plan_args(&[
            "--shell",
            "true",
            "--timeout",
            "2m",
            "--deadline-margin",
            "0s",
        ]);
        let deadline = epoch(plan.deadline.unwrap());
        let sandbox = Sandbox::new();
        let out = sandbox.run(&job_script(&plan, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sandbox.deadlines(), [deadline, deadline]);

        // A far deadline: the grace (now + 10 min) comes first.
        let plan = plan_args(&["--shell", "true", "--timeout", "5h"]);
        let sandbox = Sandbox::new();
        sandbox.run(&job_script(&plan, None));
        let armed = sandbox.deadlines();
        let now = now_secs();
        assert_eq!(armed[0], epoch(plan.deadline.unwrap()));
        assert!((now + 590..=now + 610).contains(&armed[1]), "{armed:?}");
    }

    /// A second delivery of the job script (SendCommand retried after a lost answer) waits
    /// on the running job: no second `docker run`, and nothing removed first.
    #[test]
    fn a_duplicate_job_script_waits_on_the_running_container() {
        let plan = plan_with("disp(1)", "''", "data");
        let sandbox = Sandbox::new();
        sandbox.touch("container");
        let out = sandbox.run(&job_script(&plan, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            sandbox.docker_args().is_empty(),
            "started a second container"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
        // The only removal is of another attempt's container (a batch job's earlier try).
        let script = job_script(&plan, None);
        let guard = script
            .find("[ -n \"$seen\" ] && [ \"$seen\" != ")
            .expect("the attempt check");
        let rm = script.find("docker rm -f").expect("the replacement");
        assert!(
            guard < rm && script.matches("rm -f").count() == 1,
            "{script}"
        );
    }

    /// Detached, the script ends once the job has started; a watcher outside SSM waits for
    /// the job and then ends the instance within half a minute, never past its deadline.
    #[test]
    fn a_detached_job_ends_its_instance_soon_after_itself() {
        let mut plan = plan_with("disp(1)", "''", "data");
        plan.detach = true;
        let s = job_script(&plan, None);
        assert!(
            !s.contains("code=$(docker wait"),
            "the SSM command must not wait"
        );
        let sandbox = Sandbox::new();
        let out = sandbox.run(&s);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(&sandbox.docker_args()[..2], ["run", "-d"]);
        let armed = sandbox.wait_deadlines(2);
        let now = now_secs();
        assert!((now + 25..=now + 35).contains(&armed[1]), "{armed:?}");

        let mut shell = plan_args(&["--shell", "exit 9", "--timeout", "1h"]);
        shell.detach = true;
        let sandbox = Sandbox::new();
        let out = sandbox.run(&job_script(&shell, None));
        assert!(out.status.success());
        let armed = sandbox.wait_deadlines(2);
        assert_eq!(armed.len(), 2, "{armed:?}");
        let code = std::fs::read_to_string(sandbox.dir.path().join("state/j1.code")).unwrap();
        assert_eq!(code.trim(), "9");

        // --keep: no watcher, only the deadline.
        let mut kept = plan_with("disp(1)", "''", "data");
        kept.detach = true;
        kept.keep = true;
        let sandbox = Sandbox::new();
        sandbox.run(&job_script(&kept, None));
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(sandbox.deadlines().len(), 1);
    }

    #[test]
    fn stop_grace_covers_the_time_to_the_deadline() {
        let now = SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(stop_grace(Some(now + hour), now), hour - STOP_RESERVE);
        assert_eq!(stop_grace(Some(now), now), STOP_GRACE_MIN);
        assert_eq!(stop_grace(None, now), STOP_GRACE_MAX);
        let sandbox = Sandbox::new();
        let out = sandbox.run(&stop_script("j1", hour));
        assert_eq!(
            out.status.code(),
            Some(CONTAINER_START_FAILED),
            "no container yet"
        );
        sandbox.touch("container");
        let out = sandbox.run(&stop_script("j1", hour));
        assert!(out.status.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(sandbox.lines("stops"), ["stop -t 3600 rtb-job-j1"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the user writes — quotes, `$()`, backticks, newlines — reaches the
        /// container as the same bytes, and nothing of it runs in the instance's shell.
        #[test]
        fn values_reach_docker_unchanged(
            command in "[^\u{0}]{0,40}|.*\\$\\(touch /tmp/rr-pwned\\).*|.*'.*\n.*`id`.*",
            toolboxes in "[^\u{0}]{1,20}",
            dir in "[a-zA-Z0-9 _'\"$()`;&|-]{1,12}",
        ) {
            prop_assume!(!command.trim().is_empty() && !command.contains('\0'));
            prop_assume!(!dir.contains(':'));
            let plan = plan_with(&command, &toolboxes, &dir);
            let s = job_script(&plan, None);
            let args = docker_args(&s);
            let cmd_arg = format!("COMMAND={command}");
            let tb_arg = format!("TOOLBOXES={toolboxes}");
            let vol_arg = format!("/{dir}:/{dir}");
            prop_assert!(args.contains(&cmd_arg));
            prop_assert!(args.contains(&tb_arg));
            prop_assert!(args.contains(&vol_arg));
            prop_assert!(!std::path::Path::new("/tmp/rr-pwned").exists());
        }
    }
}
