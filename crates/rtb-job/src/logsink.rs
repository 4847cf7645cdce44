//! The job's log: every line goes to stdout as it comes, the interpreter's lines also to
//! `matlab.log` in OUTPUT_SCRATCH (uploaded with the outputs), and all lines to numbered log
//! chunks in S3 (see `rtb_model::layout`) so a client can follow the job live.
//!
//! One task owns the outputs; everyone else sends lines to it through a cheap cloneable [`Log`].
//! Chunks are written by a task of their own, one at a time, so a slow or refused S3 never
//! holds up the lines: while writes fail, the sink backs off (up to [`BACKOFF_MAX`]) and holds
//! at most [`HOLD_MAX_BYTES`] of lines, dropping the oldest with one marker line in their place.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use rtb_model::JobRecords;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The interpreter's log file in OUTPUT_SCRATCH (uploaded with the outputs; never part of a
/// checkpoint, since each attempt writes its own).
pub const INTERPRETER_LOG: &str = "matlab.log";

/// A line that finds no chunk on its way and none written for RTB_LOG_EVERY goes out this
/// soon, with whatever came with it: lines printed together land in one chunk, and a line
/// after a quiet spell is not held back for the pace.
const GATHER: Duration = Duration::from_millis(20);
/// A chunk is written early when it grows past this, and never holds more, so a flood of
/// output stays in bounded objects.
const CHUNK_MAX_BYTES: usize = 4 << 20;
/// While chunks cannot be written, at most this much log is held for them; older lines are
/// dropped (stdout and `matlab.log` still have them).
pub const HOLD_MAX_BYTES: usize = 16 << 20;
/// The first pause after a failed chunk write, doubled after each further failure up to
/// [`BACKOFF_MAX`]: a refused prefix costs a request every 30 s, not one per line.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A chunk write that takes longer than this is given up (and retried): a stalled connection
/// must not keep the result record from being written at the end.
const PUT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Runner,
    Interpreter,
}

enum Event {
    Line(Source, String),
    /// Flush and close `matlab.log` (before the output copy reads it).
    CloseFile(oneshot::Sender<()>),
    /// Write what is left and stop, even if some `Log` clones are still alive (a reader
    /// task held by a process that outlived the interpreter).
    Close,
}

/// Lines and chunks written, for the result record.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    /// Lines written to chunks (dropped ones not counted).
    pub lines: u64,
    pub chunks: u64,
    /// Lines dropped from the chunks while they could not be written.
    pub dropped: u64,
}

/// Where log lines go; clone freely.
#[derive(Clone)]
pub struct Log {
    tx: mpsc::UnboundedSender<Event>,
}

impl Log {
    /// A line from the runner itself.
    pub fn info(&self, text: impl Into<String>) {
        let _ = self.tx.send(Event::Line(Source::Runner, text.into()));
    }

    /// A line the interpreter printed.
    pub fn interpreter(&self, text: impl Into<String>) {
        let _ = self.tx.send(Event::Line(Source::Interpreter, text.into()));
    }

    /// Flush and close the interpreter's log file, waiting until it is done.
    pub async fn close_file(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Event::CloseFile(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// The task behind [`Log`].
pub struct LogSink {
    log: Log,
    task: JoinHandle<LogStats>,
}

impl LogSink {
    /// Start the sink. `file` receives the interpreter's lines; `records` the chunks, written
    /// at most once per `every` (RTB_LOG_EVERY).
    pub fn start(
        file: PathBuf,
        records: Option<(aws_sdk_s3::Client, JobRecords)>,
        every: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, file, records, every));
        LogSink {
            log: Log { tx },
            task,
        }
    }

    pub fn log(&self) -> Log {
        self.log.clone()
    }

    /// Write what is left and stop. Lines sent after this are dropped.
    pub async fn close(self) -> LogStats {
        let _ = self.log.tx.send(Event::Close);
        self.task.await.unwrap_or_default()
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Event>,
    file_path: PathBuf,
    records: Option<(aws_sdk_s3::Client, JobRecords)>,
    every: Duration,
) -> LogStats {
    let mut file = match std::fs::File::create(&file_path) {
        Ok(f) => Some(std::io::BufWriter::new(f)),
        Err(e) => {
            eprintln!("[rtb-job] cannot write {}: {e}", file_path.display());
            None
        }
    };
    let mut chunks = records.map(|(client, records)| Chunks::new(client, records));

    loop {
        let writing = chunks.as_ref().is_some_and(|c| c.writing.is_some());
        let due = chunks.as_ref().and_then(|c| c.due(every));
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Line(source, text)) => {
                    let line = match source {
                        Source::Runner => format!("[rtb-job] {text}"),
                        Source::Interpreter => text,
                    };
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{line}");
                        let _ = out.flush();
                    }
                    if let (Source::Interpreter, Some(f)) = (source, file.as_mut()) {
                        let _ = writeln!(f, "{line}");
                    }
                    if let Some(c) = chunks.as_mut() {
                        c.push(line);
                        if c.held >= CHUNK_MAX_BYTES {
                            c.start_write();
                        }
                    }
                }
                Some(Event::CloseFile(ack)) => {
                    if let Some(mut f) = file.take() {
                        let _ = f.flush();
                    }
                    let _ = ack.send(());
                }
                Some(Event::Close) | None => break,
            },
            _ = sleep_until_due(due), if due.is_some() => {
                if let Some(c) = chunks.as_mut() {
                    c.start_write();
                }
            }
            written = async {
                match chunks.as_mut().and_then(|c| c.writing.as_mut()) {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            }, if writing => {
                if let Some(c) = chunks.as_mut() {
                    c.written(written.unwrap_or_else(|e| Err(format!("the write task failed: {e}"))));
                    // After a flood, the rest goes out at once rather than a chunk a second.
                    if c.held >= CHUNK_MAX_BYTES {
                        c.start_write();
                    }
                }
            }
        }
    }
    if let Some(mut f) = file.take() {
        let _ = f.flush();
    }
    match chunks {
        Some(mut c) => c.finish().await,
        None => LogStats::default(),
    }
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a marker line counts for in the cap (about its length; exactness does not matter).
const MARKER_BYTES: usize = 200;

/// A held line, or the marker for lines dropped at its place.
enum Held {
    Line(String),
    Dropped(u64),
}

impl Held {
    fn render(&self) -> String {
        match self {
            Held::Line(l) => format!("{l}\n"),
            Held::Dropped(n) => format!(
                "[rtb-job] {n} log line{s} dropped here: log chunks could not be written to S3 and at most {} MiB of log is held for them; matlab.log in the outputs has the interpreter's lines\n",
                HOLD_MAX_BYTES >> 20,
                s = if *n == 1 { " was" } else { "s were" },
            ),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Held::Line(l) => l.len() + 1,
            Held::Dropped(_) => MARKER_BYTES,
        }
    }
}

/// The task writing one chunk.
type WriteTask = JoinHandle<Result<(), String>>;

struct Chunks {
    client: aws_sdk_s3::Client,
    records: JobRecords,
    /// Lines not yet written, oldest first; `held` counts their bytes, and those of the chunk
    /// being written.
    queue: VecDeque<Held>,
    held: usize,
    /// The chunk being written, and its task.
    in_flight: Vec<Held>,
    writing: Option<WriteTask>,
    next_seq: u64,
    lines: u64,
    dropped_total: u64,
    /// When the next write may start, while writes fail; and the pause after the next failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// When the last write started, and when the oldest line waiting came.
    last_start: Option<Instant>,
    waiting_since: Option<Instant>,
}

impl Chunks {
    fn new(client: aws_sdk_s3::Client, records: JobRecords) -> Self {
        Chunks {
            client,
            records,
            queue: VecDeque::new(),
            held: 0,
            in_flight: Vec::new(),
            writing: None,
            next_seq: 1,
            lines: 0,
            dropped_total: 0,
            retry_at: None,
            backoff: BACKOFF_FIRST,
            last_start: None,
            waiting_since: None,
        }
    }

    /// When the next chunk should be written: never while one is on its way or nothing waits;
    /// else a moment after the oldest waiting line came ([`GATHER`]), but not sooner than
    /// `every` after the last write started, nor while writes are paused after a failure.
    fn due(&self, every: Duration) -> Option<Instant> {
        if self.writing.is_some() || self.queue.is_empty() {
            return None;
        }
        let gathered = self.waiting_since.map(|t| t + GATHER);
        let paced = self.last_start.map(|t| t + every);
        [gathered, paced, self.retry_at]
            .into_iter()
            .flatten()
            .max()
            .or_else(|| Some(Instant::now()))
    }

    fn push(&mut self, line: String) {
        self.waiting_since.get_or_insert_with(Instant::now);
        let h = Held::Line(line);
        self.held += h.bytes();
        self.queue.push_back(h);
        while self.held > HOLD_MAX_BYTES && self.drop_oldest() {}
    }

    /// Drop the oldest queued line, counting it in a marker at the queue's front (markers
    /// that meet there merge); false when there is no line left to drop.
    fn drop_oldest(&mut self) -> bool {
        let mut marker = self.take_front_markers();
        let dropped = match self.queue.pop_front() {
            Some(line) => {
                self.held -= line.bytes();
                1
            }
            None => 0,
        };
        marker += dropped + self.take_front_markers();
        if marker > 0 {
            self.queue.push_front(Held::Dropped(marker));
            self.held += MARKER_BYTES;
        }
        if dropped > 0 && self.dropped_total == 0 {
            eprintln!(
                "[rtb-job] log chunks cannot be written; dropping the oldest lines beyond {} MiB from the S3 log (stdout and matlab.log keep them)",
                HOLD_MAX_BYTES >> 20
            );
        }
        self.dropped_total += dropped;
        dropped > 0
    }

    /// Remove the markers at the queue's front and return how many lines they stood for.
    fn take_front_markers(&mut self) -> u64 {
        let mut n = 0;
        while let Some(Held::Dropped(m)) = self.queue.front() {
            n += *m;
            self.queue.pop_front();
            self.held -= MARKER_BYTES;
        }
        n
    }

    /// Start writing the next chunk, unless one is on its way, there is nothing to write, or
    /// writes are failing and the pause is not over.
    fn start_write(&mut self) {
        if self.writing.is_some() || self.queue.is_empty() {
            return;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let body = self.take_chunk();
        self.last_start = Some(Instant::now());
        self.waiting_since = (!self.queue.is_empty()).then(Instant::now);
        let put = self
            .client
            .put_object()
            .bucket(self.records.bucket())
            .key(self.records.chunk_key(self.next_seq))
            .content_type("text/plain; charset=utf-8")
            .body(ByteStream::from(body.into_bytes()));
        self.writing = Some(tokio::spawn(async move {
            match tokio::time::timeout(PUT_TIMEOUT, put.send()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(crate::transfer::S3Cause::from_sdk(&e).to_string()),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(PUT_TIMEOUT)
                )),
            }
        }));
    }

    /// Move up to a chunk's worth of lines (at least one) from the queue to `in_flight`, and
    /// return their text.
    fn take_chunk(&mut self) -> String {
        let mut body = String::new();
        while let Some(h) = self.queue.front() {
            let text = h.render();
            if !body.is_empty() && body.len() + text.len() > CHUNK_MAX_BYTES {
                break;
            }
            body.push_str(&text);
            if let Some(h) = self.queue.pop_front() {
                self.in_flight.push(h);
            }
        }
        body
    }

    /// The chunk's write ended: on success its lines are gone and the number is used; on
    /// failure they go back to the front, the number stays for the next try, and writes pause.
    fn written(&mut self, result: Result<(), String>) {
        self.writing = None;
        let chunk = std::mem::take(&mut self.in_flight);
        match result {
            Ok(()) => {
                for h in &chunk {
                    self.held -= h.bytes();
                    if let Held::Line(_) = h {
                        self.lines += 1;
                    }
                }
                self.next_seq += 1;
                if self.retry_at.take().is_some() {
                    eprintln!("[rtb-job] log chunks are being written again");
                }
                self.backoff = BACKOFF_FIRST;
            }
            Err(why) => {
                if self.retry_at.is_none() {
                    eprintln!(
                        "[rtb-job] cannot write log chunk s3://{}/{}: {why}; will retry, backing off up to {} s",
                        self.records.bucket(),
                        self.records.chunk_key(self.next_seq),
                        BACKOFF_MAX.as_secs()
                    );
                }
                for h in chunk.into_iter().rev() {
                    self.queue.push_front(h);
                }
                self.waiting_since.get_or_insert_with(Instant::now);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                // Lines that arrived meanwhile may have pushed the total over the cap.
                while self.held > HOLD_MAX_BYTES && self.drop_oldest() {}
            }
        }
    }

    /// At the end: wait for the chunk on its way, then write what is left, pauses ignored (the
    /// result record follows, so the log should be complete), giving up after a failure.
    async fn finish(&mut self) -> LogStats {
        if let Some(task) = self.writing.as_mut() {
            let r = task
                .await
                .unwrap_or_else(|e| Err(format!("the write task failed: {e}")));
            self.written(r);
        }
        let mut failures = 0;
        while !self.queue.is_empty() && failures < 2 {
            self.retry_at = None;
            self.start_write();
            let Some(task) = self.writing.as_mut() else {
                break;
            };
            let r = task
                .await
                .unwrap_or_else(|e| Err(format!("the write task failed: {e}")));
            if r.is_err() {
                failures += 1;
            }
            self.written(r);
        }
        let unwritten = self
            .queue
            .iter()
            .filter(|h| matches!(h, Held::Line(_)))
            .count();
        if unwritten > 0 {
            eprintln!(
                "[rtb-job] {unwritten} log lines could not be written to S3; matlab.log in the outputs has the interpreter's lines"
            );
        }
        LogStats {
            lines: self.lines,
            chunks: self.next_seq - 1,
            dropped: self.dropped_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks() -> Chunks {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        Chunks::new(
            aws_sdk_s3::Client::from_conf(config),
            JobRecords::at("s3://bkt/r".parse().unwrap()),
        )
    }

    fn text(c: &Chunks) -> String {
        c.queue.iter().map(Held::render).collect()
    }

    #[test]
    fn held_lines_are_capped_with_one_marker_in_their_place() {
        let mut c = chunks();
        let line = "x".repeat(1023);
        let n = 3 * HOLD_MAX_BYTES / 1024;
        for _ in 0..n {
            c.push(line.clone());
        }
        assert!(c.held <= HOLD_MAX_BYTES, "{}", c.held);
        let markers = c
            .queue
            .iter()
            .filter(|h| matches!(h, Held::Dropped(_)))
            .count();
        assert_eq!(markers, 1);
        let Some(Held::Dropped(dropped)) = c.queue.front() else {
            panic!("the marker leads");
        };
        let kept = c.queue.len() as u64 - 1;
        assert_eq!(dropped + kept, n as u64);
        assert_eq!(c.dropped_total, *dropped);
        assert!(text(&c).starts_with("[rtb-job] "), "{}", &text(&c)[..200]);
        // What is held is what is counted.
        let counted: usize = c.queue.iter().map(Held::bytes).sum();
        assert_eq!(counted, c.held);
    }

    #[test]
    fn a_failed_chunk_goes_back_in_front() {
        let mut c = chunks();
        for i in 0..5 {
            c.push(format!("line {i}"));
        }
        let body = c.take_chunk();
        assert_eq!(body, "line 0\nline 1\nline 2\nline 3\nline 4\n");
        c.push("line 5".into());
        c.written(Err("AccessDenied".into()));
        assert!(text(&c).starts_with("line 0\n") && text(&c).ends_with("line 5\n"));
        assert!(c.retry_at.is_some() && c.backoff == BACKOFF_FIRST * 2);
        // Backing off: no write starts before the pause is over.
        c.start_write();
        assert!(c.writing.is_none());
        let _ = c.take_chunk();
        c.written(Ok(()));
        assert_eq!((c.lines, c.next_seq, c.held), (6, 2, 0));
        assert!(c.retry_at.is_none() && c.backoff == BACKOFF_FIRST);
    }

    #[tokio::test]
    async fn a_line_after_a_quiet_spell_goes_out_at_once_and_a_stream_at_the_pace() {
        let every = Duration::from_millis(250);
        let ms = Duration::from_millis;
        let mut c = chunks();
        assert_eq!(c.due(every), None, "nothing waits");
        // The first line: out after the gather moment, not a whole pace later.
        c.push("a".into());
        let t0 = c.waiting_since.expect("the line waits");
        assert_eq!(c.due(every), Some(t0 + GATHER));
        // Lines printed together wait for the same moment.
        c.push("b".into());
        assert_eq!(c.due(every), Some(t0 + GATHER));
        let started = t0 + GATHER;
        let _ = c.take_chunk();
        c.last_start = Some(started);
        c.waiting_since = None;
        c.writing = Some(tokio::spawn(async { Ok(()) }));
        // While a chunk is on its way nothing else is due.
        c.push("c".into());
        c.waiting_since = Some(started + ms(30));
        assert_eq!(c.due(every), None);
        c.written(Ok(()));
        // A stream: the next chunk waits for the pace from the last write's start.
        assert_eq!(c.due(every), Some(started + every));
        // After a quiet spell longer than the pace: due right after the gather.
        let later = started + Duration::from_secs(2);
        c.waiting_since = Some(later);
        assert_eq!(c.due(every), Some(later + GATHER));
        // Writes paused after a failure: not before the pause is over.
        c.retry_at = Some(later + Duration::from_secs(4));
        assert_eq!(c.due(every), Some(later + Duration::from_secs(4)));
    }

    #[test]
    fn backoff_is_bounded() {
        let mut c = chunks();
        for _ in 0..20 {
            c.push("l".into());
            let _ = c.take_chunk();
            c.written(Err("x".into()));
        }
        assert_eq!(c.backoff, BACKOFF_MAX);
    }

    #[test]
    fn chunks_stay_bounded() {
        let mut c = chunks();
        let line = "y".repeat(999);
        for _ in 0..(6 << 20) / 1000 {
            c.push(line.clone());
        }
        let body = c.take_chunk();
        assert!(body.len() <= CHUNK_MAX_BYTES && body.len() > CHUNK_MAX_BYTES - 1000);
    }
}
