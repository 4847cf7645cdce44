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

/// Seconds `docker stop` gives the runner to stop the interpreter and upload the outputs.
pub const STOP_GRACE_SECS: u32 = 60;

/// Variables forwarded from the instance's own environment when it sets them: custom S3/IMDS
/// endpoints (VPC endpoints, the local test world). Never credentials.
const FORWARDED: &[&str] = &["AWS_ENDPOINT_URL", "AWS_EC2_METADATA_SERVICE_ENDPOINT"];

/// One shell word. Plan checks refuse NUL bytes, the only thing a shell word cannot hold.
pub fn quote(s: &str) -> String {
    shlex::try_quote(&s.replace('\0', ""))
        .map(|q| q.into_owned())
        .unwrap_or_default()
}

/// The deadline line: `rtb-deadline` (on our AMI, and in the test world) arms a one-shot
/// poweroff at an absolute time; elsewhere `shutdown -h +MINUTES`.
fn arm_deadline(deadline: SystemTime, now: SystemTime) -> String {
    let epoch = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let minutes = deadline
        .duration_since(now)
        .map(|d| d.as_secs().div_ceil(60))
        .unwrap_or(0);
    format!(
        "if command -v rtb-deadline >/dev/null 2>&1; then rtb-deadline {epoch}; \
         else shutdown -h +{minutes} >/dev/null 2>&1 || true; fi"
    )
}

/// User data: cloud-init runs it at boot, so the deadline holds even if the job script never
/// arrives (client killed, agent never online).
pub fn user_data(plan: &Plan, now: SystemTime) -> Option<String> {
    plan.deadline.map(|d| {
        format!(
            "#!/bin/sh\n# run-render: on-instance deadline for job {}\n{}\n",
            plan.job_id,
            arm_deadline(d, now)
        )
    })
}

/// The script sent with AWS-RunShellScript.
pub fn job_script(plan: &Plan, region: Option<&str>, now: SystemTime) -> String {
    let mut s = format!("# run-render job {}\nset -u\n", plan.job_id);
    if let Some(d) = plan.deadline {
        s.push_str("# Arm the deadline again: the AMI may not run user data.\n");
        s.push_str(&arm_deadline(d, now));
        s.push('\n');
    }
    match &plan.work {
        Work::Shell(cmd) => {
            s.push_str(&format!("sh -c {}\ncode=$?\n", quote(cmd)));
            if !plan.keep {
                s.push_str(&arm_after_job());
            }
            s.push_str("exit $code\n");
        }
        Work::Container(c) => s.push_str(&container_part(&plan.job_id, c, region, plan.keep)),
    }
    s
}

/// After the job: if nobody is left to terminate the instance (the client was killed, the
/// laptop closed), it should not idle until the job's deadline. `--keep` opts out.
const AFTER_JOB: std::time::Duration = std::time::Duration::from_secs(10 * 60);

fn arm_after_job() -> String {
    format!(
        "if command -v rtb-deadline >/dev/null 2>&1; then rtb-deadline $(( $(date +%s) + {} )); \
         else shutdown -h +{} >/dev/null 2>&1 || true; fi\n",
        AFTER_JOB.as_secs(),
        AFTER_JOB.as_secs() / 60
    )
}

fn container_part(job_id: &str, c: &Container, region: Option<&str>, keep: bool) -> String {
    let name = quote(&container_name(job_id));
    let mut run = vec![
        "docker run -d".to_string(),
        format!("--name {name}"),
        format!("--label rtb-job={}", quote(job_id)),
        // An init reaps what MATLAB's system() calls leave behind.
        "--init".to_string(),
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

    format!(
        "docker rm -f {name} >/dev/null 2>&1 || true\n\
         if ! {run} >/dev/null; then\n\
         \x20 echo {msg} >&2\n\
         \x20 exit {fail}\n\
         fi\n\
         {wait}",
        run = run.join(" \\\n  "),
        msg = quote(&format!(
            "run-render: could not start the rtb-support container from image '{}' (is it on the AMI?)",
            c.image
        )),
        fail = CONTAINER_START_FAILED,
        wait = wait_part(&name, c.records.is_some(), if keep { String::new() } else { arm_after_job() }),
    )
}

/// Wait for the job's container and end with its exit code. The log's tail goes to SSM's
/// output (which keeps 24,000 characters) when there is no S3 log, or when the job failed.
/// The container is removed in the background: the command's end is the job's end.
fn wait_part(name: &str, s3_log: bool, after: String) -> String {
    let logs = format!("docker logs --tail 200 {name} 2>&1 | tail -c 20000");
    let logs = if s3_log {
        format!("[ \"$code\" = 0 ] || {logs}")
    } else {
        logs
    };
    format!(
        "code=$(docker wait {name}) || code={fail}\n\
         [ -n \"$code\" ] || code={fail}\n\
         {after}\
         {logs}\n\
         (docker rm {name} >/dev/null 2>&1 &)\n\
         exit \"$code\"\n",
        fail = CONTAINER_START_FAILED,
    )
}

/// Wait again for a job container that is already running (after SSM's execution limit
/// ended an earlier wait).
pub fn reattach_script(job_id: &str) -> String {
    wait_part(&quote(&container_name(job_id)), false, String::new())
}

/// Stop the job's container gently: the runner stops the interpreter and uploads what exists.
pub fn stop_script(job_id: &str) -> String {
    format!(
        "docker stop -t {STOP_GRACE_SECS} {} >/dev/null 2>&1 || true\n",
        quote(&container_name(job_id))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use clap::Parser;
    use proptest::prelude::*;

    fn plan_with(command: &str, toolboxes: &str, volume_dir: &str) -> Plan {
        Plan::from_args(
            Args::try_parse_from([
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
    /// `docker run` (NUL-separated) and answers `docker wait` with 0; `rtb-deadline` records
    /// each time it is armed. The script runs with only that folder and the basic system
    /// folders on PATH, so nothing real (no `shutdown`) can be reached.
    struct Sandbox {
        dir: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let dir = tempfile::tempdir().unwrap();
            for (name, body) in [
                ("docker", "if [ \"$1\" = run ]; then for a in \"$@\"; do printf '%s\\0' \"$a\" >> \"$SANDBOX/args\"; done; fi\nif [ \"$1\" = wait ]; then echo 0; fi\nexit 0"),
                ("rtb-deadline", "echo \"$1\" >> \"$SANDBOX/deadlines\""),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
            }
            Sandbox { dir }
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
        let s = job_script(&plan, Some("eu-west-1"), SystemTime::now());
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
        let armed = sandbox.deadlines();
        assert_eq!(armed.len(), 2, "{armed:?}");
        assert_eq!(armed[0], deadline);
        assert!(armed[1] < deadline, "{armed:?}");
        assert_eq!(&args[..2], ["run", "-d"]);
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
            Args::try_parse_from([
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
        let s = job_script(&plan, None, SystemTime::now());
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
            let s = job_script(&plan, None, SystemTime::now());
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
