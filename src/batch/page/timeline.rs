//! The page's two charts, drawn by the program (no chart library in the browser): the
//! timeline, one row per instance and one bar per attempt coloured by how it ended (so idle
//! gaps, boots and retries show at a glance), and a histogram of job durations. Geometry
//! first, as plain numbers (table-tested), then SVG.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{html::escape, Attempt};

/// The timeline's width in SVG units (it scales with the page).
pub const WIDTH: f64 = 960.0;
/// Room on the left for the instance ids.
pub const LABEL_W: f64 = 150.0;
const RIGHT_PAD: f64 = 12.0;
/// Room on top for the time axis.
pub const TOP: f64 = 22.0;
pub const BAR_H: f64 = 14.0;
const LANE_GAP: f64 = 3.0;
const ROW_GAP: f64 = 8.0;
const BOTTOM: f64 = 6.0;
/// A bar is never thinner than this, so a 1-second job in a 3-hour batch still shows.
pub const MIN_BAR_W: f64 = 2.0;
/// Ticks on the time axis at most.
const MAX_TICKS: f64 = 8.0;
/// Tick steps, in seconds, from which the axis takes the first that fits.
const STEPS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    10_800.0, 21_600.0, 43_200.0, 86_400.0, 172_800.0, 604_800.0,
];
/// The row of attempts whose instance is not known.
pub const UNKNOWN_ROW: &str = "(instance unknown)";

/// An attempt to draw, with its job and its start.
#[derive(Debug, Clone)]
pub struct Span<'a> {
    pub job_id: &'a str,
    pub start: SystemTime,
    pub attempt: &'a Attempt,
}

impl<'a> Span<'a> {
    /// The attempt to draw, when its start is known.
    pub fn of(job_id: &'a str, attempt: &'a Attempt) -> Option<Span<'a>> {
        Some(Span {
            job_id,
            start: attempt.start?,
            attempt,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub y: f64,
    pub h: f64,
    /// The instance's line, from its first attempt's start to its last attempt's end.
    pub x0: f64,
    pub x1: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    /// The CSS class of its ending (`ok`, `bad`, `retried`, `live`).
    pub class: &'static str,
    pub job_id: String,
    pub title: String,
    /// The launch and boot before the job started: (x, w), drawn lighter.
    pub boot: Option<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub width: f64,
    pub height: f64,
    pub rows: Vec<Row>,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
}

fn secs(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .map(|d| d.as_secs_f64())
        .unwrap_or_else(|e| -e.duration().as_secs_f64())
}

/// Lay the attempts out: rows by instance in the order they were first used (the attempts
/// whose instance is unknown last, in a row of their own), and inside a row as many lanes as
/// attempts overlap there (jobs sharing an instance). A running attempt ends at `now`.
pub fn layout(spans: &[Span<'_>], now: SystemTime) -> Geometry {
    let end_of = |s: &Span<'_>| s.attempt.end.unwrap_or(now).max(s.start);
    let Some(t0) = spans.iter().map(|s| s.start).min() else {
        return Geometry {
            width: WIDTH,
            height: TOP + BOTTOM,
            rows: Vec::new(),
            bars: Vec::new(),
            ticks: Vec::new(),
        };
    };
    let t1 = spans.iter().map(end_of).max().unwrap_or(t0);
    let span = secs(t0, t1).max(1.0);
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let x = |t: SystemTime| LABEL_W + secs(t0, t) / span * plot_w;

    // Rows, in order of first use; the unknown row last.
    let mut keys: Vec<(Option<&str>, SystemTime)> = Vec::new();
    for s in spans {
        let key = s.attempt.instance.as_deref();
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some((_, first)) => *first = (*first).min(s.start),
            None => keys.push((key, s.start)),
        }
    }
    keys.sort_by(|a, b| {
        a.0.is_none()
            .cmp(&b.0.is_none())
            .then(a.1.cmp(&b.1))
            .then(a.0.cmp(&b.0))
    });

    let mut geo = Geometry {
        width: WIDTH,
        height: 0.0,
        rows: Vec::new(),
        bars: Vec::new(),
        ticks: ticks(span, plot_w),
    };
    let mut y = TOP;
    for (key, _) in keys {
        let mut mine: Vec<&Span<'_>> = spans
            .iter()
            .filter(|s| s.attempt.instance.as_deref() == key)
            .collect();
        mine.sort_by(|a, b| a.start.cmp(&b.start).then(a.job_id.cmp(b.job_id)));
        // Greedy lanes: each attempt in the first lane free by its start.
        let mut lanes: Vec<SystemTime> = Vec::new();
        let mut placed = Vec::new();
        for s in mine.iter() {
            let lane = match lanes.iter().position(|free| *free <= s.start) {
                Some(l) => l,
                None => {
                    lanes.push(s.start);
                    lanes.len() - 1
                }
            };
            lanes[lane] = end_of(s);
            placed.push((lane, *s));
        }
        let n = lanes.len().max(1) as f64;
        let h = n * BAR_H + (n - 1.0) * LANE_GAP;
        let first = mine.iter().map(|s| s.start).min().unwrap_or(t0);
        let last = mine.iter().map(|s| end_of(s)).max().unwrap_or(t0);
        geo.rows.push(Row {
            label: key.unwrap_or(UNKNOWN_ROW).to_string(),
            y,
            h,
            x0: x(first),
            x1: x(last),
        });
        for (lane, s) in placed {
            let a = s.attempt;
            let start = x(s.start);
            let end = x(end_of(s));
            let run_from = (start + a.boot_s.max(0.0) / span * plot_w).min(end);
            let boot = (run_from > start).then_some((start, run_from - start));
            let w = (end - run_from).max(MIN_BAR_W);
            let took = secs(s.start, end_of(s));
            geo.bars.push(Bar {
                x: run_from,
                y: y + lane as f64 * (BAR_H + LANE_GAP),
                w,
                class: a.ending.class(),
                job_id: s.job_id.to_string(),
                title: format!(
                    "{} attempt {}: {}{} ({}{})",
                    s.job_id,
                    a.n,
                    if a.end.is_none() { "running" } else { "" },
                    a.note,
                    crate::cmd::short_duration(std::time::Duration::from_secs_f64(took.max(0.0))),
                    if a.boot_s > 0.0 {
                        format!(", of which {:.0}s launch and boot", a.boot_s)
                    } else {
                        String::new()
                    },
                ),
                boot,
            });
        }
        y += h + ROW_GAP;
    }
    geo.height = y - ROW_GAP + BOTTOM;
    geo
}

/// Ticks every `step` seconds, `step` the first of [`STEPS`] that gives at most
/// [`MAX_TICKS`] intervals.
fn ticks(span: f64, plot_w: f64) -> Vec<Tick> {
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= MAX_TICKS)
        .unwrap_or(span);
    let n = (span / step).floor() as usize;
    (0..=n)
        .map(|k| {
            let t = k as f64 * step;
            Tick {
                x: LABEL_W + t / span * plot_w,
                label: axis_label(t),
            }
        })
        .collect()
}

/// `0`, `45s`, `2m`, `1m30s`, `3h`, `2h30m`, `1d`.
pub fn axis_label(t: f64) -> String {
    let s = t.round() as u64;
    match s {
        0 => "0".into(),
        1..=59 => format!("{s}s"),
        60..=3599 if s % 60 == 0 => format!("{}m", s / 60),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 if s % 3600 == 0 => format!("{}h", s / 3600),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The timeline as SVG: `<rect class="bar ...">` per attempt (with its `<title>`),
/// `<rect class="boot">` before it, a line per instance.
pub fn svg(g: &Geometry) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="timeline" viewBox="0 0 {w:.0} {h:.0}" width="100%" role="img" aria-label="timeline: one row per instance, one bar per attempt">"#,
        w = g.width,
        h = g.height
    );
    for t in &g.ticks {
        let _ = write!(
            o,
            r#"<line class="tick" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}"/><text class="axis" x="{x:.1}" y="{ty:.1}">{label}</text>"#,
            x = t.x,
            top = TOP - 4.0,
            bottom = g.height,
            ty = TOP - 8.0,
            label = escape(&t.label)
        );
    }
    for r in &g.rows {
        let mid = r.y + r.h / 2.0;
        let _ = write!(
            o,
            r#"<text class="instance" x="4" y="{ty:.1}">{label}</text><line class="alive" x1="{x0:.1}" y1="{mid:.1}" x2="{x1:.1}" y2="{mid:.1}"/>"#,
            ty = mid + 4.0,
            label = escape(&r.label),
            x0 = r.x0,
            x1 = r.x1,
        );
    }
    for b in &g.bars {
        if let Some((bx, bw)) = b.boot {
            let _ = write!(
                o,
                r#"<rect class="boot" x="{bx:.1}" y="{y:.1}" width="{bw:.1}" height="{h:.1}"/>"#,
                y = b.y,
                h = BAR_H
            );
        }
        let _ = write!(
            o,
            r#"<rect class="bar {class}" data-job="{job}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"><title>{title}</title></rect>"#,
            class = b.class,
            job = escape(&b.job_id),
            x = b.x,
            y = b.y,
            w = b.w,
            h = BAR_H,
            title = escape(&b.title)
        );
    }
    o.push_str("</svg>");
    o
}

/// One bar of the histogram: jobs whose duration is in `[from_s, to_s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub from_s: f64,
    pub to_s: f64,
    pub count: usize,
}

/// Job durations in at most `max_bins` bins of a round width (one of the axis steps), from
/// a multiple of that width.
pub fn histogram(durations: &[f64], max_bins: usize) -> Vec<Bin> {
    let ds: Vec<f64> = durations
        .iter()
        .copied()
        .filter(|d| d.is_finite() && *d >= 0.0)
        .collect();
    let (Some(lo), Some(hi)) = (
        ds.iter().copied().reduce(f64::min),
        ds.iter().copied().reduce(f64::max),
    ) else {
        return Vec::new();
    };
    let max_bins = max_bins.max(1) as f64;
    let width = STEPS
        .iter()
        .copied()
        .find(|w| ((hi / w).floor() - (lo / w).floor() + 1.0) <= max_bins)
        .unwrap_or((hi - lo).max(1.0));
    let first = (lo / width).floor();
    let n = ((hi / width).floor() - first) as usize + 1;
    let mut bins: Vec<Bin> = (0..n)
        .map(|k| Bin {
            from_s: (first + k as f64) * width,
            to_s: (first + k as f64 + 1.0) * width,
            count: 0,
        })
        .collect();
    for d in ds {
        let k = (((d / width).floor() - first) as usize).min(n - 1);
        bins[k].count += 1;
    }
    bins
}

/// The histogram as SVG.
pub fn histogram_svg(bins: &[Bin]) -> String {
    const W: f64 = 480.0;
    const H: f64 = 120.0;
    const AXIS: f64 = 18.0;
    const GAP: f64 = 2.0;
    let mut o = format!(
        r#"<svg class="histogram" viewBox="0 0 {W:.0} {H:.0}" width="100%" role="img" aria-label="job durations">"#
    );
    let most = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let bw = W / bins.len().max(1) as f64;
    for (k, b) in bins.iter().enumerate() {
        let h = (H - AXIS - 12.0) * b.count as f64 / most;
        let x = k as f64 * bw;
        let _ = write!(
            o,
            r#"<rect class="hbar" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"><title>{n} job{s}: {from} to {to}</title></rect>"#,
            y = H - AXIS - h,
            w = (bw - GAP).max(1.0),
            n = b.count,
            s = if b.count == 1 { "" } else { "s" },
            from = axis_label(b.from_s),
            to = axis_label(b.to_s),
        );
        if b.count > 0 {
            let _ = write!(
                o,
                r#"<text class="count" x="{cx:.1}" y="{cy:.1}">{n}</text>"#,
                cx = x + bw / 2.0,
                cy = H - AXIS - h - 2.0,
                n = b.count
            );
        }
        // Each bin's start under its left edge; every other one when they are many.
        if bins.len() <= 8 || k % 2 == 0 {
            let _ = write!(
                o,
                r#"<text class="from" x="{x:.1}" y="{ty:.1}">{label}</text>"#,
                ty = H - 4.0,
                label = axis_label(b.from_s)
            );
        }
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::super::Ending;
    use super::*;
    use std::time::Duration;

    fn at(s: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_secs_f64(s)
    }

    fn attempt(
        n: u32,
        instance: Option<&str>,
        start: f64,
        boot: f64,
        end: Option<f64>,
        ending: Ending,
    ) -> Attempt {
        Attempt {
            n,
            instance: instance.map(str::to_string),
            start: Some(at(start)),
            boot_s: boot,
            end: end.map(at),
            ending,
            note: String::new(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// Two instances over 100 s (so 1 s = 7.98 units of the 798-unit plot): i-a boots for
    /// 10 s and runs j1, then j3 after an idle gap; i-b runs j2, whose instance is lost and
    /// retried on i-c, where two jobs share the instance for a while; one attempt's instance
    /// is unknown.
    #[test]
    fn the_timeline_has_a_row_per_instance_and_a_bar_per_attempt() {
        use Ending::*;
        let attempts = [
            (
                "j1",
                attempt(1, Some("i-a"), 0.0, 10.0, Some(40.0), Succeeded),
            ),
            ("j3", attempt(1, Some("i-a"), 50.0, 0.0, Some(70.0), Failed)),
            ("j2", attempt(1, Some("i-b"), 5.0, 8.0, Some(30.0), Retried)),
            (
                "j2",
                attempt(2, Some("i-c"), 32.0, 6.0, Some(100.0), Succeeded),
            ),
            ("j4", attempt(1, Some("i-c"), 60.0, 0.0, None, Running)),
            ("j5", attempt(1, None, 20.0, 0.0, Some(25.0), Failed)),
        ];
        let spans: Vec<Span<'_>> = attempts
            .iter()
            .filter_map(|(j, a)| Span::of(j, a))
            .collect();
        let g = layout(&spans, at(90.0));
        let unit = (WIDTH - LABEL_W - RIGHT_PAD) / 100.0;
        let x = |t: f64| LABEL_W + t * unit;

        let labels: Vec<&str> = g.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["i-a", "i-b", "i-c", UNKNOWN_ROW]);
        assert_eq!(g.bars.len(), attempts.len(), "one bar per attempt");

        // Rows stack down; i-c has two lanes (j2's retry and j4 overlap).
        let heights: Vec<f64> = g.rows.iter().map(|r| r.h).collect();
        assert_eq!(heights, [BAR_H, BAR_H, 2.0 * BAR_H + LANE_GAP, BAR_H]);
        assert!(close(g.rows[0].y, TOP));
        assert!(close(g.rows[1].y, TOP + BAR_H + ROW_GAP));
        assert!(close(g.rows[3].y, g.rows[2].y + g.rows[2].h + ROW_GAP));
        assert!(close(g.height, g.rows[3].y + BAR_H + BOTTOM));

        // j1: boot 0-10 s, then its run 10-40 s; the instance's line spans 0-70 s, so the
        // idle gap 40-50 s shows as line without bar.
        let j1 = &g.bars[0];
        assert_eq!((j1.job_id.as_str(), j1.class), ("j1", "ok"));
        let (bx, bw) = j1.boot.unwrap();
        assert!(close(bx, x(0.0)) && close(bw, 10.0 * unit));
        assert!(close(j1.x, x(10.0)) && close(j1.w, 30.0 * unit));
        assert!(close(g.rows[0].x0, x(0.0)) && close(g.rows[0].x1, x(70.0)));
        let j3 = &g.bars[1];
        assert!(j3.boot.is_none() && close(j3.x, x(50.0)) && j3.class == "bad");
        assert!(close(j3.y, j1.y), "same lane: they do not overlap");

        // The retry: red-orange on i-b, then green on i-c.
        assert_eq!(g.bars[2].class, "retried");
        assert_eq!((g.bars[3].job_id.as_str(), g.bars[3].class), ("j2", "ok"));
        // j4 is running: it ends at "now" (90 s), in i-c's second lane.
        let j4 = &g.bars[4];
        assert_eq!(j4.class, "live");
        assert!(close(j4.x, x(60.0)) && close(j4.w, 30.0 * unit));
        assert!(close(j4.y, g.rows[2].y + BAR_H + LANE_GAP));
        assert!(
            j4.title.starts_with("j4 attempt 1: running"),
            "{}",
            j4.title
        );

        // The axis: 100 s in steps of 15 s (at most 8 intervals).
        let ticks: Vec<&str> = g.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, ["0", "15s", "30s", "45s", "1m", "1m15s", "1m30s"]);
        assert!(close(g.ticks[1].x, x(15.0)));

        let svg = svg(&g);
        assert_eq!(svg.matches(r#"<rect class="bar "#).count(), 6);
        assert_eq!(svg.matches(r#"<rect class="boot""#).count(), 3);
        assert!(svg.contains(r#"data-job="j5""#));
    }

    #[test]
    fn a_tiny_attempt_still_shows_and_an_empty_timeline_is_empty() {
        let long = attempt(1, Some("i-a"), 0.0, 0.0, Some(3600.0), Ending::Succeeded);
        let blip = attempt(1, Some("i-b"), 100.0, 0.0, Some(100.1), Ending::Failed);
        let spans = [Span::of("a", &long).unwrap(), Span::of("b", &blip).unwrap()];
        let g = layout(&spans, at(4000.0));
        assert!(close(g.bars[1].w, MIN_BAR_W));
        assert_eq!(g.ticks.last().unwrap().label, "1h");
        let empty = layout(&[], at(0.0));
        assert!(empty.rows.is_empty() && empty.bars.is_empty());
    }

    #[test]
    fn axis_labels() {
        let table = [
            (0.0, "0"),
            (45.0, "45s"),
            (120.0, "2m"),
            (90.0, "1m30s"),
            (10_800.0, "3h"),
            (9_000.0, "2h30m"),
            (86_400.0, "1d"),
            (90_000.0, "1d01h"),
        ];
        for (t, want) in table {
            assert_eq!(axis_label(t), want, "{t}");
        }
    }

    #[test]
    fn histogram_bins_are_round_and_count_every_job() {
        // (durations, max bins, (from, to, count) per bin)
        type Want = &'static [(f64, f64, usize)];
        let table: &[(&[f64], usize, Want)] = &[
            (&[], 10, &[]),
            (&[7.0], 10, &[(7.0, 8.0, 1)]),
            (
                &[12.0, 14.0, 31.0, 33.0, 58.0],
                5,
                &[
                    (10.0, 20.0, 2),
                    (20.0, 30.0, 0),
                    (30.0, 40.0, 2),
                    (40.0, 50.0, 0),
                    (50.0, 60.0, 1),
                ],
            ),
            (
                &[100.0, 3500.0],
                3,
                &[(0.0, 1800.0, 1), (1800.0, 3600.0, 1)],
            ),
            (&[f64::NAN, 3.0, -1.0], 4, &[(3.0, 4.0, 1)]),
        ];
        for (ds, max, want) in table {
            let got: Vec<(f64, f64, usize)> = histogram(ds, *max)
                .into_iter()
                .map(|b| (b.from_s, b.to_s, b.count))
                .collect();
            assert_eq!(got, *want, "{ds:?}");
        }
        // 10-15, 15-20, ..., 30-35: empty bins are drawn too (at zero height).
        let svg = histogram_svg(&histogram(&[12.0, 14.0, 31.0], 5));
        assert_eq!(svg.matches(r#"<rect class="hbar""#).count(), 5);
        assert_eq!(svg.matches(r#"<text class="count""#).count(), 2);
    }
}
