//! The page as one HTML document: inline CSS, thumbnails as data URIs, the charts as inline
//! SVG, and a few lines of script for the filter buttons (hidden until the script shows them:
//! without it, every card is there to read). Nothing is fetched from anywhere, so the file
//! opens from a laptop, an email or S3.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::timeline::{self, Span};
use super::{Card, Page, State, LIVE_EVERY};

/// Text for HTML (element content and quoted attribute values).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Terminal colours and other controls have no place in a page.
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root{--ok:#2e8b57;--bad:#c0392b;--retried:#e67e22;--live:#2f6fd0;--flag:#d4a017;--muted:#777;--line:#ddd}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;padding:16px 24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:15px;margin:20px 0 6px}
.meta{color:var(--muted);margin:0 0 8px}
.counts span{display:inline-block;margin:0 12px 4px 0;font-weight:600}
.counts .succeeded{color:var(--ok)}.counts .failed{color:var(--bad)}.counts .running{color:var(--live)}.counts .flagged{color:var(--flag)}
nav.filters button{font:inherit;margin-right:6px;padding:3px 10px;border:1px solid #bbb;border-radius:4px;background:#fff;cursor:pointer}
nav.filters button[aria-pressed=true]{background:#333;color:#fff}
.charts{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.charts figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px}
.charts .tl{flex:3 1 640px}.charts .hist{flex:1 1 300px;max-width:520px}
figcaption{color:var(--muted);font-size:12px;margin-bottom:4px}
svg text{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;fill:#444}
svg .axis{text-anchor:middle}svg .from{text-anchor:start}svg .count{text-anchor:middle;fill:#222}
svg .tick{stroke:#eee}svg .alive{stroke:#bbb;stroke-width:2}
svg .bar{stroke:#fff;stroke-width:1}svg .bar.ok{fill:var(--ok)}svg .bar.bad{fill:var(--bad)}svg .bar.retried{fill:var(--retried)}svg .bar.live{fill:var(--live)}
svg .boot{fill:#ccc}svg .hbar{fill:#7a8ca5}
.legend span{margin-right:10px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-top:5px solid var(--muted);border-radius:6px;padding:8px;overflow:hidden}
.card.succeeded{border-top-color:var(--ok)}.card.failed{border-top-color:var(--bad)}.card.running{border-top-color:var(--live)}
.card.flagged{border-top-color:var(--flag)}
.thumb{display:flex;align-items:center;justify-content:center;height:180px;background:#f0f0f0;border-radius:4px;margin-bottom:6px;overflow:hidden}
.thumb img{width:100%;height:100%;object-fit:contain}
.thumb .none{color:var(--muted);padding:8px;text-align:center}
.card h3{font-size:14px;margin:0 0 4px;word-break:break-all}
.outcome{font-weight:600}.succeeded .outcome{color:var(--ok)}.failed .outcome{color:var(--bad)}.running .outcome{color:var(--live)}
.flag{color:#8a6d00;background:#fff6d6;border-radius:3px;padding:1px 5px;font-size:12px}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 8px;margin:4px 0;font-size:12px}
dt{color:var(--muted)}dd{margin:0;word-break:break-all}
pre{font:11px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f6f6;border-radius:4px;padding:6px;margin:4px 0;white-space:pre-wrap;word-break:break-all;max-height:260px;overflow:auto}
pre.error{background:#fdecea;color:#7b1e14}
.attempts{font-size:12px;color:#555;margin:2px 0;padding-left:16px}
body[data-filter=failed] .card:not(.failed){display:none}
body[data-filter=succeeded] .card:not(.succeeded){display:none}
footer{color:var(--muted);font-size:12px;margin-top:20px}
"#;

/// The filter buttons' script: show the buttons, and filter the cards on a click.
const SCRIPT: &str = r#"
(function(){var nav=document.querySelector('nav.filters');if(!nav)return;nav.hidden=false;
nav.addEventListener('click',function(e){var f=e.target.getAttribute('data-filter');if(!f)return;
document.body.setAttribute('data-filter',f);
nav.querySelectorAll('button').forEach(function(b){b.setAttribute('aria-pressed',String(b===e.target));});});})();
"#;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn duration(s: f64) -> String {
    crate::cmd::short_duration(Duration::from_secs_f64(s.max(0.0)))
}

/// `512 B`, `12.3 KiB`, `4.0 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn usd(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("${v:.2}"),
        None => "unknown".into(),
    }
}

/// The whole page.
pub fn render(p: &Page) -> String {
    let c = p.counts();
    let mut o = String::with_capacity(64 * 1024 + p.jobs.len() * 16 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    if p.live {
        let _ = write!(
            o,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            LIVE_EVERY.as_secs()
        );
    }
    let _ = write!(
        o,
        "<title>{} · batch {}{}</title><style>{CSS}</style></head>\n<body data-filter=\"all\">",
        if p.live { "running" } else { "report" },
        escape(&p.batch),
        if c.failed > 0 {
            format!(" · {} failed", c.failed)
        } else {
            String::new()
        }
    );

    // Header.
    let _ = write!(
        o,
        "<header><h1>batch {}</h1><p class=\"meta\">engine {}{}{} · {} · page made {}{}</p>",
        escape(&p.batch),
        escape(&p.engine),
        p.started_at
            .map(|t| format!(" · started {}", rfc3339(t)))
            .unwrap_or_default(),
        match (p.wall_s, p.started_at) {
            (Some(w), _) => format!(" · wall time {}", duration(w)),
            (None, Some(s)) if p.live => format!(
                " · running for {}",
                duration(
                    p.generated_at
                        .duration_since(s)
                        .unwrap_or_default()
                        .as_secs_f64()
                )
            ),
            _ => String::new(),
        },
        format_args!("cost {}", usd(p.cost())),
        rfc3339(p.generated_at),
        if p.live {
            format!(
                " · <strong>live</strong>: reloads every {}s while the batch runs",
                LIVE_EVERY.as_secs()
            )
        } else {
            String::new()
        },
    );
    let _ = write!(
        o,
        "<p class=\"counts\"><span>{} jobs</span><span class=\"succeeded\">{} succeeded</span><span class=\"failed\">{} failed</span>",
        c.total, c.succeeded, c.failed
    );
    for (n, class, word) in [
        (c.running, "running", "running"),
        (c.queued, "queued", "queued"),
        (c.not_run, "not-run", "not run"),
        (c.flagged, "flagged", "succeeded without a usable image"),
    ] {
        if n > 0 {
            let _ = write!(o, "<span class=\"{class}\">{n} {word}</span>");
        }
    }
    let _ = write!(
        o,
        "<span>{} attempt{}</span></p>",
        c.attempts,
        if c.attempts == 1 { "" } else { "s" }
    );
    o.push_str(
        "<nav class=\"filters\" hidden><button data-filter=\"all\" aria-pressed=\"true\">all</button>\
         <button data-filter=\"failed\" aria-pressed=\"false\">failed</button>\
         <button data-filter=\"succeeded\" aria-pressed=\"false\">succeeded</button></nav></header>\n",
    );

    // Charts.
    let spans: Vec<Span<'_>> = p
        .jobs
        .iter()
        .flat_map(|j| j.attempts.iter().filter_map(|a| Span::of(&j.job_id, a)))
        .collect();
    let durations: Vec<f64> = p
        .jobs
        .iter()
        .filter(|j| j.state.is_final())
        .filter_map(|j| j.duration_s)
        .collect();
    o.push_str("<section class=\"charts\">");
    if !spans.is_empty() {
        let geo = timeline::layout(&spans, p.generated_at);
        let _ = write!(
            o,
            "<figure class=\"tl\"><figcaption>timeline: one row per instance, one bar per attempt; grey before a bar: launch and boot; a line without bars: the instance idle</figcaption>{}<div class=\"legend\"><span><i style=\"background:var(--ok)\"></i>succeeded</span><span><i style=\"background:var(--bad)\"></i>failed</span><span><i style=\"background:var(--retried)\"></i>retried</span><span><i style=\"background:var(--live)\"></i>running</span><span><i style=\"background:#ccc\"></i>launch and boot</span></div></figure>",
            timeline::svg(&geo)
        );
    }
    if !durations.is_empty() {
        let _ = write!(
            o,
            "<figure class=\"hist\"><figcaption>job durations ({} job{})</figcaption>{}</figure>",
            durations.len(),
            if durations.len() == 1 { "" } else { "s" },
            timeline::histogram_svg(&timeline::histogram(&durations, 12))
        );
    }
    o.push_str("</section>\n<h2>jobs</h2><main class=\"grid\">\n");
    for j in &p.jobs {
        card(&mut o, j);
    }
    o.push_str("</main>\n");
    let _ = write!(
        o,
        "<footer>made by run-render {}{}. Thumbnails are the runner's, from each job's main image; the full renders are in each job's output.</footer>",
        env!("CARGO_PKG_VERSION"),
        p.s3_url
            .as_deref()
            .map(|u| format!("; a copy is at {}", escape(u)))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "<script>{SCRIPT}</script></body></html>");
    o
}

fn card(o: &mut String, j: &Card) {
    let flag = j.flagged();
    let _ = write!(
        o,
        "<article class=\"card {}{}\" id=\"job-{}\">",
        j.state.class(),
        if flag.is_some() { " flagged" } else { "" },
        escape(&j.job_id)
    );
    o.push_str("<div class=\"thumb\">");
    match &j.thumbnail {
        Some(png) => {
            let _ = write!(
                o,
                "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
                escape(&j.job_id),
                base64::engine::general_purpose::STANDARD.encode(png)
            );
        }
        None => {
            let why = match (&j.picture, j.state) {
                (Some(p), _) if p.flag.is_some() => {
                    p.flag.map(|f| f.describe().to_string()).unwrap_or_default()
                }
                (Some(p), _) if p.note.is_some() => p.note.clone().unwrap_or_default(),
                (_, State::Running) => "running".into(),
                (_, State::Queued) => "queued".into(),
                (_, State::NotRun) => "not run".into(),
                _ => "no picture".into(),
            };
            let _ = write!(o, "<div class=\"none\">{}</div>", escape(&why));
        }
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        "<h3>{}</h3><div><span class=\"outcome\">{}</span>{}</div><dl>",
        escape(&j.job_id),
        escape(&j.outcome),
        flag.map(|f| format!(" <span class=\"flag\">{}</span>", f.describe()))
            .unwrap_or_default()
    );
    for (k, v) in &j.row {
        let _ = write!(
            o,
            "<dt>{}</dt><dd>{}</dd>",
            escape(k),
            escape(&super::clip(v, super::ROW_VALUE_MAX))
        );
    }
    if let Some(d) = j.duration_s {
        let _ = write!(o, "<dt>duration</dt><dd>{}</dd>", duration(d));
    }
    let _ = write!(
        o,
        "<dt>attempts</dt><dd>{}</dd><dt>cost</dt><dd>{}</dd>",
        j.attempts.len(),
        usd(j.cost_usd)
    );
    if let Some(pic) = &j.picture {
        if let Some(path) = &pic.path {
            let pixels = match (pic.width, pic.height) {
                (Some(w), Some(h)) => format!("{w}×{h}, "),
                _ => String::new(),
            };
            let _ = write!(
                o,
                "<dt>image</dt><dd>{} ({pixels}{})</dd>",
                escape(path),
                human_bytes(pic.bytes)
            );
        }
    }
    if let Some(out) = &j.output {
        let _ = write!(o, "<dt>output</dt><dd>{}</dd>", escape(out));
    }
    o.push_str("</dl>");
    if j.attempts.len() > 1 {
        o.push_str("<ol class=\"attempts\">");
        for a in &j.attempts {
            let _ = write!(
                o,
                "<li>{}{}</li>",
                escape(if a.note.is_empty() {
                    a.ending.class()
                } else {
                    &a.note
                }),
                a.instance
                    .as_deref()
                    .map(|i| format!(" on {}", escape(i)))
                    .unwrap_or_default()
            );
        }
        o.push_str("</ol>");
    }
    if let Some(e) = &j.error {
        if j.state != State::Succeeded {
            let _ = write!(
                o,
                "<pre class=\"error\">{}</pre>",
                escape(&super::clip(e, super::ERROR_MAX))
            );
        }
    }
    if !j.log_tail.is_empty() {
        let _ = write!(
            o,
            "<div class=\"meta\">the log's last {} lines</div><pre class=\"log\">",
            j.log_tail.len()
        );
        for line in &j.log_tail {
            o.push_str(&escape(&super::clip(line, super::LOG_LINE_MAX)));
            o.push('\n');
        }
        o.push_str("</pre>");
    }
    o.push_str("</article>\n");
}

#[cfg(test)]
mod tests {
    use super::super::{Attempt, Ending, LOG_LINE_MAX, LOG_TAIL_LINES};
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<b a=\"1\">&'x'\u{1b}[31m"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;x&#39;\u{fffd}[31m"
        );
    }

    fn sample() -> Page {
        let mut ok = Card::new("j-1", State::Succeeded, "succeeded");
        ok.thumbnail = Some(vec![0x89, b'P', b'N', b'G']);
        ok.row = vec![("scene".into(), "<kitchen>".into())];
        ok.duration_s = Some(42.0);
        ok.attempts.push(Attempt {
            n: 1,
            instance: Some("i-1".into()),
            start: Some(at(0)),
            boot_s: 3.0,
            end: Some(at(45)),
            ending: Ending::Succeeded,
            note: "succeeded".into(),
        });
        let mut bad = Card::new("j-2", State::Failed, "failed (exit 1)");
        bad.error = Some("the command failed: index out of bounds".into());
        bad.log_tail = vec!["x".repeat(500); LOG_TAIL_LINES];
        bad.attempts.push(Attempt {
            n: 1,
            instance: Some("i-2".into()),
            start: Some(at(1)),
            boot_s: 3.0,
            end: Some(at(20)),
            ending: Ending::Failed,
            note: "failed".into(),
        });
        let mut none = Card::new("j-3", State::Succeeded, "succeeded");
        none.picture = Some(rtb_model::Picture {
            flag: Some(rtb_model::PictureFlag::NoImage),
            ..Default::default()
        });
        Page {
            batch: "demo<1>".into(),
            engine: "ec2".into(),
            generated_at: at(60),
            started_at: Some(at(0)),
            wall_s: Some(60.0),
            jobs: vec![ok, bad, none],
            ..Page::default()
        }
    }

    #[test]
    fn the_page_is_self_contained_and_shows_every_card() {
        let html = render(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        for external in ["http://", "https://", "<link", "src=\"/", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        assert_eq!(html.matches("<article class=\"card").count(), 3);
        // One <img> per thumbnail, its alt the job id; none for the job without a picture.
        assert_eq!(html.matches("<img ").count(), 1);
        assert!(html.contains("<img alt=\"j-1\" src=\"data:image/png;base64,iVBORw==\">"));
        assert!(html.contains("class=\"card succeeded flagged\" id=\"job-j-3\""));
        assert!(html.contains("<span class=\"flag\">no image</span>"));
        // The failed card: MATLAB's error and the log's last lines, each cut short.
        assert!(html.contains("<pre class=\"error\">the command failed: index out of bounds</pre>"));
        let cut = format!("{}…\n", "x".repeat(LOG_LINE_MAX - 1));
        assert_eq!(html.matches(&cut).count(), LOG_TAIL_LINES);
        // What came from the user is escaped.
        assert!(html.contains("batch demo&lt;1&gt;") && html.contains("&lt;kitchen&gt;"));
        // Readable without the script: the buttons stay hidden until it runs.
        assert!(html.contains("<nav class=\"filters\" hidden>"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert_eq!(html.matches("<rect class=\"bar ").count(), 2);
    }

    /// The worst page of 100 jobs: every job failed after writing a picture (a thumbnail at the
    /// runner's budget), with a long error and 20 long log lines, 6 row values, 3 attempts on
    /// 30 instances.
    #[test]
    fn a_page_of_100_jobs_stays_under_2_mb() {
        use super::super::{ERROR_MAX, PAGE_BUDGET_100};
        let mut seed = 1u32;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect()
        };
        let jobs: Vec<Card> = (0..100)
            .map(|n| {
                let mut c = Card::new(&format!("vwcc2-job-{n:03}"), State::Failed, "failed (exit 1)");
                c.thumbnail = Some(noise(rtb_model::layout::THUMBNAIL_BUDGET));
                c.picture = Some(rtb_model::Picture {
                    images: 3,
                    path: Some("renders/RunToyVirtualWorldRecipes/scene-0001.exr".into()),
                    bytes: 12 << 20,
                    width: Some(640),
                    height: Some(480),
                    ..Default::default()
                });
                c.row = (0..6)
                    .map(|k| (format!("column {k}"), format!("[0.2000 0.6000] value {n} {k}")))
                    .collect();
                c.error = Some("e".repeat(ERROR_MAX * 2));
                c.log_tail = vec!["l".repeat(LOG_LINE_MAX * 2); LOG_TAIL_LINES];
                c.duration_s = Some(3600.0 + n as f64);
                c.output = Some(format!("s3://render-toolbox-test/vwcc2/job-{n}"));
                c.records = Some(format!("s3://render-toolbox-test/vwcc2/job-{n}/_rtb-job/vwcc2-{n}/r20261201T101500-a3/"));
                c.cost_usd = Some(1.23);
                for a in 0..3u32 {
                    c.attempts.push(Attempt {
                        n: a + 1,
                        instance: Some(format!("i-0123456789abcd{:03}", (n * 3 + a as usize) % 30)),
                        start: Some(at(n as u64 * 100 + a as u64 * 4000)),
                        boot_s: 40.0,
                        end: Some(at(n as u64 * 100 + a as u64 * 4000 + 3600)),
                        ending: if a < 2 { Ending::Retried } else { Ending::Failed },
                        note: "instance lost (spot reclaim); retried: the instance was lost".into(),
                    });
                }
                c
            })
            .collect();
        let page = Page {
            batch: "vwcc2".into(),
            engine: "ec2".into(),
            generated_at: at(20_000),
            started_at: Some(at(0)),
            wall_s: Some(20_000.0),
            cost_usd: Some(123.0),
            s3_url: Some("s3://render-toolbox-test/vwcc2/_rtb-batch/vwcc2/report.html".into()),
            jobs,
            ..Page::default()
        };
        let html = render(&page);
        println!("the page of 100 jobs: {} bytes", html.len());
        assert_eq!(html.matches("<img ").count(), 100);
        assert_eq!(html.matches("<rect class=\"bar ").count(), 300);
        assert!(
            html.len() < PAGE_BUDGET_100,
            "{} bytes for 100 jobs",
            html.len()
        );
    }

    #[test]
    fn a_live_page_reloads_itself() {
        let mut p = sample();
        p.live = true;
        p.wall_s = None;
        let html = render(&p);
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(html.contains("running for 1m00s"));
    }
}
