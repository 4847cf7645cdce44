//! One job from start to end: mount, copy in, run, copy out, record. Whatever happens to the
//! command (error, timeout, signal), the outputs, the log and the result record are uploaded.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use std::sync::atomic::{AtomicBool, Ordering};

use rtb_model::checkpoint::Interrupted;
use rtb_model::contract;
use rtb_model::exit::runner as exit;
use rtb_model::{
    Checkpoints, JobRecords, JobResult, Outcome, Resumed, Skipped, Timings, Transfer, RESULT_SCHEMA,
};
use tokio::sync::watch;

use crate::checkpoint::{self, Checkpointer};
use crate::compose;
use crate::logsink::{Log, LogSink, INTERPRETER_LOG};
use crate::mount;
use crate::notice;
use crate::process::{self, Ended, Stop};
use crate::settings::Settings;
use crate::transfer::{self, Transfers};

/// The newest spot notice, when notices are watched.
type Notices = Option<watch::Receiver<Option<Interrupted>>>;

/// How long the bucket check waits out answers that say "later": no answer, throttling, a
/// 5xx, or no credentials yet (a fresh instance's role credentials and network can take some
/// seconds to appear). A missing bucket or a refusal ends it at once.
pub const BUCKET_CHECK_PATIENCE: Duration = Duration::from_secs(60);

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
    check_reachable(s3, &named, BUCKET_CHECK_PATIENCE).await
}

/// HeadBucket each `(setting, bucket)`, trying again for up to `patience` while the answer
/// says "later" (see [`BUCKET_CHECK_PATIENCE`]); the first definite failure is the error.
pub async fn check_reachable(
    s3: &aws_sdk_s3::Client,
    named: &[(&str, &str)],
    patience: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    for &(setting, bucket) in named {
        let mut pause = Duration::from_millis(500);
        let mut waited = false;
        loop {
            let e = match s3.head_bucket().bucket(bucket).send().await {
                Ok(_) => break,
                Err(e) => e,
            };
            let cause = crate::transfer::S3Cause::from_sdk(&e);
            // HeadBucket's answers have no body: an error's status is all it says.
            let said = match (&cause.code, cause.status) {
                (None, Some(status)) => format!("S3 answered HTTP {status}"),
                _ => cause.to_string(),
            };
            let not_found = e.as_service_error().is_some_and(|se| se.is_not_found());
            let later = !not_found && (e.raw_response().is_none() || cause.is_transient());
            if later && started.elapsed() + pause < patience {
                if !waited {
                    eprintln!(
                        "rtb-job: {setting}: bucket '{bucket}' is not reachable yet ({said}); trying again for up to {} s",
                        patience.as_secs()
                    );
                    waited = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            let why = if not_found {
                "does not exist".to_string()
            } else {
                format!("is not reachable ({said})")
            };
            return Err(format!(
                "{setting}: bucket '{bucket}' {why}; check the name, the region and the instance role's S3 permissions"
            ));
        }
    }
    Ok(())
}

/// Run the job and return the exit code. `stop` says when SIGTERM or SIGINT came
/// ([`listen_for_stops`], set up before anything else: a signal is never lost between two
/// listeners).
pub async fn run(
    settings: Settings,
    s3: aws_sdk_s3::Client,
    stop: watch::Receiver<Option<Stop>>,
) -> i32 {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let sink = LogSink::start(
        settings.output_scratch.join(INTERPRETER_LOG),
        settings.records.clone().map(|r| (s3.clone(), r)),
        settings.log_every,
    );
    let log = sink.log();

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
    for e in &settings.emptied {
        if e.removed > 0 {
            log.info(format!(
                "{} {}: emptied ({} entr{} an earlier job on this instance left)",
                e.setting,
                e.dir.display(),
                e.removed,
                if e.removed == 1 { "y" } else { "ies" }
            ));
        }
        for k in &e.kept {
            log.info(format!(
                "{} {}: left {} alone (another file system is mounted there)",
                e.setting,
                e.dir.display(),
                k.display()
            ));
        }
    }
    let input_rate = Arc::new(OnceLock::new());
    spawn_stop_notice(stop.clone(), &settings, input_rate.clone(), log.clone());
    let notices: Notices = if settings.watch_notices {
        notice::Watcher {
            log: log.clone(),
            s3: s3.clone(),
            records: settings.records.clone(),
            job_id: settings.job_id.clone(),
            attempt: settings.attempt_number(),
            checkpoints: checkpoints_possible(&settings),
        }
        .spawn()
    } else {
        None
    };
    // Asked now, while the command runs: ready when the record is written.
    let instance_id = tokio::spawn(crate::host::instance_id());

    // Each phase runs as a task of its own: should one panic, the others still run and the
    // result record is still written.
    let mut state = match tokio::spawn(before_outputs(
        settings.clone(),
        s3.clone(),
        log.clone(),
        stop,
        input_rate,
        notices.clone(),
    ))
    .await
    {
        Ok(state) => state,
        Err(e) => State::broken(format!("the runner failed before the output copy: {e}")),
    };
    log.close_file().await;
    // The job's picture, from what the output copy takes, beside the copy.
    let picture = settings.records.clone().map(|records| {
        let (scratch, s3, log) = (settings.output_scratch.clone(), s3.clone(), log.clone());
        let opts = settings
            .output
            .as_ref()
            .map(|c| c.options.clone())
            .unwrap_or_default();
        tokio::spawn(
            async move { crate::thumbnail::record(&scratch, &opts, &s3, &records, &log).await },
        )
    });
    if let Some(copy) = settings.output.clone() {
        let t = Instant::now();
        let (scratch, upload_log) = (settings.output_scratch.clone(), log.clone());
        let transfers = Transfers::new(s3.clone());
        let uploaded = tokio::spawn(async move {
            upload_log.info(format!("copy {} to {}", scratch.display(), copy.bucket));
            let say = |line: String| upload_log.info(line);
            transfers
                .upload(&scratch, &copy.bucket, &copy.options, &say)
                .await
                .map_err(|e| format!("output copy failed: {e}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the output copy failed unexpectedly: {e}")));
        state.outputs(uploaded);
        state.timings.output_s = t.elapsed().as_secs_f64();
    }
    let picture = match picture {
        Some(task) => task.await.ok(),
        None => None,
    };
    state.timings.total_s = t0.elapsed().as_secs_f64();
    for e in &state.errors {
        log.info(format!("error: {e}"));
    }
    let mut code = state.code;
    log.info(format!(
        "job {} ended: {} (exit code {code}) in {:.1}s",
        settings.job_id,
        outcome_word(state.outcome),
        state.timings.total_s
    ));

    // The log is complete before the result record appears: a reader that sees the record
    // can read the log to its end.
    let stats = sink.close().await;
    let result = JobResult {
        schema: RESULT_SCHEMA,
        job_id: settings.job_id.clone(),
        outcome: state.outcome,
        exit_code: code,
        interpreter: settings.interpreter.name().to_string(),
        executable: settings.interpreter.executable.display().to_string(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        timings: state.timings,
        input: state.input,
        output: state.output,
        log_chunks: stats.chunks,
        log_lines: stats.lines,
        skipped: state.skipped,
        error: (!state.errors.is_empty()).then(|| state.errors.join("; ")),
        attempt: (settings.attempt > 1 || settings.attempts.is_some()).then_some(settings.attempt),
        resumed: state.resumed,
        checkpoints: state.checkpoints,
        notice: notices.and_then(|n| n.borrow().clone()),
        picture,
        instance_id: instance_id.await.ok().flatten(),
    };
    if let Some(records) = &settings.records {
        if let Err(e) = write_record(&s3, records, &result).await {
            eprintln!(
                "[rtb-job] cannot write the result record s3://{}/{}: {e}",
                records.bucket(),
                records.result_key(),
            );
            if code == 0 {
                code = exit::OUTPUT_FAILED;
            }
        }
    }
    code
}

/// How the job stands, phase after phase.
struct State {
    /// The exit code so far: the command's, or the runner's own when it failed.
    code: i32,
    outcome: Outcome,
    errors: Vec<String>,
    timings: Timings,
    input: Transfer,
    output: Transfer,
    skipped: Vec<Skipped>,
    /// What was restored from an earlier attempt's checkpoint.
    resumed: Option<Resumed>,
    checkpoints: Option<Checkpoints>,
}

impl State {
    fn new() -> State {
        State {
            code: 0,
            outcome: Outcome::Succeeded,
            errors: Vec::new(),
            timings: Timings::default(),
            input: Transfer::default(),
            output: Transfer::default(),
            skipped: Vec::new(),
            resumed: None,
            checkpoints: None,
        }
    }

    fn broken(error: String) -> State {
        State {
            code: exit::OUTPUT_FAILED,
            outcome: Outcome::RunnerError,
            errors: vec![error],
            ..State::new()
        }
    }

    /// Take in the output copy's result. A command that failed keeps its own code; one that
    /// succeeded becomes "incomplete" when any output was skipped, a runner error when the copy
    /// failed as a whole.
    fn outputs(&mut self, uploaded: Result<crate::transfer::Uploaded, String>) {
        match uploaded {
            Ok(up) => {
                self.output = up.copied;
                if !up.skipped.is_empty() {
                    let n = up.skipped.len();
                    self.errors.push(format!(
                        "{n} output file{} not uploaded (listed in the log and in result.json's skipped); all else was",
                        if n == 1 { " was" } else { "s were" }
                    ));
                    if self.code == 0 {
                        self.code = exit::OUTPUT_INCOMPLETE;
                        self.outcome = Outcome::Incomplete;
                    }
                }
                self.skipped = up.skipped;
            }
            Err(e) => {
                self.errors.push(e);
                if self.code == 0 {
                    self.code = exit::OUTPUT_FAILED;
                    self.outcome = Outcome::RunnerError;
                }
            }
        }
    }
}

/// Mount, copy the inputs (either failing skips the command), run the command, unmount.
async fn before_outputs(
    settings: Settings,
    s3: aws_sdk_s3::Client,
    log: Log,
    mut stop: watch::Receiver<Option<Stop>>,
    input_rate: Arc<OnceLock<f64>>,
    notices: Notices,
) -> State {
    let mut state = State::new();
    let mut failed = false;
    let mut mounted = None;
    if let Some(m) = &settings.mount {
        log.info(format!("mount {} at {}", m.bucket, m.point.display()));
        match mount::mount(m).await {
            Ok(done) => mounted = Some(done),
            Err(e) => {
                state.errors.push(e.to_string());
                (state.code, state.outcome, failed) =
                    (exit::INPUT_FAILED, Outcome::RunnerError, true);
            }
        }
    }
    if let (false, Some(copy)) = (failed, &settings.input) {
        let t = Instant::now();
        log.info(format!(
            "copy {} to {}",
            copy.bucket,
            settings.input_scratch.display()
        ));
        let say = |line: String| log.info(line);
        let transfers = Transfers::new(s3.clone());
        let copied = tokio::select! {
            r = transfers.download(&copy.bucket, &settings.input_scratch, &copy.options, &say) => Some(r),
            s = process::stop_requested(&mut stop) => {
                let Stop::Signal(n) = s;
                state.errors.push(format!("stopped by signal {n} while copying the input"));
                (state.code, state.outcome, failed) = (exit::SIGNAL_BASE + n, Outcome::Interrupted, true);
                None
            }
        };
        match copied {
            Some(Ok(t)) => state.input = t,
            Some(Err(e)) => {
                state.errors.push(format!(
                    "input copy failed, so the command did not run: {e}"
                ));
                (state.code, state.outcome, failed) =
                    (exit::INPUT_FAILED, Outcome::RunnerError, true);
            }
            None => {}
        }
        let secs = t.elapsed().as_secs_f64();
        state.timings.input_s = secs;
        // A rate from a few small objects says more about latency than about bandwidth.
        if state.input.bytes >= RATE_MIN_BYTES && secs > 0.0 {
            let _ = input_rate.set(state.input.bytes as f64 / secs);
        }
    }
    if !failed {
        let (c, o, e) = resume_and_run(&settings, &s3, &log, &mut stop, notices, &mut state).await;
        state.code = c;
        state.outcome = o;
        state.errors.extend(e);
    }
    if let Some(m) = mounted {
        if let Err(e) = m.unmount().await {
            log.info(e);
        }
    }
    state
}

/// Restore an earlier attempt's checkpoint (if asked), then run the command with checkpoints
/// beside it (if on). The command sees RTB_ATTEMPT, and RTB_RESUMED_FROM when files came back.
async fn resume_and_run(
    settings: &Settings,
    s3: &aws_sdk_s3::Client,
    log: &Log,
    stop: &mut watch::Receiver<Option<Stop>>,
    notices: Notices,
    state: &mut State,
) -> (i32, Outcome, Option<String>) {
    let attempt = settings.attempt_number();
    let mut env = vec![(contract::ATTEMPT.name, attempt.to_string())];
    let restored = match &settings.resume_from {
        Some(from) => {
            checkpoint::restore(
                s3,
                from,
                settings.records.as_ref(),
                &settings.output_scratch,
                log,
            )
            .await
        }
        None => None,
    };
    if let Some(r) = &restored {
        env.push((contract::RESUMED_FROM_ENV, r.from_attempt.to_string()));
        state.resumed = Some(Resumed {
            from_attempt: r.from_attempt,
            from: r.from.root().to_string(),
            files: r.saved.len() as u64,
            bytes: r.bytes,
            missed: r.missed,
            seconds: r.seconds,
        });
    }
    let mut checkpointer = match (&settings.records, &settings.output) {
        (Some(records), Some(output)) if checkpoints_possible(settings) => Some(Checkpointer::new(
            s3.clone(),
            records.clone(),
            settings.output_scratch.clone(),
            output.options.clone(),
            settings.job_id.clone(),
            attempt,
        )),
        _ => None,
    };
    let cancel = AtomicBool::new(false);
    if let (Some(cp), Some(r)) = (checkpointer.as_mut(), restored) {
        // This attempt's records list the restored files at once: should it be lost before
        // its first checkpoint, the next attempt still finds them.
        cp.seed(r.saved);
        cp.checkpoint(log, &cancel, true).await;
    }

    let t = Instant::now();
    let (done_tx, done_rx) = watch::channel(false);
    let command = async {
        let ended = run_command(settings, log, stop, &env).await;
        cancel.store(true, Ordering::Relaxed);
        let _ = done_tx.send(true);
        ended
    };
    let beside = async {
        if let Some(cp) = checkpointer.as_mut() {
            checkpoint::run_beside(
                cp,
                settings.checkpoint_every,
                notices,
                done_rx,
                &cancel,
                log,
            )
            .await;
        }
    };
    let (ended, ()) = tokio::join!(command, beside);
    state.timings.command_s = t.elapsed().as_secs_f64();
    state.checkpoints = checkpointer.map(|cp| cp.stats());
    ended
}

/// Checkpoints are made when asked for (every RTB_CHECKPOINT_EVERY, or on a watched notice)
/// and there is somewhere to keep them.
fn checkpoints_possible(settings: &Settings) -> bool {
    (settings.checkpoint_every.is_some() || settings.watch_notices)
        && settings.output.is_some()
        && settings.records.is_some()
}

/// An input copy smaller than this gives no rate for the stop notice's estimate.
const RATE_MIN_BYTES: u64 = 8 << 20;

async fn write_record(
    s3: &aws_sdk_s3::Client,
    records: &JobRecords,
    result: &JobResult,
) -> Result<(), String> {
    let body = result.to_json().into_bytes();
    crate::record::put_json(s3, records.bucket(), &records.result_key(), body).await
}

/// On the first stop signal, one line saying what the output copy will save and about how
/// long it takes, so that someone watching a stopped job's log knows it is working.
fn spawn_stop_notice(
    mut stop: watch::Receiver<Option<Stop>>,
    settings: &Settings,
    input_rate: Arc<OnceLock<f64>>,
    log: Log,
) {
    let scratch = settings.output_scratch.clone();
    let output = settings.output.clone();
    tokio::spawn(async move {
        let Stop::Signal(n) = process::stop_requested(&mut stop).await;
        let Some(copy) = output else {
            log.info(format!(
                "signal {n}: stopping; no OUTPUT_BUCKET, so nothing is saved"
            ));
            return;
        };
        let (dir, opts) = (scratch.clone(), copy.options.clone());
        let (files, bytes) = tokio::task::spawn_blocking(move || transfer::survey(&dir, &opts))
            .await
            .unwrap_or_default();
        let how_long = match input_rate.get() {
            Some(rate) => format!(
                "; at the input copy's {:.1} MiB/s that takes about {}",
                rate / (1 << 20) as f64,
                transfer::estimate(bytes, *rate)
            ),
            None => "; the upload's progress follows".to_string(),
        };
        log.info(format!(
            "signal {n}: stopping the command, then saving {files} file{} ({}) from {} to {}{how_long}",
            if files == 1 { "" } else { "s" },
            transfer::human_bytes(bytes),
            scratch.display(),
            copy.bucket
        ));
    });
}

/// Write the script, run the interpreter, turn how it ended into (code, outcome, errors).
async fn run_command(
    settings: &Settings,
    log: &Log,
    stop: &mut watch::Receiver<Option<Stop>>,
    extra_env: &[(&str, String)],
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
    env.extend(extra_env.iter().cloned());
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
            exit::SIGNAL_BASE + sig,
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
            exit::SIGNAL_BASE + n,
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
        Outcome::Incomplete => "incomplete (some outputs skipped)",
    }
}

/// SIGTERM (docker stop) and SIGINT (Ctrl-C) request a stop; the first one counts. Call it
/// first thing: as a container's PID 1 the runner ignores SIGTERM until it listens.
pub fn listen_for_stops() -> watch::Receiver<Option<Stop>> {
    let (tx, rx) = watch::channel(None);
    spawn_signal_listener(tx);
    rx
}

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
