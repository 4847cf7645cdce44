//! What a person sees while a batch runs. On a terminal, one indicatif view: the batch's line
//! (done / failed / running / queued, elapsed, ETA) over one line per running job (its phase
//! and last log line). Off a terminal, a plain line whenever the counts change. Each job's
//! whole log is in its file under --log-dir, not on the screen.
//!
//! indicatif draws only the lines that fit the terminal, oldest first: [`Screen`] hands out
//! that many places, and a job holding one has its log read more often (its last line is in
//! view); the others are read slowly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// The job lines the terminal has room for, as places jobs take and give back.
#[derive(Debug, Clone)]
pub struct Screen {
    free: Arc<AtomicUsize>,
}

impl Screen {
    pub fn with_rows(rows: usize) -> Screen {
        Screen {
            free: Arc::new(AtomicUsize::new(rows)),
        }
    }

    /// Take a place, if one is free.
    pub fn take(&self) -> Option<Place> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| Place {
                free: self.free.clone(),
            })
    }
}

/// A job's line in view; given back when dropped.
#[derive(Debug)]
pub struct Place {
    free: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.free.fetch_add(1, Ordering::AcqRel);
    }
}

/// The job lines that fit a terminal of `rows`: the batch's own line and one for notes above.
fn job_rows(rows: u16) -> usize {
    usize::from(rows).saturating_sub(2)
}

pub struct View {
    name: String,
    multi: Option<MultiProgress>,
    screen: Option<Screen>,
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
        let screen = multi
            .as_ref()
            .map(|_| Screen::with_rows(job_rows(console::Term::stderr().size().0)));
        View {
            name: name.to_string(),
            multi,
            screen,
            top,
            started: Instant::now(),
            last: Mutex::new(Counts::default()),
        }
    }

    pub fn multi(&self) -> Option<&MultiProgress> {
        self.multi.as_ref()
    }

    /// The places on the terminal, when there is one.
    pub fn screen(&self) -> Option<&Screen> {
        self.screen.as_ref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_as_many_as_the_rows_and_come_back() {
        let screen = Screen::with_rows(job_rows(4));
        let a = screen.take();
        let b = screen.take();
        assert!(a.is_some() && b.is_some());
        assert!(screen.take().is_none(), "a 4-row terminal shows 2 jobs");
        drop(a);
        assert!(screen.take().is_some());
        assert!(Screen::with_rows(job_rows(1)).take().is_none());
    }
}
