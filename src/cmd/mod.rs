//! One module per subcommand; each takes its parsed flags and returns the exit code.
//! What they share: connecting, finding a job, printing.

pub mod attach;
pub mod aws_batch;
pub mod batch;
pub mod cleanup;
pub mod cost;
pub mod list;
pub mod logs;
pub mod report;
pub mod run;
pub mod status;
pub mod stop;

use std::io::Write;
use std::time::SystemTime;

use rtb_model::{JobRecords, S3Url};

use crate::cli::AwsArgs;
use crate::cloud::{Cloud, Connect, Select, TaggedInstance};
use crate::plan::Plan;
use crate::registry::{Entry, Registry};
use crate::report::exit;

/// Write `text` to stdout, all of it; a closed pipe (`run-render --dry-run | head`) or a
/// full disk is one line and exit 2, not a panic.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            crate::ui::stderr_line("run-render: stdout was closed before the output was written");
        } else {
            crate::ui::stderr_line(&format!("run-render: cannot write to stdout: {e}"));
        }
        std::process::exit(exit::BAD_INPUT);
    }
}

/// Refused input: one line, exit 2 (with `--json`, one JSON document too).
pub fn bad_input(message: &str, json: bool) -> i32 {
    crate::ui::stderr_line(&format!("run-render: {message}"));
    if json {
        // Scripts get their one JSON document on every path.
        let doc = serde_json::json!({
            "outcome": "bad_input",
            "exit_code": exit::BAD_INPUT,
            "instance": "not_launched",
            "error": message,
        });
        emit(&format!("{doc}\n"));
    }
    exit::BAD_INPUT
}

/// A failure of the command itself (AWS refused, not found...): one line and `code`.
pub fn fail(message: &str, code: i32) -> i32 {
    crate::ui::stderr_line(&format!("run-render: {message}"));
    code
}

pub fn block_on(f: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => fail(
            &format!("cannot start the async runtime: {e}"),
            exit::BAD_INPUT,
        ),
    }
}

/// The clients for a job's plan. A call may take at most half the patience, so giving up is
/// never late.
pub async fn connect_for(plan: &Plan) -> Cloud {
    Cloud::connect(&Connect {
        region: plan.region.clone(),
        profile: plan.profile.clone(),
        endpoint_url: plan.endpoint_url.clone(),
        call_limit: Some(crate::cloud::CALL_LIMIT.min(plan.api_patience / 2)),
    })
    .await
}

/// The clients for a subcommand: its flags, else what the job's registry entry recorded,
/// else the usual AWS settings.
pub async fn connect(aws: &AwsArgs, entry: Option<&Entry>) -> Cloud {
    Cloud::connect(&Connect {
        region: aws
            .region
            .clone()
            .or_else(|| entry.and_then(|e| e.region.clone())),
        profile: aws
            .profile
            .clone()
            .or_else(|| entry.and_then(|e| e.profile.clone())),
        endpoint_url: aws
            .endpoint_url
            .clone()
            .or_else(|| entry.and_then(|e| e.endpoint_url.clone())),
        call_limit: None,
    })
    .await
}

/// Parse `--output`, or say what is wrong with it.
pub fn output_url(output: &Option<String>) -> Result<Option<S3Url>, String> {
    output
        .as_deref()
        .map(|o| o.parse::<S3Url>().map_err(|e| format!("--output: {e}")))
        .transpose()
}

/// A job found from the registry, its instance's tags and S3.
#[derive(Debug, Clone)]
pub struct Found {
    pub job_id: String,
    pub entry: Option<Entry>,
    pub instance: Option<TaggedInstance>,
    pub records: Option<JobRecords>,
}

impl Found {
    /// A container job (it has records), not a raw shell command.
    pub fn container(&self) -> bool {
        self.records.is_some() || self.entry.as_ref().is_some_and(|e| !e.shell)
    }

    pub fn deadline(&self) -> Option<SystemTime> {
        self.instance.as_ref().and_then(|i| i.deadline).or_else(|| {
            self.entry
                .as_ref()
                .and_then(|e| e.deadline.as_deref())
                .and_then(|d| humantime::parse_rfc3339(d).ok())
        })
    }
}

/// Find a job: the registry's entry (this workstation started it), then its instance (by the
/// id recorded, else by its launch tokens, else by its `rtb:job-id` tag, else by its batch
/// attempt's record), then its records (`--output`, the entry, or the instance's
/// `rtb:records` tag). A batch pool's instance counts only while it runs this job: it goes
/// on to other jobs, and its tags never name them.
pub async fn find(
    cloud: &Cloud,
    registry: &Registry,
    job_id: &str,
    output: Option<&S3Url>,
) -> Result<Found, crate::cloud::CloudError> {
    let entry = registry.get(job_id);
    let mut instance = None;
    if let Some(id) = entry.as_ref().and_then(|e| e.instance_id.clone()) {
        let ids = [id];
        instance = cloud
            .tagged_instances(&Select {
                ids: &ids,
                ..Select::default()
            })
            .await?
            .into_iter()
            .next();
    }
    if instance.is_none() {
        for token in entry.iter().flat_map(|e| e.launch_tokens.iter()) {
            let mut got = cloud
                .tagged_instances(&Select {
                    launch_token: Some(token),
                    ..Select::default()
                })
                .await?;
            if let Some(i) = got.pop() {
                instance = Some(i);
                break;
            }
        }
    }
    let records = match output {
        Some(o) => Some(
            cloud
                .newest_attempt(JobRecords::under_output(o, job_id))
                .await?,
        ),
        None => None,
    };
    let records = match records {
        Some(r) => Some(r),
        None => match &entry {
            Some(e) => from_entry(cloud, e).await?,
            None => None,
        },
    };
    if instance.is_none() && entry.as_ref().is_none_or(|e| e.launch_tokens.is_empty()) {
        // From anywhere: the job's tag. A re-run under the same id (another output) is told
        // apart by its records tag; the newest launch wins.
        let mut got = cloud
            .tagged_instances(&Select {
                job_id: Some(job_id),
                ..Select::default()
            })
            .await?;
        if let (Some(r), Some(o)) = (&records, output) {
            // Its records are the job's folder, or one of its attempts' under it (batches).
            let base = JobRecords::under_output(o, job_id).root().to_string();
            let root = r.root().to_string();
            got.retain(|i| {
                i.records
                    .as_deref()
                    .is_none_or(|t| t == root || t.starts_with(&base))
            });
        }
        got.sort_by_key(|i| i.launched);
        instance = got.pop();
    }
    let records = records.or_else(|| {
        instance
            .as_ref()
            .and_then(|i| i.records.as_deref())
            .and_then(|r| r.parse::<S3Url>().ok())
            .map(JobRecords::at)
    });
    if instance.is_none() {
        // A batch job on a pool instance: its attempt's record names the instance.
        if let Some(a) = match &records {
            Some(r) => cloud.attempt_record(r).await?,
            None => None,
        } {
            let ids = [a.instance_id];
            instance = cloud
                .tagged_instances(&Select {
                    ids: &ids,
                    ..Select::default()
                })
                .await?
                .into_iter()
                .next();
        }
    }
    let instance = match instance {
        Some(i) if i.pool.is_some() => running_on_pool(cloud, i, job_id).await?,
        other => other,
    };
    Ok(Found {
        job_id: job_id.to_string(),
        entry,
        instance,
        records,
    })
}

/// How deep below an output `jobs_under` looks for job records: a batch's rows usually write
/// to one or two folders below a common prefix (`s3://lab/run-1/${scene}/`).
const LOOKUP_DEPTH: usize = 2;
/// At most this many folders are listed in the search: it never walks a whole render tree.
const LOOKUP_LISTS: usize = 500;

/// The jobs whose records are under `output`: (job id, the job's own output), sorted by job
/// id. Records live at `<output>/_rtb-job/<job id>/`; the search also looks in the folders one
/// and two levels below `output`, and stops after [`LOOKUP_LISTS`] listings (the bool says it
/// stopped early).
pub async fn jobs_under(
    cloud: &Cloud,
    output: &S3Url,
) -> Result<(Vec<(String, S3Url)>, bool), crate::cloud::CloudError> {
    let records_dir = rtb_model::layout::RECORDS_DIR;
    let mut found = Vec::new();
    let mut level = vec![output.clone()];
    let mut lists = 0;
    for depth in 0..=LOOKUP_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            if lists >= LOOKUP_LISTS {
                found.sort_by(|a: &(String, S3Url), b| a.0.cmp(&b.0));
                return Ok((found, true));
            }
            lists += 1;
            let subs = cloud.subfolders(dir.bucket(), &dir.dir_prefix()).await?;
            for sub in subs {
                if sub == records_dir {
                    let jobs = dir.join(&format!("{records_dir}/"));
                    lists += 1;
                    for job in cloud.subfolders(jobs.bucket(), &jobs.dir_prefix()).await? {
                        if rtb_model::job_id::check(&job).is_ok() {
                            found.push((job, dir.clone()));
                        }
                    }
                } else if depth < LOOKUP_DEPTH {
                    next.push(dir.join(&format!("{sub}/")));
                }
            }
        }
        level = next;
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((found, false))
}

/// One line for `status`/`logs --output` when the search finds nothing.
pub fn nothing_under(output: &S3Url, stopped_early: bool) -> String {
    format!(
        "no job records under {output} (looked for {}/ there and up to {LOOKUP_DEPTH} folders below{}): is it the jobs' --output?",
        rtb_model::layout::RECORDS_DIR,
        if stopped_early {
            format!("; stopped after {LOOKUP_LISTS} listings: give a narrower prefix")
        } else {
            String::new()
        }
    )
}

/// The records a registry entry names. On AWS Batch, where AWS Batch (not this client) makes
/// the retries, the entry names the first attempt's: the job's current one is the newest.
async fn from_entry(
    cloud: &Cloud,
    entry: &Entry,
) -> Result<Option<JobRecords>, crate::cloud::CloudError> {
    let Some(records) = entry
        .records
        .as_deref()
        .and_then(|r| r.parse::<S3Url>().ok())
        .map(JobRecords::at)
    else {
        return Ok(None);
    };
    match (&entry.aws_batch_queue, records.as_attempt()) {
        (Some(_), Some((base, _, _))) => cloud.newest_attempt(base).await.map(Some),
        _ => Ok(Some(records)),
    }
}

/// A pool instance, when it runs `job_id` now (with the deadline that job gave it), or None
/// (the job ended, and the instance may be running others). An instance already gone is
/// kept: it says how the job's instance ended.
async fn running_on_pool(
    cloud: &Cloud,
    mut i: TaggedInstance,
    job_id: &str,
) -> Result<Option<TaggedInstance>, crate::cloud::CloudError> {
    if i.state.is_gone() {
        return Ok(Some(i));
    }
    let seen = crate::inventory::pool::fetch(cloud, &i).await?;
    if !seen.runs(job_id) {
        return Ok(None);
    }
    i.deadline = seen
        .current
        .iter()
        .filter(|c| c.job_id == job_id)
        .filter_map(|c| c.deadline)
        .max()
        .or(i.deadline);
    Ok(Some(i))
}

/// `12m`, `3h04m`, `2d05h`: ages and times left, short.
pub fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
