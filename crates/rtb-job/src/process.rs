//! Running the interpreter: its output streamed line by line into the log, stopped (with its
//! whole process group) on a timeout or a signal.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::compose::{Interpreter, Kind};
use crate::logsink::Log;

/// How long the interpreter gets to exit after SIGTERM before it is killed. Short, because
/// `docker stop` only waits so long and the outputs still have to be uploaded after it.
const GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the output pipes to drain after the interpreter exited: a process it
/// left running in the background may hold them open forever.
const DRAIN: Duration = Duration::from_secs(2);

/// Why the runner is asked to stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal(i32),
}

/// How the interpreter run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited by itself with this code.
    Exited(i32),
    /// It was killed by a signal nobody here sent (e.g. the OOM killer).
    Killed(i32),
    TimedOut(Duration),
    Stopped(Stop),
}

/// Run `interpreter` on the generated script until it ends, times out or is stopped.
pub async fn run(
    interpreter: &Interpreter,
    script: &Path,
    env: &[(&str, String)],
    log: &Log,
    timeout: Option<Duration>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> std::io::Result<Ended> {
    let mut child = Command::new(&interpreter.executable)
        .args(interpreter.args(script))
        .envs(interpreter.env())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop reaches everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child.id().map(|id| id as i32);

    let noise = match interpreter.kind {
        Kind::Octave => OCTAVE_EXIT_NOISE,
        Kind::Matlab { .. } => "",
    };
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward_lines(out, log.clone(), noise)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward_lines(err, log.clone(), noise)));
    }

    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stopped = stop_requested(stop);

    let ended = tokio::select! {
        status = child.wait() => status_to_ended(status?),
        _ = deadline => {
            log.info(format!(
                "the command ran longer than its timeout ({}); stopping it",
                humantime::format_duration(timeout.unwrap_or_default())
            ));
            terminate(&mut child, pgid).await;
            Ended::TimedOut(timeout.unwrap_or_default())
        }
        s = stopped => {
            let Stop::Signal(n) = s;
            log.info(format!("received signal {n}; stopping the command"));
            terminate(&mut child, pgid).await;
            Ended::Stopped(s)
        }
    };

    for r in readers {
        let _ = tokio::time::timeout(DRAIN, r).await;
    }
    Ok(ended)
}

/// Resolves when a stop has been requested (at once if it already was).
pub async fn stop_requested(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(s) = *stop.borrow_and_update() {
            return s;
        }
        if stop.changed().await.is_err() {
            // Nobody can ask any more: never.
            std::future::pending::<()>().await;
        }
    }
}

fn status_to_ended(status: std::process::ExitStatus) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Exited(code),
        (None, Some(sig)) => Ended::Killed(sig),
        (None, None) => Ended::Exited(-1),
    }
}

/// SIGTERM to the whole group, then SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child, pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        // SAFETY: kill(2) with a negative pid signals a process group we created; no memory
        // is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        if let Some(pgid) = pgid {
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = child.wait().await;
    }
}

/// Octave 7 prints this at exit after a caught error; it is not an error of the job, and an
/// "error:" line in the log would send people looking for one.
const OCTAVE_EXIT_NOISE: &str =
    "error: ignoring const execution_exception& while preparing to exit";

/// Forward each line (bytes up to `\n`, lossily decoded; a last unterminated line too),
/// except the interpreter's known exit noise.
async fn forward_lines(stream: impl AsyncRead + Unpin, log: Log, noise: &'static str) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_end_matches(['\n', '\r']);
                if noise.is_empty() || text != noise {
                    log.interpreter(text.to_string());
                }
            }
        }
    }
}
