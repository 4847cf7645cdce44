//! The runner end to end: the real `rtb-job` binary, real GNU Octave, MiniStack's S3.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{client, get, list, put, unique_bucket};
use rtb_model::{JobResult, Outcome};

/// A job's folders and the command that runs it.
struct Job {
    dir: tempfile::TempDir,
    cmd: Command,
}

impl Job {
    fn new(command: &str) -> Job {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtb-job"));
        // Start from a clean slate: only the contract variables this test sets.
        for var in rtb_model::contract::ALL {
            cmd.env_remove(var.name);
        }
        cmd.env("MATLAB_EXECUTABLE", "octave-cli")
            .env("COMMAND", command)
            .env("INPUT_SCRATCH", dir.path().join("in"))
            .env("OUTPUT_SCRATCH", dir.path().join("out"))
            .env("MOUNT_SCRATCH", dir.path().join("mnt"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        Job { dir, cmd }
    }

    fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Job {
        self.cmd.env(k, v);
        self
    }

    /// Run the runner without root's power to read any folder (as `nobody` when the tests
    /// run as root), so that a folder with mode 000 is unreadable to it, as it would be to
    /// a job's own user.
    fn unprivileged(mut self) -> Job {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: getuid(2) has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return self;
        }
        for dir in [self.dir.path().to_path_buf(), self.output()] {
            std::fs::create_dir_all(&dir).expect("create folder");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .expect("open folder");
        }
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env("HOME", self.dir.path()).stdin(Stdio::null());
        self.cmd = cmd;
        self
    }

    fn input(&self) -> PathBuf {
        self.dir.path().join("in")
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn run(mut self) -> (Output, Job) {
        let out = self.cmd.output().expect("run rtb-job");
        (out, self)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn result_of(bucket: &str, prefix: &str, job_id: &str) -> JobResult {
    let c = client().await;
    let bytes = get(
        &c,
        bucket,
        &format!("{prefix}_rtb-job/{job_id}/result.json"),
    )
    .await;
    serde_json::from_slice(&bytes).expect("result record parses")
}

/// All log chunks of a job, concatenated in order.
async fn chunks(bucket: &str, prefix: &str, job_id: &str) -> String {
    let c = client().await;
    let mut all = String::new();
    for (key, _) in list(&c, bucket, &format!("{prefix}_rtb-job/{job_id}/log/")).await {
        all.push_str(&text(&get(&c, bucket, &key).await));
    }
    all
}

#[tokio::test]
async fn job_reads_inputs_runs_octave_and_uploads_every_byte() {
    let c = client().await;
    let inb = unique_bucket(&c, "job-in").await;
    let outb = unique_bucket(&c, "job-out").await;
    put(&c, &inb, "scene/params.txt", "7 6").await;
    put(&c, &inb, "scene/deep/nested dir/ü.txt", "unicode").await;

    let job = Job::new(
        "p = load(fullfile(getenv('INPUT_SCRATCH'), 'params.txt')); \
         disp(sprintf('product=%d', prod(p))); \
         mkdir(fullfile(getenv('OUTPUT_SCRATCH'), 'img')); \
         fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'img', 'render 1.txt'), 'w'); \
         fprintf(fid, 'pixels:%d\\n', prod(p)); fclose(fid); \
         copyfile(fullfile(getenv('INPUT_SCRATCH'), 'deep', 'nested dir', 'ü.txt'), getenv('OUTPUT_SCRATCH'));",
    )
    .env("INPUT_BUCKET", format!("s3://{inb}/scene"))
    .env("OUTPUT_BUCKET", format!("s3://{outb}/run-1"))
    .env("RTB_JOB_ID", "j-ok");
    // The runner exports nothing itself: give Octave the scratch paths through the environment.
    let (inp, outp) = (job.input(), job.output());
    let job = job.env("INPUT_SCRATCH", &inp).env("OUTPUT_SCRATCH", &outp);
    let (out, job) = job.run();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("product=42"), "{stdout}");

    let keys: Vec<String> = list(&c, &outb, "run-1/")
        .await
        .into_iter()
        .map(|k| k.0)
        .collect();
    for key in ["run-1/img/render 1.txt", "run-1/ü.txt", "run-1/matlab.log"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with("run-1/rtb-job-") && k.ends_with(".mat")),
        "workspace snapshot missing: {keys:?}"
    );
    // Every uploaded output file matches the local one byte for byte.
    for (rel, bytes) in common::read_tree(&job.output()) {
        assert_eq!(
            get(&c, &outb, &format!("run-1/{rel}")).await,
            bytes,
            "{rel}"
        );
    }
    assert_eq!(
        get(&c, &outb, "run-1/img/render 1.txt").await,
        b"pixels:42\n"
    );
    assert!(text(&get(&c, &outb, "run-1/matlab.log").await).contains("product=42"));

    let r = result_of(&outb, "run-1/", "j-ok").await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.interpreter, "octave");
    assert_eq!((r.input.files, r.input.bytes), (2, 3 + 7));
    assert!(r.output.files >= 4, "{r:?}");
    assert!(r.log_chunks >= 1 && r.log_lines >= 3, "{r:?}");
    let log = chunks(&outb, "run-1/", "j-ok").await;
    assert!(
        log.contains("product=42") && log.contains("[rtb-job] job j-ok ended: succeeded"),
        "{log}"
    );
}

#[tokio::test]
async fn failing_command_exits_non_zero_and_still_uploads() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-fail").await;
    let job = Job::new("disp('before'); error('boom'); disp('never')")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/f"))
        .env("RTB_JOB_ID", "j-fail");
    let outp = job.output();
    let job = job.env("COMMAND", format!(
        "fid = fopen('{}/partial.txt', 'w'); fprintf(fid, 'half'); fclose(fid); disp('before'); error('boom'); disp('never')",
        outp.display()
    ));
    let (out, _job) = job.run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l == "before"), "{stdout}");
    assert!(!stdout.lines().any(|l| l == "never"), "{stdout}");
    assert!(stdout.contains("the command failed: boom"), "{stdout}");

    assert_eq!(get(&c, &outb, "f/partial.txt").await, b"half");
    let log = text(&get(&c, &outb, "f/matlab.log").await);
    assert!(log.contains("boom"), "{log}");
    let keys = list(&c, &outb, "f/").await;
    assert!(
        keys.iter().any(|(k, _)| k.ends_with(".mat")),
        "snapshot saved on failure: {keys:?}"
    );
    let r = result_of(&outb, "f/", "j-fail").await;
    assert_eq!((r.outcome, r.exit_code), (Outcome::Failed, 1));
    assert_eq!(r.error.as_deref(), Some("the command failed: boom"));
}

#[tokio::test]
async fn syntax_error_in_command_is_a_failure_not_a_hang() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-syntax").await;
    let (out, _job) = Job::new("x = [1 2; disp('unbalanced'")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/s"))
        .env("RTB_JOB_ID", "j-syntax")
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let keys = list(&c, &outb, "s/").await;
    assert!(keys.iter().any(|(k, _)| k.ends_with(".mat")), "{keys:?}");
}

#[tokio::test]
async fn empty_input_prefix_copies_nothing_and_runs() {
    let c = client().await;
    let inb = unique_bucket(&c, "job-empty").await;
    let (out, job) = Job::new("disp(1)")
        .env("INPUT_BUCKET", format!("s3://{inb}/nothing-here"))
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(job.input())
            .map(|d| d.count())
            .unwrap_or(99),
        0
    );
}

#[tokio::test]
async fn log_chunks_appear_in_s3_while_the_job_runs() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-live").await;
    let mut job = Job::new("disp('first line'); pause(6); disp('last line')")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/live"))
        .env("RTB_JOB_ID", "j-live");
    let mut child = job.cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let start = Instant::now();
    let mut seen_at = None;
    while start.elapsed() < Duration::from_secs(15) {
        if chunks(&outb, "live/", "j-live")
            .await
            .contains("first line")
        {
            seen_at = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    let status = child.wait().expect("wait");
    let seen_at = seen_at.expect("the first line reached S3");
    assert!(
        still_running,
        "the line must be visible before the job ends"
    );
    assert!(status.success());
    // Octave starts in ~0.3 s; the chunk follows within the flush period.
    assert!(
        seen_at < Duration::from_secs(5),
        "first line took {seen_at:?}"
    );
    let log = chunks(&outb, "live/", "j-live").await;
    let (a, b) = (
        log.find("first line").unwrap(),
        log.find("last line").unwrap(),
    );
    assert!(a < b, "chunks in order:\n{log}");
}

/// SIGTERM (docker stop) mid-run: the interpreter is stopped, outputs and the record saved.
#[tokio::test]
async fn sigterm_mid_run_saves_outputs_and_exits_143() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-term").await;
    let job = Job::new("");
    let outp = job.output();
    let mut job = job
        .env("COMMAND", format!(
            "fid = fopen('{}/early.txt', 'w'); fprintf(fid, 'saved'); fclose(fid); disp('working'); pause(60);",
            outp.display()
        ))
        .env("OUTPUT_BUCKET", format!("s3://{outb}/t"))
        .env("RTB_JOB_ID", "j-term");
    let child = job.cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let start = Instant::now();
    while !outp.join("early.txt").exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    // One line says what will be saved, so someone watching knows the stop is working.
    let stdout = text(&out.stdout);
    let notice: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("[rtb-job] signal 15: stopping the command, then saving"))
        .collect();
    assert_eq!(notice.len(), 1, "{stdout}");
    assert!(
        notice[0].contains("saving 2 files (") && notice[0].contains(&format!("s3://{outb}/t")),
        "{stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "stopped promptly"
    );
    assert_eq!(get(&c, &outb, "t/early.txt").await, b"saved");
    let r = result_of(&outb, "t/", "j-term").await;
    assert_eq!((r.outcome, r.exit_code), (Outcome::Interrupted, 143));
}

#[tokio::test]
async fn timeout_stops_the_command_and_exits_124() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-timeout").await;
    let start = Instant::now();
    let (out, _job) = Job::new("disp('start'); pause(60); disp('never')")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/o"))
        .env("RTB_JOB_ID", "j-timeout")
        .env("RTB_TIMEOUT", "2s")
        .run();
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stdout));
    assert!(start.elapsed() < Duration::from_secs(20));
    let r = result_of(&outb, "o/", "j-timeout").await;
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert!(list(&c, &outb, "o/matlab.log").await.len() == 1);
}

#[tokio::test]
async fn bad_settings_fail_fast_with_one_line_naming_the_setting() {
    let c = client().await;
    let outb = unique_bucket(&c, "job-bad").await;
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("INPUT_BUCKET", "my-bucket/x".into())],
            "INPUT_BUCKET: ",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", format!("s3://{outb}/x")),
                ("OUTPUT_FLAGS", "--recursive --acl public-read".into()),
            ],
            "OUTPUT_FLAGS: ",
        ),
        (
            vec![("OUTPUT_BUCKET", "s3://no-such-bucket-rtb-test/x".into())],
            "OUTPUT_BUCKET: bucket 'no-such-bucket-rtb-test' does not exist",
        ),
        (
            vec![("MATLAB_EXECUTABLE", "python3".into())],
            "MATLAB_EXECUTABLE: unknown interpreter",
        ),
        (
            vec![("OUTPUT_SCRATCH", "/proc/nope/out".into())],
            "OUTPUT_SCRATCH: cannot create",
        ),
        (vec![("RTB_TIMEOUT", "forever".into())], "RTB_TIMEOUT: "),
        (
            vec![("MOUNT_BUCKET", format!("s3://{outb}/m"))],
            "MOUNT_BUCKET: mount-s3",
        ),
    ];
    for (env, expected) in cases {
        let mut job = Job::new("disp('must not run')");
        for (k, v) in &env {
            job = job.env(k, v);
        }
        let (out, _job) = job.run();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("rtb-job: {expected}")),
            "{env:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!text(&out.stdout).contains("must not run"));
    }
    assert!(
        list(&c, &outb, "").await.is_empty(),
        "nothing written for bad settings"
    );
}

/// The generated script holds COMMAND only as a string literal: whatever the text, the
/// script runs to its end and saves the workspace, and a value written by the command comes
/// back exactly.
mod composition {
    use super::*;
    use proptest::prelude::*;

    fn snapshot_saved(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".mat"))
            })
            .unwrap_or(false)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn any_command_text_still_reaches_the_snapshot(command in "[ -~\n]{1,60}") {
            prop_assume!(!command.trim().is_empty());
            let (out, job) = Job::new(&command).run();
            let code = out.status.code();
            prop_assert!(code == Some(0) || code == Some(1), "code {:?}: {}", code, text(&out.stderr));
            prop_assert!(snapshot_saved(&job.output()), "no snapshot for {:?}", command);
        }

        #[test]
        fn strings_round_trip_through_octave(value in "[ -~\n\t'\"]{0,40}") {
            let job = Job::new("");
            let file = job.output().join("value.txt");
            let code = format!(
                "fid = fopen({}, 'w'); fprintf(fid, '%s', {}); fclose(fid);",
                rtb_job::compose::matlab_string(&file.display().to_string()),
                rtb_job::compose::matlab_string(&value)
            );
            let (out, _job) = job.env("COMMAND", code).env("STARTUP", "").run();
            prop_assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
            prop_assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), value);
        }
    }

    #[test]
    fn startup_and_toolboxes_with_quotes_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let startup = dir.path().join("it's startup.m");
        std::fs::write(&startup, "disp('startup ran');\n").unwrap();
        std::fs::write(
            dir.path().join("tbUse.m"),
            "function tbUse(x)\n  disp(['tbUse got ' class(x) ' ' num2str(numel(x))]);\nend\n",
        )
        .unwrap();
        let (out, _job) = Job::new("disp('command ran')")
            .env("STARTUP", &startup)
            .env("TOOLBOXES", "{'isetbio', 'it''s'}")
            .env("OCTAVE_PATH", dir.path())
            .run();
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        let at = |text: &str| stdout.lines().position(|l| l == text).expect(text);
        let (a, b, c) = (at("startup ran"), at("tbUse got cell 2"), at("command ran"));
        assert!(a < b && b < c, "{stdout}");
    }
}

/// MOUNT_BUCKET with a stand-in `mount-s3` (the real one needs FUSE and AWS): the runner calls
/// it with the bucket, folder, prefix and endpoint, runs the command with the mount in place,
/// and unmounts afterwards, even when the command fails.
#[tokio::test]
async fn mount_bucket_mounts_runs_and_unmounts() {
    let c = client().await;
    let bucket = unique_bucket(&c, "job-mount").await;
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls.txt");
    let script = |name: &str, body: &str| {
        let p = bin.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    // "Mount" by writing a file into the folder; record every call with its arguments.
    script(
        "mount-s3",
        &format!(
            "echo \"mount-s3 $*\" >> {c}\necho mounted > \"$2/from-bucket.txt\"",
            c = calls.display()
        ),
    );
    script(
        "fusermount3",
        &format!("echo \"fusermount3 $*\" >> {c}", c = calls.display()),
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let job = Job::new("disp(fileread(fullfile(getenv('MOUNT_SCRATCH'), 'from-bucket.txt'))); error('after reading')")
        .env("PATH", &path)
        .env("MOUNT_BUCKET", format!("s3://{bucket}/scenes/big"))
        .env("MOUNT_FLAGS", "--read-only --cache /tmp/c");
    let mnt = job.dir.path().join("mnt");
    let (out, _job) = job.run();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l == "mounted"),
        "the command read the mount: {stdout}"
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    assert_eq!(
        lines[0],
        format!("mount-s3 {bucket} {} --prefix scenes/big/ --endpoint-url {endpoint} --force-path-style --region us-east-1 --read-only --cache /tmp/c", mnt.display())
    );
    assert_eq!(lines[1], format!("fusermount3 -u {}", mnt.display()));
}

/// A file name that is not UTF-8 and a folder the runner cannot read: the job uploads every
/// other output, lists those two in `skipped` (log and result.json), and exits 6 (incomplete)
/// although the command succeeded.
#[tokio::test]
async fn one_bad_output_does_not_stop_the_upload() {
    use std::os::unix::ffi::OsStrExt;
    let c = client().await;
    let outb = unique_bucket(&c, "job-skip").await;
    let job = Job::new("disp('rendered')")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/r"))
        .env("RTB_JOB_ID", "j-skip")
        .unprivileged();
    let out = job.output();
    std::fs::create_dir_all(out.join("locked")).unwrap();
    std::fs::write(out.join("locked/inside.png"), b"hidden").unwrap();
    std::fs::write(out.join("a.png"), b"first").unwrap();
    std::fs::write(out.join("z.png"), b"last").unwrap();
    let bad = out.join(std::ffi::OsStr::from_bytes(b"bad-\xff.png"));
    std::fs::write(&bad, b"latin-1 name").unwrap();
    std::fs::set_permissions(
        out.join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let (run, job) = job.run();
    let stdout = text(&run.stdout);
    // Let the temp dir clean up.
    std::fs::set_permissions(
        job.output().join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(
        run.status.code(),
        Some(rtb_model::exit::runner::OUTPUT_INCOMPLETE),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&run.stderr)
    );
    let keys: Vec<String> = list(&c, &outb, "r/")
        .await
        .into_iter()
        .map(|k| k.0)
        .collect();
    for key in ["r/a.png", "r/z.png", "r/matlab.log"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.contains("inside")), "{keys:?}");
    let r = result_of(&outb, "r/", "j-skip").await;
    assert_eq!(r.outcome, Outcome::Incomplete);
    assert_eq!(r.exit_code, rtb_model::exit::runner::OUTPUT_INCOMPLETE);
    let skipped: Vec<(String, String)> = r
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.clone()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].0.ends_with("bad-\u{FFFD}.png") && skipped[0].1.contains("not valid UTF-8"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].0.ends_with("/locked") && skipped[1].1.contains("cannot read this folder"),
        "{skipped:?}"
    );
    assert!(r
        .error
        .unwrap_or_default()
        .contains("2 output files were not uploaded"));
    let log = chunks(&outb, "r/", "j-skip").await;
    assert!(
        log.contains("upload: 2 files NOT uploaded") && log.contains("ended: incomplete"),
        "{log}"
    );
}

/// When the command itself failed, its exit code stays, and what could not be uploaded is
/// still listed.
#[tokio::test]
async fn failed_command_keeps_its_code_and_lists_skipped_outputs() {
    use std::os::unix::ffi::OsStrExt;
    let c = client().await;
    let outb = unique_bucket(&c, "job-skip-fail").await;
    let job = Job::new("error('render failed')")
        .env("OUTPUT_BUCKET", format!("s3://{outb}/f"))
        .env("RTB_JOB_ID", "j-skip-fail");
    std::fs::create_dir_all(job.output()).unwrap();
    std::fs::write(job.output().join("ok.txt"), b"ok").unwrap();
    std::fs::write(
        job.output().join(std::ffi::OsStr::from_bytes(b"\xfe.txt")),
        b"x",
    )
    .unwrap();
    let (run, _job) = job.run();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    assert_eq!(get(&c, &outb, "f/ok.txt").await, b"ok");
    let r = result_of(&outb, "f/", "j-skip-fail").await;
    assert_eq!((r.outcome, r.exit_code), (Outcome::Failed, 1));
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("render failed") && error.contains("1 output file was not uploaded"),
        "{error}"
    );
}
