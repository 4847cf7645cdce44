//! The job's log: every line goes to stdout as it comes, the interpreter's lines also to
//! `matlab.log` in OUTPUT_SCRATCH (uploaded with the outputs), and all lines to numbered log
//! chunks in S3 (see `rtb_model::layout`) so a client can follow the job live.
//!
//! One task owns the outputs; everyone else sends lines to it through a cheap cloneable [`Log`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use rtb_model::JobRecords;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A chunk is written at most this long after its first line: the client promises to show a
/// new line within about 2 s. A PUT a second costs ~$0.02 an hour of output (S3 standard
/// request pricing), small next to the instance.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A chunk is written early when it grows past this, so a flood of output stays in bounded
/// memory and bounded objects.
const CHUNK_MAX_BYTES: usize = 4 << 20;

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
    pub lines: u64,
    pub chunks: u64,
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
    /// Start the sink. `file` receives the interpreter's lines; `records` the chunks.
    pub fn start(file: PathBuf, records: Option<(aws_sdk_s3::Client, JobRecords)>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, file, records));
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
) -> LogStats {
    let mut file = match std::fs::File::create(&file_path) {
        Ok(f) => Some(std::io::BufWriter::new(f)),
        Err(e) => {
            eprintln!("[rtb-job] cannot write {}: {e}", file_path.display());
            None
        }
    };
    let mut chunks = records.map(|(client, records)| Chunks {
        client,
        records,
        buffer: String::new(),
        next_seq: 1,
        failing: false,
    });
    let mut stats = LogStats::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Line(source, text)) => {
                    stats.lines += 1;
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
                        c.buffer.push_str(&line);
                        c.buffer.push('\n');
                        if c.buffer.len() >= CHUNK_MAX_BYTES {
                            c.flush().await;
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
            _ = tick.tick() => {
                if let Some(c) = chunks.as_mut() {
                    c.flush().await;
                }
            }
        }
    }
    if let Some(mut f) = file.take() {
        let _ = f.flush();
    }
    if let Some(c) = chunks.as_mut() {
        c.flush().await;
        if !c.buffer.is_empty() {
            // One last try: the result record is written after this, so the log is complete.
            c.flush().await;
        }
        stats.chunks = c.next_seq - 1;
    }
    stats
}

struct Chunks {
    client: aws_sdk_s3::Client,
    records: JobRecords,
    buffer: String,
    next_seq: u64,
    failing: bool,
}

impl Chunks {
    /// Write the buffered lines as the next chunk. On failure the lines stay buffered and go
    /// out with the next chunk: a chunk number is used only once it is written.
    async fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let key = self.records.chunk_key(self.next_seq);
        let put = self
            .client
            .put_object()
            .bucket(self.records.bucket())
            .key(&key)
            .content_type("text/plain; charset=utf-8")
            .body(ByteStream::from(self.buffer.clone().into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => {
                self.buffer.clear();
                self.next_seq += 1;
                if self.failing {
                    eprintln!("[rtb-job] log chunks are being written again");
                    self.failing = false;
                }
            }
            Err(e) => {
                if !self.failing {
                    eprintln!(
                        "[rtb-job] cannot write log chunk s3://{}/{key}: {}; will retry",
                        self.records.bucket(),
                        crate::transfer::S3Cause::from_sdk(&e)
                    );
                    self.failing = true;
                }
            }
        }
    }
}
