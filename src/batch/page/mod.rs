//! The batch's page: one self-contained HTML file (inline CSS, thumbnails as data URIs, no
//! external fonts or scripts) that shows how a batch went: a header with the counts, wall
//! time and cost; a timeline with one row per instance and one bar per attempt; a histogram of
//! job durations; and one card per job with its picture, row values, outcome, attempts, cost,
//! output and, for a failed job, MATLAB's error and the log's last lines.
//!
//! - this module: the page's plain model ([`Page`], [`Card`], [`Attempt`]), pure;
//! - [`timeline`]: the timeline and the histogram as geometry, then SVG;
//! - [`html`]: the model as HTML;
//! - [`collect`]: the model from a batch's pool, or from the registry and the jobs' records in
//!   S3; [`fetch`]: the thumbnails and log tails it embeds, always from S3;
//! - [`store`]: where the page goes (beside the logs, and next to the outputs in S3);
//! - [`publish`]: writing it while the batch runs and at its end.
//!
//! (`crate::report` is the result of one `run`, not this page.)

pub mod collect;
pub mod fetch;
pub mod html;
pub mod publish;
pub mod store;
pub mod timeline;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How often the batch rewrites its live page (and the page asks the browser to reload).
pub const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Lines of a failed job's log shown on its card.
pub const LOG_TAIL_LINES: usize = 20;
/// A log line on a card is cut after this many characters (the page stays small).
pub const LOG_LINE_MAX: usize = 120;
/// A row's value on a card is cut after this many characters (a long command is in the
/// batch file).
pub const ROW_VALUE_MAX: usize = 240;
/// An error on a card is cut after this many characters.
pub const ERROR_MAX: usize = 400;
/// A thumbnail larger than this is not embedded (the runner keeps its own under
/// [`rtb_model::layout::THUMBNAIL_BUDGET`]).
pub const THUMBNAIL_EMBED_MAX: usize = 16 * 1024;
/// The page of a 100-job batch stays under this (tested).
pub const PAGE_BUDGET_100: usize = 2_000_000;

/// A batch, as its page shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    pub batch: String,
    /// `ec2` or `aws-batch`.
    pub engine: String,
    /// When the page was made.
    #[serde(with = "rfc3339")]
    pub generated_at: SystemTime,
    /// When the batch started (its first attempt, else the page's earliest fact).
    #[serde(default, with = "rfc3339_opt")]
    pub started_at: Option<SystemTime>,
    /// The batch's wall time, once it is over.
    #[serde(default)]
    pub wall_s: Option<f64>,
    /// The batch still runs: the page asks the browser to reload it.
    #[serde(default)]
    pub live: bool,
    /// The batch's cost, when its prices are known.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Where the page's copy is in S3.
    #[serde(default)]
    pub s3_url: Option<String>,
    pub jobs: Vec<Card>,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            batch: String::new(),
            engine: String::new(),
            generated_at: SystemTime::UNIX_EPOCH,
            started_at: None,
            wall_s: None,
            live: false,
            cost_usd: None,
            s3_url: None,
            jobs: Vec::new(),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Succeeded,
    /// Succeeded in an earlier run (`--resume` left it alone).
    SucceededBefore,
    Failed,
    Running,
    Queued,
    NotRun,
}

impl State {
    /// The CSS class (and the filter's name).
    pub fn class(self) -> &'static str {
        match self {
            State::Succeeded | State::SucceededBefore => "succeeded",
            State::Failed => "failed",
            State::Running => "running",
            State::Queued => "queued",
            State::NotRun => "not-run",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, State::Running | State::Queued)
    }
}

/// One job's card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub job_id: String,
    /// Its row's values, column by column.
    #[serde(default)]
    pub row: Vec<(String, String)>,
    pub state: State,
    /// How it ended (or stands), in words: "failed (exit 1)".
    pub outcome: String,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub output: Option<String>,
    /// The records folder of its newest attempt (thumbnail, log, result).
    #[serde(default)]
    pub records: Option<String>,
    /// What the runner found of its picture.
    #[serde(default)]
    pub picture: Option<rtb_model::Picture>,
    /// The thumbnail's PNG, fetched from the records (not kept in `report.json`).
    #[serde(skip)]
    pub thumbnail: Option<Vec<u8>>,
    /// MATLAB's error (or why the job failed).
    #[serde(default)]
    pub error: Option<String>,
    /// The log's last lines, for a failed job (fetched, not kept).
    #[serde(skip)]
    pub log_tail: Vec<String>,
}

impl Card {
    pub fn new(job_id: &str, state: State, outcome: &str) -> Card {
        Card {
            job_id: job_id.to_string(),
            row: Vec::new(),
            state,
            outcome: outcome.to_string(),
            duration_s: None,
            attempts: Vec::new(),
            cost_usd: None,
            output: None,
            records: None,
            picture: None,
            thumbnail: None,
            error: None,
            log_tail: Vec::new(),
        }
    }

    /// A job that succeeded, yet whose picture the runner flagged (no image, empty, no
    /// pixels, unreadable).
    pub fn flagged(&self) -> Option<rtb_model::PictureFlag> {
        matches!(self.state, State::Succeeded | State::SucceededBefore)
            .then(|| self.picture.as_ref().and_then(|p| p.flag))
            .flatten()
    }
}

/// How an attempt ended, for its bar's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Succeeded,
    Failed,
    /// Ended and tried again (a lost instance, no capacity...).
    Retried,
    Running,
}

impl Ending {
    pub fn class(self) -> &'static str {
        match self {
            Ending::Succeeded => "ok",
            Ending::Failed => "bad",
            Ending::Retried => "retried",
            Ending::Running => "live",
        }
    }
}

/// One attempt at a job, as the timeline draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub n: u32,
    /// The instance it ran on, when known.
    #[serde(default)]
    pub instance: Option<String>,
    /// When it began (its instance's launch, when it launched one); None when not known
    /// (the attempt is counted on its card, not drawn).
    #[serde(default, with = "rfc3339_opt")]
    pub start: Option<SystemTime>,
    /// Of which the launch and boot, before the job itself started.
    #[serde(default)]
    pub boot_s: f64,
    /// When it ended; None while it runs.
    #[serde(default, with = "rfc3339_opt")]
    pub end: Option<SystemTime>,
    pub ending: Ending,
    /// What it came to, in words ("instance lost; retried").
    #[serde(default)]
    pub note: String,
}

/// Counts for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub not_run: usize,
    pub flagged: usize,
    pub attempts: usize,
}

impl Page {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.jobs.len(),
            ..Counts::default()
        };
        for j in &self.jobs {
            match j.state {
                State::Succeeded | State::SucceededBefore => c.succeeded += 1,
                State::Failed => c.failed += 1,
                State::Running => c.running += 1,
                State::Queued => c.queued += 1,
                State::NotRun => c.not_run += 1,
            }
            if j.flagged().is_some() {
                c.flagged += 1;
            }
            c.attempts += j.attempts.len();
        }
        c
    }

    /// The batch's cost: its own figure, else the sum of the jobs' when every job that ran
    /// has one.
    pub fn cost(&self) -> Option<f64> {
        if self.cost_usd.is_some() {
            return self.cost_usd;
        }
        let ran: Vec<&Card> = self
            .jobs
            .iter()
            .filter(|j| !j.attempts.is_empty())
            .collect();
        if ran.is_empty() {
            return None;
        }
        ran.iter().map(|j| j.cost_usd).sum()
    }
}

/// Cut `s` to at most `max` characters, saying so.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// RFC 3339 times (milliseconds) in `report.json`.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&humantime::format_rfc3339_millis(*t).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_rfc3339_weak(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_and_cost() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let attempt = Attempt {
            n: 1,
            instance: Some("i-1".into()),
            start: Some(t),
            boot_s: 1.0,
            end: Some(t + Duration::from_secs(5)),
            ending: Ending::Succeeded,
            note: String::new(),
        };
        let mut ok = Card::new("a", State::Succeeded, "succeeded");
        ok.attempts.push(attempt.clone());
        ok.cost_usd = Some(0.25);
        let mut flagged = ok.clone();
        flagged.job_id = "b".into();
        flagged.picture = Some(rtb_model::Picture {
            flag: Some(rtb_model::PictureFlag::NoImage),
            ..Default::default()
        });
        let mut failed = ok.clone();
        failed.job_id = "c".into();
        failed.state = State::Failed;
        // A failed job's missing image is no news: not flagged.
        failed.picture = flagged.picture.clone();
        let queued = Card::new("d", State::Queued, "queued");
        let mut page = Page {
            batch: "b".into(),
            jobs: vec![ok, flagged, failed, queued],
            ..Page::default()
        };
        let c = page.counts();
        assert_eq!(
            (
                c.total,
                c.succeeded,
                c.failed,
                c.queued,
                c.flagged,
                c.attempts
            ),
            (4, 2, 1, 1, 1, 3)
        );
        assert_eq!(page.cost(), Some(0.75));
        page.jobs[2].cost_usd = None;
        assert_eq!(page.cost(), None, "one unknown cost makes the sum unknown");
        page.cost_usd = Some(1.5);
        assert_eq!(page.cost(), Some(1.5));
    }

    #[test]
    fn the_model_round_trips_without_the_fetched_parts() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let mut card = Card::new("a", State::Running, "running");
        card.thumbnail = Some(vec![1, 2, 3]);
        card.log_tail = vec!["x".into()];
        card.attempts.push(Attempt {
            n: 1,
            instance: None,
            start: Some(t),
            boot_s: 0.0,
            end: None,
            ending: Ending::Running,
            note: String::new(),
        });
        let page = Page {
            batch: "b".into(),
            generated_at: t,
            started_at: Some(t),
            jobs: vec![card],
            ..Page::default()
        };
        let text = serde_json::to_string(&page).unwrap();
        assert!(text.contains("2027-01-15T08:00:00.123Z"), "{text}");
        let back: Page = serde_json::from_str(&text).unwrap();
        assert_eq!(back.generated_at, t);
        assert_eq!(back.jobs[0].attempts, page.jobs[0].attempts);
        assert!(back.jobs[0].thumbnail.is_none() && back.jobs[0].log_tail.is_empty());
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ééééé", 2), "é…");
    }
}
