//! The scripts run for real in a sandbox of stand-in tools.

use super::container::STOP_RESERVE;
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
/// `$SANDBOX/container` exists beforehand), answers `docker wait` with 0, records `docker rm`
/// (and forgets the container), takes the job ids in `$SANDBOX/running` for the job
/// containers running (`ps`, `inspect` of their state) and names the sandbox as its data
/// folder; `rtb-deadline` records each time it is armed (and
/// fails when `$SANDBOX/deadline-fails` exists), says the last one for `--status` and
/// records `--cancel`; `shutdown` records its argument. The script runs with only that folder and
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
                inspect) for last; do :; done\n\
                   case \"$*\" in\n\
                   *State.Running*) grep -qx \"${last#rtb-job-}\" \"$SANDBOX/running\" 2>/dev/null && echo true || exit 1 ;;\n\
                   *) [ -e \"$SANDBOX/container\" ] || exit 1 ;;\n\
                   esac ;;\n\
                wait) echo 0 ;;\n\
                stop) echo \"$@\" >> \"$SANDBOX/stops\" ;;\n\
                rm) echo \"$@\" >> \"$SANDBOX/removed\"; rm -f \"$SANDBOX/container\" ;;\n\
                ps) [ -e \"$SANDBOX/running\" ] && cat \"$SANDBOX/running\" ;;\n\
                info) echo \"$SANDBOX\" ;;\n\
                esac\nexit 0"),
            ("rtb-deadline", "case \"$1\" in\n\
                --status) if [ -s \"$SANDBOX/deadlines\" ]; then echo \"rtb-deadline: instance stops at $(tail -n 1 \"$SANDBOX/deadlines\")\"; else echo 'rtb-deadline: no deadline armed'; fi ;;\n\
                --cancel) echo cancel >> \"$SANDBOX/cancels\"; : > \"$SANDBOX/deadlines\" ;;\n\
                *) [ -e \"$SANDBOX/deadline-fails\" ] && exit 1\n\
                   echo \"$1\" >> \"$SANDBOX/deadlines\" ;;\n\
                esac"),
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

/// On a batch's shared instance the script arms the latest deadline its running jobs need
/// (here a co-tenant's, later than the job's own), asks the runner to empty its scratch
/// folders when an earlier job ran there, and removes the container once it has ended; the
/// watcher arms the short after-job grace only when no other job container runs.
#[test]
fn a_shared_instance_keeps_the_latest_deadline_and_removes_the_container() {
    let plan = plan_with("disp(1)", "''", "data");
    let own = epoch(plan.deadline.unwrap());
    let later = own + 3600;
    let needs = |sandbox: &Sandbox, job: &str, epoch: u64| {
        let state = sandbox.dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join(format!("need-{job}")), format!("{epoch}\n")).unwrap();
    };

    // A co-tenant runs with a later need: that deadline stays, the watcher leaves it alone.
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.dir.path().join("running"), "other\n").unwrap();
    needs(&sandbox, "other", later);
    let out = sandbox.run(&shared_job_script(&plan, None, Shared { reused: true }));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(sandbox.deadlines(), [later], "not the job's own {own}");
    let args = sandbox.docker_args();
    assert!(args.windows(2).any(|w| w == ["-e", "RTB_EMPTY_SCRATCH=1"]));
    assert_eq!(sandbox.lines("removed"), ["rm rtb-job-j1"]);

    // Alone (a need left by a job no longer running does not count): its own deadline, then
    // the grace once it has ended; not reused, the scratch folders are left as they are.
    let sandbox = Sandbox::new();
    needs(&sandbox, "gone", later);
    let out = sandbox.run(&shared_job_script(&plan, None, Shared { reused: false }));
    assert!(out.status.success());
    let armed = sandbox.wait_deadlines(2);
    assert_eq!(armed[0], own, "{armed:?}");
    let now = now_secs();
    assert!((now + 590..=now + 610).contains(&armed[1]), "{armed:?}");
    assert!(!sandbox.dir.path().join("state/need-gone").exists());
    assert!(!sandbox
        .docker_args()
        .iter()
        .any(|a| a.contains("RTB_EMPTY_SCRATCH")));

    // A single run keeps its container (attach reads its code from it).
    let sandbox = Sandbox::new();
    sandbox.run(&job_script(&plan, None));
    assert!(sandbox.lines("removed").is_empty());
}

/// A job without a deadline (`--timeout none`) on a shared instance disarms what an earlier
/// job armed, rather than live under its short after-job grace.
#[test]
fn a_shared_job_without_deadline_disarms_the_earlier_one() {
    let plan = plan_args(&["--command", "disp(1)", "--timeout", "none"]);
    let sandbox = Sandbox::new();
    let out = sandbox.run(&shared_job_script(&plan, None, Shared { reused: true }));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sandbox.lines("cancels"), ["cancel"]);
}

/// The probe arms what it is asked to, then reports it back with the free disk and the job
/// containers running; only looking changes nothing.
#[test]
fn the_probe_arms_then_reports() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.dir.path().join("running"), "b-1\nb-2\n").unwrap();
    let at = SystemTime::now() + std::time::Duration::from_secs(7200);
    let out = sandbox.run(&probe::script(probe::Arm::To(Some(at))));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = probe::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.deadline, probe::Armed::At(epoch(at)));
    assert!(p.disk_free_kib.is_some_and(|k| k > 0), "{p:?}");
    assert_eq!(p.jobs, ["b-1", "b-2"]);

    let out = sandbox.run(&probe::script(probe::Arm::Look));
    let p = probe::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.deadline, probe::Armed::At(epoch(at)));
    assert_eq!(sandbox.deadlines().len(), 1, "looking arms nothing");

    let out = sandbox.run(&probe::script(probe::Arm::To(None)));
    let p = probe::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.deadline, probe::Armed::Nothing);

    // Our AMI's rtb-deadline --status is systemd's timer list; with two armed (a re-arm that
    // could not stop the earlier one), the earlier fires first.
    std::fs::write(
        sandbox.dir.path().join("rtb-deadline"),
        "#!/bin/sh\n[ \"$1\" = --status ] || exit 0\n\
         echo 'NEXT                        LEFT     LAST PASSED UNIT                                         ACTIVATES'\n\
         echo 'Thu 2027-01-15 08:00:00 UTC 1h left  -    -      rtb-deadline-1800000000-1784000000123456789.timer rtb-deadline-1800000000-1784000000123456789.service'\n\
         echo 'Thu 2027-01-15 07:00:00 UTC 10m left -    -      rtb-deadline-1799996400-1784000000987654321.timer rtb-deadline-1799996400-1784000000987654321.service'\n\
         echo '2 timers listed.'\n",
    )
    .unwrap();
    let out = sandbox.run(&probe::script(probe::Arm::Look));
    let p = probe::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.deadline, probe::Armed::At(1_799_996_400));
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
