//! What a person sees while a batch runs. On a terminal, one indicatif view: the batch's line
//! (done / failed / running / queued, elapsed, ETA) over one line per running job (its phase
//! and last log line). Off a terminal, a plain line whenever the counts change. Each job's
//! whole log is in its file under --log-dir, not on the screen.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub instances: usize,
}

pub struct View {
    name: String,
    multi: Option<MultiProgress>,
    top: Option<ProgressBar>,
    started: Instant,
    last: Mutex<Counts>,
}

impl View {
    pub fn new(name: &str, total: usize) -> View {
        let (multi, top) = if std::io::stderr().is_terminal() {
            let multi = MultiProgress::new();
            let top = multi.add(ProgressBar::new(total as u64));
            top.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:24}] {pos}/{len} {msg} {elapsed} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            top.set_prefix(format!("batch {name}"));
            top.enable_steady_tick(Duration::from_millis(500));
            (Some(multi), Some(top))
        } else {
            (None, None)
        };
        View {
            name: name.to_string(),
            multi,
            top,
            started: Instant::now(),
            last: Mutex::new(Counts::default()),
        }
    }

    pub fn multi(&self) -> Option<&MultiProgress> {
        self.multi.as_ref()
    }

    pub fn update(&self, c: &Counts) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == *c {
            return;
        }
        *last = c.clone();
        let msg = format!(
            "{} succeeded, {} failed, {} running, {} queued, {} instance{}",
            c.succeeded,
            c.failed,
            c.running,
            c.queued,
            c.instances,
            if c.instances == 1 { "" } else { "s" }
        );
        match &self.top {
            Some(top) => {
                top.set_position((c.succeeded + c.failed) as u64);
                top.set_message(msg);
            }
            None => crate::ui::stderr_line(&format!(
                "run-render: batch {}: {msg} [{}s]",
                self.name,
                self.started.elapsed().as_secs()
            )),
        }
    }

    /// A line above the view.
    pub fn note(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => crate::ui::stderr_line(line),
        }
    }

    pub fn finish(&self) {
        if let Some(top) = &self.top {
            top.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}
