//! `run-render` end to end on the emulator: real instances (containers) booted from a
//! registered image, SSM Run Command, the rtb-support image with the runner and Octave
//! started as a peer through the host's Docker, S3 for inputs, outputs and the live log.
//! Every test runs the client and its instances under the shipped IAM policies
//! (`World::enforced`: client-policy.json, the instance role) and fails on a refused call.

mod common;

use std::time::Duration;

use common::{run_render, support_image, unique, Watched, World};

/// Flags every job test shares: the test AMI, the test image, Octave as the interpreter.
fn job_args<'a>(ami: &'a str, job_id: &'a str, image: &'a str) -> Vec<&'a str> {
    vec![
        "--ami",
        ami,
        "--job-id",
        job_id,
        "--image",
        image,
        "--interpreter",
        "octave-cli",
        "--instance-type",
        "t3.micro",
        "--agent-timeout",
        "60s",
    ]
}

/// A container job on the test AMI, with a bucket of its own for outputs (`s3://<out>/out`).
struct ContainerJob {
    w: World,
    out: String,
    job_id: String,
    args: Vec<String>,
}

impl ContainerJob {
    async fn new(name: &str, command: &str, extra: &[&str]) -> ContainerJob {
        let w = World::enforced().await;
        let ami = w.test_ami().await;
        let out = w.output_bucket(&format!("e2e-{name}")).await;
        let job_id = unique(name);
        let image = support_image();
        let output = format!("s3://{out}/out");
        let mut args: Vec<String> = job_args(&ami, &job_id, &image)
            .into_iter()
            .map(String::from)
            .collect();
        args.extend(["--output", &output, "--command", command].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        ContainerJob {
            w,
            out,
            job_id,
            args,
        }
    }

    fn spawn(&self) -> Watched {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Watched::spawn(self.w.run_render(&args))
    }

    /// An output file's bytes, below the job's output prefix.
    async fn output(&self, rel: &str) -> Option<Vec<u8>> {
        self.w.get(&self.out, &format!("out/{rel}")).await
    }
}

async fn assert_terminated(w: &World, job_id: &str) {
    let instances = w.instances_of(job_id).await;
    assert_eq!(
        instances.len(),
        1,
        "one instance for {job_id}: {instances:?}"
    );
    assert_eq!(instances[0].1, "terminated", "{instances:?}");
}

#[tokio::test]
async fn job_streams_its_log_writes_outputs_and_terminates() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let inb = w.input_bucket("e2e-in").await;
    let outb = w.output_bucket("e2e-out").await;
    w.put(&inb, "scene/size.txt", "640 480").await;
    let job_id = unique("ok");
    let image = support_image();
    let (input, output) = (
        format!("s3://{inb}/scene"),
        format!("s3://{outb}/renders/1"),
    );
    let mut args = job_args(&ami, &job_id, &image);
    let command = "s = load(fullfile(getenv('INPUT_SCRATCH'), 'size.txt')); \
        for i = 1:4, disp(sprintf('tick %d of %dx%d', i, s(1), s(2))); pause(1.5); end; \
        fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'render.txt'), 'w'); fprintf(fid, '%d', prod(s)); fclose(fid);";
    args.extend(["--input", &input, "--output", &output, "--command", command]);

    let mut run = Watched::spawn(w.run_render(&args));
    let first = run.wait_for("tick 1 of 640x480", Duration::from_secs(90));
    let first = first.unwrap_or_else(|| {
        panic!(
            "no streamed line; output:\n{}",
            run.seen
                .iter()
                .map(|l| l.2.clone())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let still_running = run.running();
    let done = run.finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert!(
        still_running,
        "the first line must be shown while the job runs"
    );
    // The job prints for ~6 s after its first line: the line was shown well before the end.
    assert!(
        done.ended.saturating_sub(first) > Duration::from_secs(3),
        "first at {first:?}, end {:?}",
        done.ended
    );
    let stdout = done.stdout();
    for i in 1..=4 {
        assert!(stdout.contains(&format!("tick {i} of 640x480")), "{stdout}");
    }
    assert_eq!(
        w.get(&outb, "renders/1/render.txt").await.as_deref(),
        Some(&b"307200"[..])
    );
    assert!(w.get(&outb, "renders/1/matlab.log").await.is_some());
    let result = w
        .get(&outb, &format!("renders/1/_rtb-job/{job_id}/result.json"))
        .await
        .expect("result record");
    let result: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["outcome"], "succeeded");
    assert!(done.stderr().contains("terminated"), "{}", done.stderr());
    assert_terminated(&w, &job_id).await;
    w.assert_no_denials();
}

#[tokio::test]
async fn failing_job_exits_non_zero_keeps_its_log_and_terminates() {
    let job = ContainerJob::new(
        "fail",
        "disp('about to fail'); error('test-error')",
        &["--json"],
    )
    .await;
    let done = job.spawn().finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(1), "{}", done.all());
    let report: serde_json::Value =
        serde_json::from_str(&done.stdout()).expect("--json prints one JSON document");
    assert_eq!(report["outcome"], "job_failed");
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["instance"], "terminated");
    assert_eq!(report["result"]["outcome"], "failed");
    // The runner's record names the instance it ran on (read from the instance metadata).
    assert_eq!(
        report["result"]["instance_id"], report["instance_id"],
        "{report}"
    );
    // The summary carries MATLAB's own message, not just an exit code.
    assert_eq!(report["error"], "the command failed: test-error");
    // With --json the log goes to stderr.
    assert!(done.stderr().contains("test-error"), "{}", done.stderr());
    let log = String::from_utf8(job.output("matlab.log").await.expect("log kept")).unwrap();
    assert!(
        log.contains("about to fail") && log.contains("test-error"),
        "{log}"
    );
    assert_terminated(&job.w, &job.job_id).await;
    job.w.assert_no_denials();
}

#[tokio::test]
async fn ctrl_c_stops_the_job_saves_outputs_and_terminates() {
    let command = "fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'partial.txt'), 'w'); fprintf(fid, 'half'); fclose(fid); \
        disp(['long render ' 'started']); pause(300);";
    let job = ContainerJob::new("int", command, &[]).await;
    let mut run = job.spawn();
    assert!(
        run.wait_for("long render started", Duration::from_secs(90))
            .is_some(),
        "job never started"
    );
    run.signal(libc::SIGINT);
    let done = run.finish(Duration::from_secs(150));
    assert_eq!(done.code, Some(130), "{}", done.all());
    assert!(done.stderr().contains("INTERRUPTED"), "{}", done.stderr());
    // The first Ctrl-C stops the job cleanly: what it wrote so far is saved.
    assert_eq!(
        job.output("partial.txt").await.as_deref(),
        Some(&b"half"[..]),
        "{}",
        done.all()
    );
    assert_terminated(&job.w, &job.job_id).await;
    job.w.assert_no_denials();
}

#[tokio::test]
async fn agent_never_online_is_a_clear_error_and_the_instance_is_terminated() {
    let w = World::enforced().await;
    let ami = w.no_agent_ami().await;
    let job_id = unique("noagent");
    let image = support_image();
    let mut args = job_args(&ami, &job_id, &image);
    let at = args.iter().position(|a| *a == "--agent-timeout").unwrap();
    args[at + 1] = "3s";
    args.extend(["--command", "ver"]);
    let done = Watched::spawn(w.run_render(&args)).finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(67), "{}", done.all());
    assert!(
        done.stderr().contains("did not come online within"),
        "{}",
        done.stderr()
    );
    assert!(
        done.stderr().contains("AmazonSSMManagedInstanceCore"),
        "the checklist is printed"
    );
    assert_terminated(&w, &job_id).await;
    w.assert_no_denials();
}

#[tokio::test]
async fn command_past_its_timeout_is_stopped_and_terminated() {
    let job = ContainerJob::new("timeout", "disp('slow'); pause(120);", &["--timeout", "4s"]).await;
    let done = job.spawn().finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(124), "{}", done.all());
    assert!(done.stderr().contains("TIMED OUT"), "{}", done.stderr());
    assert!(
        done.ended < Duration::from_secs(60),
        "took {:?}",
        done.ended
    );
    assert!(
        job.output("matlab.log").await.is_some(),
        "log kept after a timeout"
    );
    assert_terminated(&job.w, &job.job_id).await;
    job.w.assert_no_denials();
}

#[tokio::test]
async fn shell_mode_passes_the_exit_code_and_shows_ssm_output() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let job_id = unique("shell");
    let done = Watched::spawn(w.run_render(&[
        "--ami",
        &ami,
        "--job-id",
        &job_id,
        "--shell",
        "echo \"hello from $(hostname)\"; exit 3",
    ]))
    .finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(3), "{}", done.all());
    assert!(done.stdout().contains("hello from "), "{}", done.all());
    assert_terminated(&w, &job_id).await;
    w.assert_no_denials();
}

#[tokio::test]
async fn keep_leaves_the_instance_running_and_says_how_to_reach_it() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let job_id = unique("keep");
    let done = Watched::spawn(w.run_render(&[
        "--ami", &ami, "--job-id", &job_id, "--shell", "true", "--keep",
    ]))
    .finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let instances = w.instances_of(&job_id).await;
    assert_eq!(instances.len(), 1);
    let (id, state) = &instances[0];
    // This test ends the instance it asked to keep.
    w.terminate(id).await;
    assert_eq!(state, "running");
    assert!(
        done.stderr()
            .contains(&format!("aws ssm start-session --target {id}")),
        "{}",
        done.stderr()
    );
    w.assert_no_denials();
}

/// Bad input is refused before anything is launched.
#[tokio::test]
async fn bad_input_launches_nothing() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let outb = w.output_bucket("e2e-bad").await;
    let good_out = format!("s3://{outb}/x");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "--ami".into(),
                "ami-0000000000000dead".into(),
                "--command".into(),
                "ver".into(),
            ],
            65,
            "AMI ami-0000000000000dead was not found",
        ),
        (
            vec![
                "--ami".into(),
                "not-an-ami".into(),
                "--command".into(),
                "ver".into(),
            ],
            2,
            "--ami: 'not-an-ami' is not an AMI id",
        ),
        (
            vec![
                "--ami".into(),
                ami.clone(),
                "--command".into(),
                "ver".into(),
                "--output".into(),
                "bucket/x".into(),
            ],
            2,
            "--output: 'bucket/x' is not an S3 URL",
        ),
        (
            vec!["--ami".into(), ami.clone()],
            2,
            "--command: is required",
        ),
        (
            vec![
                "--ami".into(),
                ami.clone(),
                "--command".into(),
                "ver".into(),
                "--output".into(),
                "s3://no-such-bucket-e2e/x".into(),
            ],
            65,
            "--output: s3://no-such-bucket-e2e/x: bucket 'no-such-bucket-e2e' does not exist",
        ),
    ];
    for (args, code, message) in cases {
        let job_id = unique("bad");
        let mut all = args.clone();
        all.extend(["--job-id".to_string(), job_id.clone()]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = w.run_render(&refs).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            w.instances_of(&job_id).await.is_empty(),
            "{args:?} launched something"
        );
    }
    // An instance profile the client policy does not name: IAM refuses even to look it up,
    // as on AWS (the policy's INSTANCE_ROLE_NAME is run-render-instance).
    let no_profile = [
        "--ami",
        &ami,
        "--command",
        "ver",
        "--output",
        &good_out,
        "--iam-profile",
        "no-such-profile",
    ];
    let job_id = unique("bad");
    let out = w
        .run_render(&[&no_profile[..], &["--job-id", &job_id]].concat())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(
            "not authorized to perform: iam:GetInstanceProfile on resource: \
             arn:aws:iam::000000000000:instance-profile/no-such-profile"
        ),
        "{stderr}"
    );
    assert!(w.instances_of(&job_id).await.is_empty());
    let refused: Vec<String> = w
        .scope()
        .take_denials()
        .iter()
        .map(|d| d.action.clone())
        .collect();
    assert_eq!(refused, ["iam:GetInstanceProfile"]);
    // A lab whose policy names that profile, which does not exist: the client says so.
    w.scope()
        .update(|s| s.instance_role = "no-such-profile".into());
    let job_id = unique("bad");
    let out = w
        .run_render(&[&no_profile[..], &["--job-id", &job_id]].concat())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("instance profile 'no-such-profile' does not exist"),
        "{stderr}"
    );
    assert!(w.instances_of(&job_id).await.is_empty());
    w.scope()
        .update(|s| s.instance_role = common::PROFILE.into());

    // A job id whose records folder is already used is refused: its log would mix with the
    // earlier run's.
    let reused = unique("reused");
    w.put(&outb, &format!("x/_rtb-job/{reused}/result.json"), "{}")
        .await;
    let out = w
        .run_render(&[
            "--ami",
            &ami,
            "--command",
            "ver",
            "--output",
            &good_out,
            "--job-id",
            &reused,
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("already holds records of an earlier run"),
        "{stderr}"
    );
    assert!(w.instances_of(&reused).await.is_empty());

    // Container settings with --shell are refused, not silently dropped.
    let out = w
        .run_render(&["--ami", &ami, "--shell", "true", "--output", &good_out])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    // With --json, scripts get a JSON document even for input refused before any call.
    let out = w
        .run_render(&["--ami", "ami-0123456789abcdef0", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["outcome"], "bad_input");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .starts_with("--command: is required"),
        "{doc}"
    );
    w.assert_no_denials();
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_script_and_launches_nothing() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let job_id = unique("dry");
    let out = w
        .run_render(&[
            "--ami",
            &ami,
            "--job-id",
            &job_id,
            "--command",
            "render('it''s $(rm -rf /)')",
            "--output",
            "s3://any-bucket/x",
            "--dry-run",
            "--json",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["launch"]["ami"], ami.as_str());
    let script = doc["script"].as_str().unwrap();
    assert!(script.contains("docker run -d"), "{script}");
    assert!(
        script.contains("COMMAND=render(") && script.contains("rm -rf"),
        "{script}"
    );
    assert!(doc["user_data"].as_str().unwrap().contains("rtb-deadline"));
    assert!(
        w.instances_of(&job_id).await.is_empty(),
        "dry run launched something"
    );
    // A dry run may make no call at all: nothing to have been evaluated.
    w.scope().assert_no_denials();
}

async fn wait_terminated(w: &World, job_id: &str, limit: Duration) -> Vec<(String, String)> {
    let start = std::time::Instant::now();
    loop {
        let instances = w.instances_of(job_id).await;
        if !instances.is_empty() && instances.iter().all(|i| i.1 == "terminated") {
            return instances;
        }
        if start.elapsed() > limit {
            return instances;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn second_ctrl_c_exits_at_once_after_requesting_termination() {
    let job = ContainerJob::new("int2", "disp(['long render ' 'started']); pause(300);", &[]).await;
    let mut run = job.spawn();
    assert!(
        run.wait_for("long render started", Duration::from_secs(90))
            .is_some(),
        "job never started"
    );
    run.signal(libc::SIGINT);
    assert!(run
        .wait_for("press Ctrl-C again", Duration::from_secs(10))
        .is_some());
    // The terminal closing (SIGHUP) counts like another Ctrl-C.
    run.signal(libc::SIGHUP);
    let done = run.finish(Duration::from_secs(20));
    assert_eq!(done.code, Some(130), "{}", done.all());
    assert!(
        done.stderr()
            .contains("is terminating (not waiting for it)"),
        "{}",
        done.stderr()
    );
    let instances = wait_terminated(&job.w, &job.job_id, Duration::from_secs(30)).await;
    assert!(
        instances.iter().all(|i| i.1 == "terminated"),
        "{instances:?}"
    );
    job.w.assert_no_denials();
}

/// The client is killed outright (no chance to clean up): the instance's own deadline
/// (timeout + margin, armed on the instance) ends it anyway.
#[tokio::test]
async fn instance_ends_itself_at_its_deadline_when_the_client_is_killed() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let job_id = unique("orphan");
    let mut run = Watched::spawn(w.run_render(&[
        "--ami",
        &ami,
        "--job-id",
        &job_id,
        "--shell",
        "sleep 300",
        "--timeout",
        "3s",
        "--deadline-margin",
        "2s",
    ]));
    assert!(run
        .wait_for("running the shell command", Duration::from_secs(60))
        .is_some());
    run.signal(libc::SIGKILL);
    let _ = run.finish(Duration::from_secs(10));
    let instances = w.instances_of(&job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(
        instances[0].1, "running",
        "still running right after the client died"
    );
    let instances = wait_terminated(&w, &job_id, Duration::from_secs(30)).await;
    assert!(
        instances.iter().all(|i| i.1 == "terminated"),
        "the deadline did not end it: {instances:?}"
    );
    w.assert_no_denials();
}

/// Output to a closed pipe (`run-render --dry-run | head -c0`) is one line and exit 2, not
/// a panic; so is a duration that would overflow.
#[test]
fn closed_stdout_and_huge_durations_are_one_line_errors_not_panics() {
    let mut child = run_render(&[
        "--ami",
        "ami-0123456789abcdef0",
        "--command",
        "ver",
        "--dry-run",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run_render(&[
        "--ami",
        "ami-0123456789abcdef0",
        "--command",
        "ver",
        "--timeout",
        "10000y",
    ])
    .output()
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("run-render: --timeout: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An endpoint nobody answers at: one readable line naming what failed, no Debug dump.
#[test]
fn unreachable_aws_is_one_readable_line() {
    let out = run_render(&[
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--ami",
        "ami-0123456789abcdef0",
        "--command",
        "ver",
    ])
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .env("AWS_REGION", "us-east-1")
    .output()
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.contains("EC2 DescribeImages failed: no answer from AWS"),
        "{error}"
    );
    for debug in ["DispatchFailure", "ConnectorError", "source:", "{"] {
        assert!(!error.contains(debug), "{error}");
    }
}
