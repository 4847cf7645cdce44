//! One job from start to end: mount, copy in, run, copy out, record. Whatever happens to the
//! command (error, timeout, signal), the outputs, the log and the result record are uploaded.

use std::time::{Instant, SystemTime};

use rtb_model::{JobResult, Outcome, Timings, Transfer, RESULT_SCHEMA};
use tokio::sync::watch;

use crate::compose;
use crate::logsink::{Log, LogSink};
use crate::mount;
use crate::process::{self, Ended, Stop};
use crate::settings::Settings;
use crate::transfer::Transfers;

/// The runner's own exit codes (documented in `rtb-job --help`).
pub mod exit {
    pub const BAD_SETTINGS: i32 = 2;
    pub const INPUT_FAILED: i32 = 3;
    pub const OUTPUT_FAILED: i32 = 4;
    pub const NO_INTERPRETER: i32 = 5;
    pub const TIMED_OUT: i32 = 124;
}

/// Check that every bucket the job names exists and is reachable, before any work starts.
pub async fn check_buckets(settings: &Settings, s3: &aws_sdk_s3::Client) -> Result<(), String> {
    let mut named = Vec::new();
    if let Some(c) = &settings.input {
        named.push(("INPUT_BUCKET", c.bucket.bucket()));
    }
    if let Some(c) = &settings.output {
        named.push(("OUTPUT_BUCKET", c.bucket.bucket()));
    }
    if let Some(m) = &settings.mount {
        named.push(("MOUNT_BUCKET", m.bucket.bucket()));
    }
    if let Some(r) = &settings.records {
        named.push(("LOG_BUCKET", r.bucket()));
    }
    for (setting, bucket) in named {
        if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
            let why = match e.as_service_error() {
                Some(se) if se.is_not_found() => "does not exist".to_string(),
                _ => format!(
                    "is not reachable ({})",
                    crate::transfer::S3Cause::from_sdk(&e)
                ),
            };
            return Err(format!(
                "{setting}: bucket '{bucket}' {why}; check the name, the region and the instance role's S3 permissions"
            ));
        }
    }
    Ok(())
}

/// Run the job and return the exit code.
pub async fn run(settings: Settings, s3: aws_sdk_s3::Client) -> i32 {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let sink = LogSink::start(
        settings.output_scratch.join("matlab.log"),
        settings.records.clone().map(|r| (s3.clone(), r)),
    );
    let log = sink.log();
    let (stop_tx, mut stop) = watch::channel(None);
    spawn_signal_listener(stop_tx);

    log.info(format!(
        "job {}: {} ({}), rtb-job {}",
        settings.job_id,
        settings.interpreter.name(),
        settings.interpreter.executable.display(),
        env!("CARGO_PKG_VERSION")
    ));
    if let Some(r) = &settings.records {
        log.info(format!("log and result record: {}", r.root()));
    }

    let transfers = Transfers::new(s3.clone());
    let say = |line: String| log.info(line);
    let mut timings = Timings::default();
    let mut input = Transfer::default();
    let mut errors: Vec<String> = Vec::new();
    let mut code: Option<i32> = None;
    let mut outcome = Outcome::Succeeded;

    // Mount, then copy the inputs; either failing skips the command.
    let mut mounted = None;
    if let Some(m) = &settings.mount {
        log.info(format!("mount {} at {}", m.bucket, m.point.display()));
        match mount::mount(m).await {
            Ok(done) => mounted = Some(done),
            Err(e) => {
                errors.push(e.to_string());
                code = Some(exit::INPUT_FAILED);
                outcome = Outcome::RunnerError;
            }
        }
    }
    if let (None, Some(copy)) = (code, &settings.input) {
        let t = Instant::now();
        log.info(format!(
            "copy {} to {}",
            copy.bucket,
            settings.input_scratch.display()
        ));
        let copied = tokio::select! {
            r = transfers.download(&copy.bucket, &settings.input_scratch, &copy.options, &say) => Some(r),
            s = process::stop_requested(&mut stop) => {
                let Stop::Signal(n) = s;
                errors.push(format!("stopped by signal {n} while copying the input"));
                code = Some(128 + n);
                outcome = Outcome::Interrupted;
                None
            }
        };
        match copied {
            Some(Ok(t)) => input = t,
            Some(Err(e)) => {
                errors.push(format!("input copy failed: {e}"));
                code = Some(exit::INPUT_FAILED);
                outcome = Outcome::RunnerError;
            }
            None => {}
        }
        timings.input_s = t.elapsed().as_secs_f64();
    }

    // The command.
    if code.is_none() {
        let t = Instant::now();
        let (c, o, e) = run_command(&settings, &log, &mut stop).await;
        code = Some(c);
        outcome = o;
        errors.extend(e);
        timings.command_s = t.elapsed().as_secs_f64();
    }
    if let Some(m) = mounted {
        if let Err(e) = m.unmount().await {
            log.info(e);
        }
    }
    log.close_file().await;

    // The outputs, whatever happened above.
    let mut output = Transfer::default();
    let mut code = code.unwrap_or(exit::INPUT_FAILED);
    if let Some(copy) = &settings.output {
        let t = Instant::now();
        log.info(format!(
            "copy {} to {}",
            settings.output_scratch.display(),
            copy.bucket
        ));
        match transfers
            .upload(&settings.output_scratch, &copy.bucket, &copy.options, &say)
            .await
        {
            Ok(t) => output = t,
            Err(e) => {
                errors.push(format!("output copy failed: {e}"));
                if code == 0 {
                    code = exit::OUTPUT_FAILED;
                    outcome = Outcome::RunnerError;
                }
            }
        }
        timings.output_s = t.elapsed().as_secs_f64();
    }
    timings.total_s = t0.elapsed().as_secs_f64();
    for e in &errors {
        log.info(format!("error: {e}"));
    }
    log.info(format!(
        "job {} ended: {} (exit code {code}) in {:.1}s",
        settings.job_id,
        outcome_word(outcome),
        timings.total_s
    ));

    // The log is complete before the result record appears: a reader that sees the record
    // can read the log to its end.
    let stats = sink.close().await;
    let result = JobResult {
        schema: RESULT_SCHEMA,
        job_id: settings.job_id.clone(),
        outcome,
        exit_code: code,
        interpreter: settings.interpreter.name().to_string(),
        executable: settings.interpreter.executable.display().to_string(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        timings,
        input,
        output,
        log_chunks: stats.chunks,
        log_lines: stats.lines,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    };
    if let Some(records) = &settings.records {
        let put = s3
            .put_object()
            .bucket(records.bucket())
            .key(records.result_key())
            .content_type("application/json")
            .body(result.to_json().into_bytes().into())
            .send()
            .await;
        if let Err(e) = put {
            eprintln!(
                "[rtb-job] cannot write the result record s3://{}/{}: {}",
                records.bucket(),
                records.result_key(),
                crate::transfer::S3Cause::from_sdk(&e)
            );
            if code == 0 {
                code = exit::OUTPUT_FAILED;
            }
        }
    }
    code
}

/// Write the script, run the interpreter, turn how it ended into (code, outcome, errors).
async fn run_command(
    settings: &Settings,
    log: &Log,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> (i32, Outcome, Option<String>) {
    let octave = matches!(settings.interpreter.kind, compose::Kind::Octave);
    let dir = std::env::temp_dir().join(format!("rtb-job-{}", std::process::id()));
    let error_file = dir.join("error.txt");
    let script = compose::script(&compose::Job {
        startup: settings.startup.as_deref(),
        toolboxes: &settings.toolboxes,
        command: &settings.command,
        output_scratch: &settings.output_scratch,
        error_file: &error_file,
        octave,
    });
    let path = dir.join("rtb_job_main.m");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, script)) {
        return (
            exit::NO_INTERPRETER,
            Outcome::RunnerError,
            Some(format!(
                "cannot write the job script {}: {e}",
                path.display()
            )),
        );
    }
    log.info(format!("run: {}", summary(&settings.command)));
    // The job's code can find its folders whether they were set or defaulted.
    let mut env = vec![
        (
            "INPUT_SCRATCH",
            settings.input_scratch.display().to_string(),
        ),
        (
            "OUTPUT_SCRATCH",
            settings.output_scratch.display().to_string(),
        ),
        ("RTB_JOB_ID", settings.job_id.clone()),
    ];
    if let Some(m) = &settings.mount {
        env.push(("MOUNT_SCRATCH", m.point.display().to_string()));
    }
    let ended = process::run(
        &settings.interpreter,
        &path,
        &env,
        log,
        settings.timeout,
        stop,
    )
    .await;
    // The command's own error message, when the script caught one.
    let command_error = std::fs::read_to_string(&error_file).ok();
    let _ = std::fs::remove_dir_all(&dir);
    match ended {
        Ok(Ended::Exited(0)) => (0, Outcome::Succeeded, None),
        Ok(Ended::Exited(c)) => (
            c,
            Outcome::Failed,
            Some(match command_error {
                Some(message) => format!("the command failed: {}", message.trim()),
                None => format!("{} exited with code {c}", settings.interpreter.name()),
            }),
        ),
        Ok(Ended::Killed(sig)) => (
            128 + sig,
            Outcome::Failed,
            Some(format!(
                "{} was killed by signal {sig} (out of memory?)",
                settings.interpreter.name()
            )),
        ),
        Ok(Ended::TimedOut(t)) => (
            exit::TIMED_OUT,
            Outcome::TimedOut,
            Some(format!(
                "the command ran longer than its timeout of {}",
                humantime::format_duration(t)
            )),
        ),
        Ok(Ended::Stopped(Stop::Signal(n))) => (
            128 + n,
            Outcome::Interrupted,
            Some(format!("stopped by signal {n}")),
        ),
        Err(e) => (
            exit::NO_INTERPRETER,
            Outcome::RunnerError,
            Some(format!(
                "cannot start {}: {e}",
                settings.interpreter.executable.display()
            )),
        ),
    }
}

/// The command's first line, shortened, for the log (the whole text is in the script).
fn summary(command: &str) -> String {
    const MAX: usize = 160;
    let lines = command.trim().lines().count();
    let first = command.trim().lines().next().unwrap_or_default();
    let mut s: String = first.chars().take(MAX).collect();
    if first.chars().count() > MAX || lines > 1 {
        s.push_str(" …");
    }
    if lines > 1 {
        s.push_str(&format!(" ({lines} lines)"));
    }
    s
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timed out",
        Outcome::Interrupted => "interrupted",
        Outcome::RunnerError => "runner error",
    }
}

/// SIGTERM (docker stop) and SIGINT (Ctrl-C) request a stop; the first one counts.
fn spawn_signal_listener(tx: watch::Sender<Option<Stop>>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("[rtb-job] cannot listen for signals; docker stop will not save outputs");
            return;
        };
        let n = tokio::select! {
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        };
        let _ = tx.send(Some(Stop::Signal(n)));
        // Later signals are ignored: the outputs are being saved.
        loop {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
    });
}
