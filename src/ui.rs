//! What a person sees: a spinner with the current phase on a terminal, plain lines otherwise,
//! all on stderr; the job's log lines on stdout (stderr with --json, whose stdout is the JSON).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Ui {
    bar: Option<ProgressBar>,
    logs_to_stderr: bool,
    phase_started: std::sync::Mutex<Instant>,
    /// One job of a batch: its lines carry its id, its log goes to its file.
    batch_job: Option<BatchJobSink>,
}

/// Where a batch job's lines go: its log to a file (the original kept one per job), its
/// phase and last log line onto its line of the batch's view.
struct BatchJobSink {
    prefix: String,
    /// The terminal's places, and the one this job's line holds (see batch/view.rs).
    screen: Option<crate::batch::view::Screen>,
    place: std::sync::Mutex<Option<crate::batch::view::Place>>,
    log: std::sync::Mutex<Option<std::fs::File>>,
    phase: std::sync::Mutex<String>,
}

impl Ui {
    pub fn new(json: bool) -> Ui {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Ui {
            bar,
            logs_to_stderr: json,
            phase_started: std::sync::Mutex::new(Instant::now()),
            batch_job: None,
        }
    }

    /// One job of a batch: a line of its own in `multi` (on a terminal), plain prefixed lines
    /// otherwise; its log lines go to `log` (appended: a retry's log follows the first's).
    pub fn batch_job(
        multi: Option<&indicatif::MultiProgress>,
        screen: Option<&crate::batch::view::Screen>,
        job_id: &str,
        log: Option<std::fs::File>,
    ) -> Ui {
        let bar = multi.map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "  {spinner} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(job_id.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Ui {
            bar,
            logs_to_stderr: true,
            phase_started: std::sync::Mutex::new(Instant::now()),
            batch_job: Some(BatchJobSink {
                prefix: format!("[{job_id}] "),
                screen: screen.cloned(),
                place: std::sync::Mutex::new(None),
                log: std::sync::Mutex::new(log),
                phase: std::sync::Mutex::new(String::new()),
            }),
        }
    }

    /// Whether this batch job's line is in view on the terminal (taking a place when one is
    /// free): its log is then worth reading often. A single run's log is always on screen.
    pub fn on_screen(&self) -> bool {
        let Some(b) = &self.batch_job else {
            return true;
        };
        let Some(screen) = &b.screen else {
            return false;
        };
        let mut place = b.place.lock().unwrap_or_else(|p| p.into_inner());
        if place.is_none() {
            *place = screen.take();
        }
        place.is_some()
    }

    fn prefix(&self) -> &str {
        self.batch_job.as_ref().map_or("", |b| b.prefix.as_str())
    }

    /// No spinner, the job's log on stdout: for commands that only print (`logs`).
    pub fn plain() -> Ui {
        Ui {
            bar: None,
            logs_to_stderr: false,
            phase_started: std::sync::Mutex::new(Instant::now()),
            batch_job: None,
        }
    }

    /// A new phase begins ("launching i-... (m6i.large)").
    pub fn phase(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if let Ok(mut t) = self.phase_started.lock() {
            *t = Instant::now();
        }
        if let Some(b) = &self.batch_job {
            if let Ok(mut p) = b.phase.lock() {
                p.clone_from(&msg);
            }
        }
        match &self.bar {
            Some(bar) => {
                bar.reset_elapsed();
                bar.set_message(msg);
            }
            None => stderr_line(&format!("run-render: {}{msg}", self.prefix())),
        }
    }

    /// A phase ended; the line stays on screen.
    pub fn done(&self, msg: impl Into<String>) {
        let took = self
            .phase_started
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let line = format!(
            "run-render: {}{} ({:.1}s)",
            self.prefix(),
            msg.into(),
            took.as_secs_f64()
        );
        if self.batch_job.is_some() && self.bar.is_some() {
            // A batch's view keeps one line per job; its steps are in the job's log file.
            self.to_log_file(&line);
            return;
        }
        self.line_stderr(&line);
    }

    /// A warning or note, always shown.
    pub fn note(&self, msg: impl Into<String>) {
        let line = format!("run-render: {}{}", self.prefix(), msg.into());
        self.to_log_file(&line);
        self.line_stderr(&line);
    }

    fn to_log_file(&self, line: &str) {
        if let Some(b) = &self.batch_job {
            if let Ok(mut f) = b.log.lock() {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    }

    /// One line of the job's own log. Control characters are shown escaped: a job's output
    /// must not be able to move the cursor, retitle or recolour the user's terminal.
    pub fn log_line(&self, line: &str) {
        if let Some(b) = &self.batch_job {
            // The whole line to the job's file; its view line shows the latest.
            self.to_log_file(line);
            if let Some(bar) = &self.bar {
                let phase = b.phase.lock().map(|p| p.clone()).unwrap_or_default();
                let shown: String = printable(line).chars().take(120).collect();
                bar.set_message(format!("{phase} | {shown}"));
            }
            return;
        }
        let line = &*printable(line);
        let print = || {
            if self.logs_to_stderr {
                stderr_line(line);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        // Its line is gone: the place goes to a job still running.
        if let Some(b) = &self.batch_job {
            b.place.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    fn line_stderr(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => stderr_line(line),
        }
    }
}

/// `line` with every control character (C0, DEL, C1) and every bidirectional-text override
/// written as a visible escape (`\x1b`, `\u{202e}`); tabs are kept.
pub fn printable(line: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !line.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A line on stderr. A write error is ignored rather than a panic (as `eprintln!` would):
/// after the terminal closes (SIGHUP) the client still has an instance to terminate.
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_sequences_are_shown_not_obeyed() {
        let table = [
            ("plain text, ü and 漢", "plain text, ü and 漢"),
            ("tab\tkept", "tab\tkept"),
            (
                "\x1b[2J\x1b]0;pwned\x07red",
                "\\x1b[2J\\x1b]0;pwned\\x07red",
            ),
            ("cr\rback", "cr\\x0dback"),
            ("c1 \u{9b}31m", "c1 \\x9b31m"),
            ("bidi \u{202e}txt.exe", "bidi \\u{202e}txt.exe"),
            ("del\x7f", "del\\x7f"),
        ];
        for (raw, shown) in table {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
    }
}
