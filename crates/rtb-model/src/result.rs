//! The result record the runner writes last, and the client and later tools read.

use serde::{Deserialize, Serialize};

/// Version of the record's shape; bumped only for incompatible changes.
pub const RESULT_SCHEMA: u32 = 1;

/// How a job ended, from the runner's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The interpreter ran the command and exited 0.
    Succeeded,
    /// The interpreter exited non-zero (the command raised an error, or the interpreter failed).
    Failed,
    /// The job ran longer than its timeout and was stopped.
    TimedOut,
    /// A signal (docker stop, Ctrl-C) stopped the job.
    Interrupted,
    /// The runner could not do its own part (input copy, interpreter start, output upload).
    RunnerError,
    /// The command succeeded, but some outputs could not be uploaded (see `skipped`).
    Incomplete,
}

/// An output the runner could not upload, and why (a name that is not UTF-8, an unreadable
/// folder, a file that kept changing, a PUT that failed after its retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The local path, as the job wrote it (lossy where it is not UTF-8).
    pub path: String,
    pub reason: String,
}

/// Files and bytes moved by one copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub files: u64,
    pub bytes: u64,
}

/// Seconds spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub input_s: f64,
    pub command_s: f64,
    pub output_s: f64,
    pub total_s: f64,
}

/// What an attempt restored from an earlier attempt's checkpoint before its command ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    /// The attempt whose checkpoint it was (the command sees it as RTB_RESUMED_FROM).
    pub from_attempt: u32,
    /// That attempt's records folder.
    pub from: String,
    /// Files and bytes restored into OUTPUT_SCRATCH.
    pub files: u64,
    pub bytes: u64,
    /// Files the checkpoint listed that could not be restored (the job makes them again).
    #[serde(default)]
    pub missed: u64,
    pub seconds: f64,
}

/// The checkpoints an attempt wrote while its command ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// Manifests written.
    pub count: u64,
    /// Files and bytes uploaded by them (unchanged files are not sent again).
    pub files: u64,
    pub bytes: u64,
    /// Time spent in them (they run beside the command, not instead of it).
    pub seconds: f64,
    /// Files in the newest manifest.
    pub saved: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
}

/// The job's main picture, as the runner found it among the outputs when it uploaded them:
/// what the batch's page shows, and what flags a job that "succeeded" without a usable image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    /// Image files (by extension) among the outputs.
    pub images: u64,
    /// The one chosen (the newest of the largest), as its key below the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub bytes: u64,
    /// Its pixels, when its header could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// The small PNG written into the job's records, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
    /// Why the picture is suspect, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<PictureFlag>,
    /// In words: why the flag, or why there is no thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A thumbnail in the job's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// Its name inside the records folder (`thumbnail.png`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// What is wrong with a job's picture. Renderers are known to exit 0 having written nothing,
/// an empty file, or a truncated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PictureFlag {
    /// No image file among the outputs.
    NoImage,
    /// The image file is empty (0 bytes).
    Empty,
    /// The image has no pixels (0 wide or 0 high).
    NoPixels,
    /// The image cannot be decoded: truncated or corrupt.
    Unreadable,
}

impl PictureFlag {
    /// A few words for a summary line or a card.
    pub fn describe(self) -> &'static str {
        match self {
            PictureFlag::NoImage => "no image",
            PictureFlag::Empty => "empty image",
            PictureFlag::NoPixels => "image without pixels",
            PictureFlag::Unreadable => "unreadable image",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub schema: u32,
    pub job_id: String,
    pub outcome: Outcome,
    /// The runner's exit code (the interpreter's own code when it ran to the end).
    pub exit_code: i32,
    /// `matlab` or `octave`, and the executable that ran.
    pub interpreter: String,
    pub executable: String,
    /// RFC 3339 UTC times.
    pub started_at: String,
    pub finished_at: String,
    pub timings: Timings,
    pub input: Transfer,
    pub output: Transfer,
    /// Log chunks written, and lines in them.
    pub log_chunks: u64,
    pub log_lines: u64,
    /// Outputs that were not uploaded; everything else was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// What went wrong, for every outcome but `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The attempt's number, when the runner was given one (RTB_ATTEMPT, AWS Batch's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What this attempt restored from an earlier attempt's checkpoint, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// The checkpoints this attempt wrote, when checkpoints were on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Checkpoints>,
    /// A spot notice that came while the job ran (it may still have finished in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<crate::checkpoint::Interrupted>,
    /// The job's main picture, when the runner looked (it has records to write a thumbnail to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<Picture>,
    /// The EC2 instance the runner ran on, from the instance metadata, when it could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

impl JobResult {
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let r = JobResult {
            schema: RESULT_SCHEMA,
            job_id: "rr-1".into(),
            outcome: Outcome::TimedOut,
            exit_code: 124,
            interpreter: "octave".into(),
            executable: "octave-cli".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            timings: Timings::default(),
            input: Transfer {
                files: 2,
                bytes: 10,
            },
            output: Transfer::default(),
            log_chunks: 3,
            log_lines: 7,
            skipped: vec![Skipped {
                path: "/out/a.png".into(),
                reason: "PUT failed: 503".into(),
            }],
            error: Some("timed out after 1s".into()),
            attempt: Some(2),
            resumed: Some(Resumed {
                from_attempt: 1,
                from: "s3://out/_rtb-job/rr-1/r1-a1/".into(),
                files: 12,
                bytes: 1200,
                missed: 0,
                seconds: 0.5,
            }),
            checkpoints: Some(Checkpoints {
                count: 2,
                ..Checkpoints::default()
            }),
            notice: None,
            picture: Some(Picture {
                images: 2,
                path: Some("renders/a.exr".into()),
                bytes: 1 << 20,
                width: Some(640),
                height: Some(480),
                thumbnail: Some(Thumbnail {
                    name: "thumbnail.png".into(),
                    width: 320,
                    height: 240,
                    bytes: 9000,
                }),
                flag: None,
                note: None,
            }),
            instance_id: Some("i-0123456789abcdef0".into()),
        };
        let text = r.to_json();
        assert!(text.contains("\"outcome\": \"timed_out\""), "{text}");
        let back: JobResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_older_record_still_reads_and_flags_are_snake_case() {
        // What runners before checkpoints and pictures wrote.
        let old = r#"{"schema":1,"job_id":"j","outcome":"succeeded","exit_code":0,
            "interpreter":"octave","executable":"octave-cli","started_at":"t","finished_at":"t",
            "timings":{"input_s":0,"command_s":0,"output_s":0,"total_s":0},
            "input":{"files":0,"bytes":0},"output":{"files":0,"bytes":0},
            "log_chunks":1,"log_lines":1}"#;
        let r: JobResult = serde_json::from_str(old).unwrap();
        assert_eq!(r.attempt, None);
        assert!(r.resumed.is_none() && r.checkpoints.is_none() && r.notice.is_none());
        // And a record without them writes none of their keys.
        let text = r.to_json();
        for key in ["attempt", "resumed", "checkpoints", "notice"] {
            assert!(!text.contains(&format!("\"{key}\"")), "{key}: {text}");
        }
        assert!(r.picture.is_none() && r.instance_id.is_none());
        assert!(
            !text.contains("picture") && !text.contains("instance_id"),
            "{text}"
        );
        let p = Picture {
            flag: Some(PictureFlag::NoImage),
            ..Picture::default()
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["flag"], "no_image");
        assert_eq!(v["images"], 0);
    }
}
