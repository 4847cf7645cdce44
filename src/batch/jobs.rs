//! From a batch file to its jobs: each row's `[job]` table, expanded, becomes the argument
//! list of a `run` and is parsed by the same definition as the command line (flags given to
//! `batch` come last and win), then checked as `run` checks it. Nothing here calls AWS.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::SystemTime;

use super::expand;
use super::file::{err, BatchFile, FileError, Row};
use crate::cli::{self, RunArgs};
use crate::plan::{AmiFrom, Plan, Work};
use rtb_model::JobRecords;

/// `spot-retries` when `[batch]` does not say: reclaims retried on spot before a job goes on
/// demand. Three reclaims of one job in a row is already rare at typical interruption rates
/// (under 5 % a month for most types), so a fourth says spot is not working for it.
pub const DEFAULT_SPOT_RETRIES: u32 = 3;

/// How a batch runs, from `[batch]` and the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub parallel: usize,
    pub per_instance: usize,
    pub retries: u32,
    pub retry_on_job_error: bool,
    pub spot: bool,
    pub spot_fallback: bool,
    /// Spot reclaims a job may have (each retried on spot, without using up `retries`) before
    /// it goes on demand (if `spot_fallback`).
    pub spot_retries: u32,
    pub engine: Engine,
    pub queue: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// This client drives a pool of instances.
    Ec2,
    /// AWS Batch queues, places and retries the jobs.
    AwsBatch,
}

/// One job of a batch.
#[derive(Debug, Clone)]
pub struct BatchJob {
    pub row: Row,
    pub job_id: String,
    /// The instance's Name tag.
    pub name: String,
    /// The job's flags, as `run` would have them.
    pub args: RunArgs,
    /// The plan as checked when the file was read (each attempt plans again: its deadline and
    /// launch token are its own).
    pub plan: Plan,
    /// Where its AMI comes from (the engine's).
    pub ami_from: AmiFrom,
}

impl BatchJob {
    /// A fresh plan for attempt `attempt` (1, 2, ...), as a job of batch `batch`.
    ///
    /// Each attempt keeps its records in a folder of its own under the job's
    /// (`_rtb-job/<job id>/<run>-a<attempt>/`): a retry or a resumed run never mixes its log
    /// with an earlier attempt's, and every attempt's log and result stay. The runner is told
    /// the attempt's number, and on spot to watch for the interruption notice (so that a
    /// reclaim leaves its record in the attempt's records).
    pub fn plan_attempt(&self, batch: &str, run: &str, attempt: u32, spot: bool) -> Plan {
        let mut plan = Plan::from_args_for(self.args.clone(), SystemTime::now(), self.ami_from)
            .unwrap_or_else(|_| self.plan.clone())
            .in_batch(batch)
            .attempt(attempt);
        if let Some(base) = self.records_base() {
            plan = plan.with_records(base.attempt(run, attempt));
        }
        if spot {
            plan = plan.watching_notices();
        }
        // A token of its own per attempt: EC2 would answer a retried launch with the instance
        // the earlier attempt lost.
        let base: String = plan.launch.client_token.chars().take(56).collect();
        plan.launch.client_token = format!("{base}-a{attempt}");
        plan.launch.spot = spot;
        plan
    }

    /// The folder under which every attempt of this job keeps its records.
    pub fn records_base(&self) -> Option<JobRecords> {
        self.plan
            .output
            .as_ref()
            .map(|o| JobRecords::under_output(o, &self.job_id))
    }

    pub fn settings(&self) -> BTreeMap<String, String> {
        match &self.plan.work {
            Work::Container(c) => c.env.iter().cloned().collect(),
            Work::Shell(_) => BTreeMap::new(),
        }
    }

    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings().get(name).cloned()
    }

    /// What the row asks this job to run: the image, the volumes and the runner's settings
    /// (command, inputs, outputs...), without those that differ between attempts of one row
    /// (its records folder, its timeout). `--resume` runs the job again when they changed.
    pub fn what_it_runs(&self) -> BTreeMap<String, String> {
        const PER_ATTEMPT: &[&str] = &[
            "LOG_BUCKET",
            "RTB_TIMEOUT",
            "RTB_ATTEMPT",
            "RTB_RESUMED_FROM",
        ];
        let Work::Container(c) = &self.plan.work else {
            return BTreeMap::new();
        };
        let mut ran: BTreeMap<String, String> = c
            .env
            .iter()
            .filter(|(k, _)| !PER_ATTEMPT.contains(&k.as_str()))
            .cloned()
            .collect();
        ran.insert("image".into(), c.image.clone());
        let volumes: Vec<String> = c
            .volumes
            .iter()
            .map(|(h, ctr, ro)| format!("{h}:{ctr}{}", if *ro { ":ro" } else { "" }))
            .collect();
        ran.insert("volumes".into(), volumes.join(" "));
        ran
    }
}

/// The settings that differ between what an earlier attempt ran and what the row asks now
/// (their names), for `--resume`.
pub fn changed_settings(
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<String> = before
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(now.keys().filter(|k| !before.contains_key(*k)).cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The policy: `[batch]` values, then the command line's.
pub fn policy(
    file: &BatchFile,
    parallel: Option<u32>,
    engine: Option<&str>,
    queue: Option<&str>,
) -> Result<Policy, FileError> {
    let s = &file.settings;
    let at = file.path.display().to_string();
    let engine = match engine.or(s.engine.as_deref()).unwrap_or("ec2") {
        "ec2" => Engine::Ec2,
        "aws-batch" => Engine::AwsBatch,
        other => {
            return Err(err(
                "--engine",
                format!("'{other}' is not an engine (ec2 or aws-batch)"),
            ))
        }
    };
    let parallel = parallel.or(s.parallel).unwrap_or(4);
    if parallel == 0 {
        return Err(err("--parallel", "must be at least 1"));
    }
    let queue = queue.map(str::to_string).or_else(|| s.queue.clone());
    if engine == Engine::AwsBatch && queue.is_none() {
        return Err(err(
            format!("{at}: [batch] queue"),
            "the aws-batch engine needs a job queue (queue = \"...\" or --queue; `run-render aws-batch setup` makes one)",
        ));
    }
    Ok(Policy {
        parallel: parallel as usize,
        per_instance: s.per_instance.unwrap_or(1) as usize,
        retries: s.retries.unwrap_or(2),
        retry_on_job_error: s.retry_on_job_error.unwrap_or(false),
        spot: s.spot.unwrap_or(false),
        spot_fallback: s.spot_fallback.unwrap_or(true),
        spot_retries: s.spot_retries.unwrap_or(DEFAULT_SPOT_RETRIES),
        engine,
        queue,
    })
}

/// Every row's job, checked: the template's keys and columns once, then each row's values
/// as `run` checks its flags; job ids unique; the launch the same for every row (a pool's
/// instances are shared).
pub fn jobs(
    file: &BatchFile,
    given: &[OsString],
    engine: Engine,
) -> Result<Vec<BatchJob>, FileError> {
    let ami_from = match engine {
        Engine::Ec2 => AmiFrom::Job,
        Engine::AwsBatch => AmiFrom::ComputeEnvironment,
    };
    expand_rows(file, given, Some(ami_from))
}

/// The one job of a job file (`run --file`): a batch file without csv, run as `run` runs it.
pub fn single(file: &BatchFile, given: &[OsString]) -> Result<RunArgs, FileError> {
    if file.csv.is_some() {
        return Err(err(
            file.path.display().to_string(),
            "has a csv (one job per row): run it with `run-render batch`",
        ));
    }
    let mut jobs = expand_rows(file, given, None)?;
    Ok(jobs.remove(0).args)
}

/// `batch`: the engine's AMI rule for a batch's rows; `None` for the one job of a job file.
fn expand_rows(
    file: &BatchFile,
    given: &[OsString],
    batch: Option<AmiFrom>,
) -> Result<Vec<BatchJob>, FileError> {
    let ami_from = batch.unwrap_or(AmiFrom::Job);
    let batch = batch.is_some();
    let at = file.path.display().to_string();
    let keys = cli::job_keys();
    let columns: Vec<String> = file.csv.as_ref().map(|c| c.1.clone()).unwrap_or_default();
    let csv_name = file
        .csv
        .as_ref()
        .map(|c| c.0.display().to_string())
        .unwrap_or_default();
    // The template, once: known keys, known columns.
    for (key, value) in &file.template {
        let here = format!("{at}: [job] {key}");
        if cli::COMMAND_FLAGS.contains(&key.replace('-', "_").as_str()) {
            return Err(err(
                here,
                "is a flag of the batch command, not of a job (give it on the command line)",
            ));
        }
        if !keys.iter().any(|(k, _, _)| k == key) {
            let hint = closest(key, keys.iter().map(|(k, _, _)| k.as_str()))
                .map(|k| format!(" (did you mean {k}?)"))
                .unwrap_or_default();
            return Err(err(
                here,
                format!("is not a flag of `run-render run`{hint}"),
            ));
        }
        for s in strings(value) {
            let named = expand::columns(s).map_err(|e| err(&here, e.to_string()))?;
            for c in named {
                if !columns.iter().any(|h| h == c) {
                    let problem = if file.csv.is_none() {
                        format!("${{{c}}} names a column, but [batch] has no csv")
                    } else {
                        format!(
                            "${{{c}}} is not a column of {csv_name} (its columns: {})",
                            columns.join(", ")
                        )
                    };
                    return Err(err(here, problem));
                }
            }
        }
    }
    let explicit_id = file.template.contains_key("job-id")
        || given
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--job-id"));
    let mut out: Vec<BatchJob> = Vec::with_capacity(file.rows.len());
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for row in &file.rows {
        let here = if file.csv.is_some() {
            format!("{csv_name}: row {} (line {})", row.number, row.line)
        } else {
            at.clone()
        };
        let mut argv: Vec<OsString> = vec!["run-render".into(), "run".into()];
        for (key, value) in &file.template {
            let (_, takes, repeats) = keys
                .iter()
                .find(|(k, _, _)| k == key)
                .cloned()
                .unwrap_or_default();
            let column_of = |s: &str| {
                expand::columns(s)
                    .ok()
                    .and_then(|c| c.first().map(|c| c.to_string()))
            };
            let expanded = |s: &str| {
                expand::expand(s, |c| row.values.get(c).map(String::as_str))
                    .map_err(|e| err(format!("{here}, [job] {key}"), e.to_string()))
            };
            match value {
                toml::Value::Boolean(b) if !takes => {
                    if *b {
                        argv.push(format!("--{key}").into());
                    }
                }
                toml::Value::Array(items) if takes && (repeats || key == "security-group") => {
                    for item in items {
                        let v = scalar(item).ok_or_else(|| {
                            err(
                                format!("{at}: [job] {key}"),
                                "holds a value that is not text or a number",
                            )
                        })?;
                        argv.push(format!("--{key}={}", expanded(&v)?).into());
                    }
                }
                v if takes => {
                    let s = scalar(v).ok_or_else(|| {
                        err(
                            format!("{at}: [job] {key}"),
                            if matches!(v, toml::Value::Array(_)) {
                                "takes one value, not a list".to_string()
                            } else {
                                "needs text or a number".to_string()
                            },
                        )
                    })?;
                    let value = expanded(&s)?;
                    if value.is_empty() && column_of(&s).is_some() {
                        return Err(err(
                            format!("{here}, column '{}'", column_of(&s).unwrap_or_default()),
                            format!("is empty, and [job] {key} needs a value"),
                        ));
                    }
                    argv.push(format!("--{key}={value}").into());
                }
                _ => {
                    return Err(err(
                        format!("{at}: [job] {key}"),
                        "is an on/off flag: true or false",
                    ))
                }
            }
        }
        if !explicit_id && batch {
            argv.push(format!("--job-id={}-{}", file.name, row.number).into());
        }
        argv.extend(given.iter().cloned());
        let args = cli::parse_run(&argv).map_err(|e| {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            err(&here, first)
        })?;
        let plan = Plan::from_args_for(args.clone(), SystemTime::now(), ami_from)
            .map_err(|e| err(&here, e.to_string()))?;
        if !batch {
            out.push(BatchJob {
                row: row.clone(),
                job_id: plan.job_id.clone(),
                name: String::new(),
                args,
                plan,
                ami_from,
            });
            continue;
        }
        let Work::Container(_) = &plan.work else {
            return Err(err(
                &here,
                "batch jobs run the container (--command); a raw --shell command keeps no records to follow or resume",
            ));
        };
        if plan.output.is_none() {
            return Err(err(
                &here,
                "--output is required for a batch job: its outputs, log and result record go there",
            ));
        }
        if let Some(first) = ids.insert(plan.job_id.clone(), row.number) {
            return Err(err(
                &here,
                format!(
                    "job id '{}' is also row {first}'s; give each row its own (job-id = \"...${{column}}\")",
                    plan.job_id
                ),
            ));
        }
        if let Some(first) = out.first() {
            if let Some(what) = launch_difference(&first.plan, &plan) {
                return Err(err(
                    &here,
                    format!("{what} differs from row {}'s; a batch's instances are shared, so the launch (ami, instance-type, disk-gb, subnet, security-group, iam-profile, region, endpoint) must be the same in every row", first.row.number),
                ));
            }
        }
        let name = plan
            .launch
            .tags
            .iter()
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.push(BatchJob {
            row: row.clone(),
            job_id: plan.job_id.clone(),
            name,
            args,
            plan,
            ami_from,
        });
    }
    if let Some(clash) = shared_output(&out) {
        let (a, b) = (&out[clash.first], &out[clash.second]);
        let here = format!("{csv_name}: row {} (line {})", b.row.number, b.row.line);
        let (oa, ob) = (output_text(a), output_text(b));
        return Err(err(
            here,
            if clash.same {
                format!("writes to the same output as row {} ({ob}); the rows would overwrite each other's files: give each row its own output (output = \"s3://...${{column}}\")", a.row.number)
            } else {
                format!("its output {ob} and row {}'s output {oa} are one inside the other; the rows would overwrite each other's files: give each row an output of its own, neither inside another's", a.row.number)
            },
        ));
    }
    Ok(out)
}

fn output_text(j: &BatchJob) -> String {
    j.plan
        .output
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_default()
}

/// Two rows whose outputs are the same folder, or one inside the other (indexes into the
/// jobs, in row order).
#[derive(Debug, PartialEq, Eq)]
struct Clash {
    first: usize,
    second: usize,
    same: bool,
}

/// The first pair of jobs whose outputs overlap. Job ids are unique, but two rows with the
/// same output (or one output inside another's) would upload over each other. Sorted, a
/// folder comes right before everything inside it, so neighbours are enough.
fn shared_output(jobs: &[BatchJob]) -> Option<Clash> {
    let mut folders: Vec<(&str, String, usize)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let o = j.plan.output.as_ref()?;
            Some((o.bucket(), o.dir_prefix(), i))
        })
        .collect();
    folders.sort();
    folders
        .windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[1].1.starts_with(&w[0].1))
        .map(|w| Clash {
            first: w[0].2.min(w[1].2),
            second: w[0].2.max(w[1].2),
            same: w[0].1 == w[1].1,
        })
        .min_by_key(|c| c.second)
}

/// The launch settings two jobs of one pool must share; the first that differs.
fn launch_difference(a: &Plan, b: &Plan) -> Option<&'static str> {
    let (x, y) = (&a.launch, &b.launch);
    if x.ami != y.ami {
        Some("ami")
    } else if x.instance_types != y.instance_types {
        Some("instance-type")
    } else if x.disk_gb != y.disk_gb {
        Some("disk-gb")
    } else if x.subnet != y.subnet {
        Some("subnet")
    } else if x.security_groups != y.security_groups {
        Some("security-group")
    } else if x.iam_profile != y.iam_profile {
        Some("iam-profile")
    } else if a.region != b.region || a.profile != b.profile || a.endpoint_url != b.endpoint_url {
        Some("region/profile/endpoint")
    } else {
        None
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every string in a value (lists included).
fn strings(v: &toml::Value) -> Vec<&str> {
    match v {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The known key nearest to a mistyped one (at most two edits away).
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn batch(dir: &Path, csv: &str, job: &str) -> Result<Vec<BatchJob>, FileError> {
        std::fs::write(dir.join("jobs.csv"), csv).unwrap();
        let f = dir.join("b.toml");
        std::fs::write(&f, format!("[batch]\ncsv = \"jobs.csv\"\n[job]\n{job}")).unwrap();
        jobs(&BatchFile::load(&f)?, &[], Engine::Ec2)
    }

    const JOB: &str = "ami = \"ami-0123456789abcdef0\"\ncommand = \"render(${n})\"\noutput = \"s3://lab-bucket/${n}\"\n";

    #[test]
    fn rows_become_jobs_and_flags_override_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n\n1\n2\n").unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(&f, format!("[batch]\ncsv = \"jobs.csv\"\n[job]\n{JOB}instance-type = \"m5.large\"\nvolume = [\"/a:/a\", \"/${{n}}:/n\"]\nkeep = false\n")).unwrap();
        let file = BatchFile::load(&f).unwrap();
        let given: Vec<OsString> =
            vec!["--instance-type=c5.4xlarge".into(), "--volume=/c:/c".into()];
        let js = jobs(&file, &given, Engine::Ec2).unwrap();
        assert_eq!(js.len(), 2);
        assert_eq!(js[0].job_id, "b-1");
        assert_eq!(js[1].job_id, "b-2");
        assert_eq!(js[1].setting("COMMAND").as_deref(), Some("render(2)"));
        assert_eq!(js[1].plan.launch.instance_types, ["c5.4xlarge"]);
        assert_eq!(js[1].args.job.work.volumes, ["/a:/a", "/2:/n", "/c:/c"]);
        assert!(!js[0].plan.keep);
        let p = js[0].plan_attempt("b", "r1", 2, true);
        assert_eq!(
            p.work_records().map(|r| r.root().to_string()).as_deref(),
            Some("s3://lab-bucket/1/_rtb-job/b-1/r1-a2/")
        );
        assert!(
            p.launch.client_token.ends_with("-a2"),
            "{}",
            p.launch.client_token
        );
        assert!(p.launch.spot);
        assert!(p.launch.tags.contains(&("rtb:batch".into(), "b".into())));
    }

    /// Rows whose outputs are the same folder, or one inside another's, would overwrite each
    /// other's files: refused before anything runs, naming both rows.
    #[test]
    fn rows_sharing_an_output_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let job = "ami = \"ami-0123456789abcdef0\"\ncommand = \"r(${n})\"\noutput = \"${o}\"\njob-id = \"j${n}\"\n";
        let cases: &[(&str, Option<&str>)] = &[
            // (csv, the refusal, or None when the outputs are apart)
            ("n,o\n1,s3://bkt/x\n2,s3://bkt/y\n3,s3://ckt/x\n", None),
            ("n,o\n1,s3://bkt/ab\n2,s3://bkt/a\n", None),
            ("n,o\n1,s3://bkt/x\n2,s3://bkt/y\n3,s3://bkt/x/\n", Some("row 3 (line 4): writes to the same output as row 1 (s3://bkt/x/)")),
            ("n,o\n1,s3://bkt/a/deeper\n2,s3://bkt/z\n3,s3://bkt/a\n", Some("row 3 (line 4): its output s3://bkt/a and row 1's output s3://bkt/a/deeper are one inside the other")),
            ("n,o\n1,s3://bkt\n2,s3://bkt/k\n", Some("row 2 (line 3): its output s3://bkt/k and row 1's output s3://bkt/ are one inside the other")),
        ];
        for (csv, want) in cases {
            let got = batch(d.path(), csv, job);
            match want {
                None => assert_eq!(
                    got.map(|j| j.len()).unwrap(),
                    csv.lines().count() - 1,
                    "{csv}"
                ),
                Some(want) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.contains(want), "{csv:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn only_the_ec2_engine_needs_an_ami() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n\n1\n").unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(
            &f,
            "[batch]\ncsv = \"jobs.csv\"\n[job]\ncommand = \"r\"\noutput = \"s3://lab-bucket/${n}\"\n",
        )
        .unwrap();
        let file = BatchFile::load(&f).unwrap();
        let e = jobs(&file, &[], Engine::Ec2).unwrap_err().to_string();
        assert!(e.contains("--ami: is required"), "{e}");
        let js = jobs(&file, &[], Engine::AwsBatch).unwrap();
        assert_eq!(js[0].plan.launch.ami, "");
        assert_eq!(js[0].plan_attempt("b", "r1", 1, false).launch.ami, "");
        // Given, it is still checked.
        let given: Vec<OsString> = vec!["--ami=ami-xyz".into()];
        let e = jobs(&file, &given, Engine::AwsBatch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an AMI id"), "{e}");
    }

    #[test]
    fn an_attempt_tells_the_runner_its_number_and_on_spot_to_watch_the_notice() {
        let d = tempfile::tempdir().unwrap();
        let js = batch(
            d.path(),
            "n\n1\n",
            &format!("{JOB}checkpoint-every = \"15m\"\n"),
        )
        .unwrap();
        let env = |p: &Plan| match &p.work {
            Work::Container(c) => c.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            Work::Shell(_) => BTreeMap::new(),
        };
        let spot = env(&js[0].plan_attempt("b", "r1", 3, true));
        assert_eq!(spot.get("RTB_ATTEMPT").map(String::as_str), Some("3"));
        assert_eq!(
            spot.get("RTB_WATCH_NOTICES").map(String::as_str),
            Some("on")
        );
        assert_eq!(
            spot.get("RTB_CHECKPOINT_EVERY").map(String::as_str),
            Some("15m")
        );
        let on_demand = env(&js[0].plan_attempt("b", "r1", 1, false));
        assert_eq!(on_demand.get("RTB_ATTEMPT").map(String::as_str), Some("1"));
        assert!(!on_demand.contains_key("RTB_WATCH_NOTICES"));
        // Where the pool will find an attempt's checkpoint to resume from.
        let base = js[0].records_base().unwrap();
        let resumed = env(&js[0]
            .plan_attempt("b", "r1", 2, true)
            .resuming(&base.attempt("r1", 1)));
        assert_eq!(
            resumed.get("RTB_RESUME_FROM").map(String::as_str),
            Some("s3://lab-bucket/1/_rtb-job/b-1/r1-a1/")
        );
    }

    #[test]
    fn spot_retries_is_a_batch_key_with_a_default_of_three() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n\n1\n").unwrap();
        let policy_of = |batch: &str| {
            let f = d.path().join("p.toml");
            std::fs::write(
                &f,
                format!("[batch]\ncsv = \"jobs.csv\"\n{batch}[job]\n{JOB}"),
            )
            .unwrap();
            policy(&BatchFile::load(&f)?, None, None, None)
        };
        assert_eq!(policy_of("").unwrap().spot_retries, 3);
        assert_eq!(policy_of("spot-retries = 0\n").unwrap().spot_retries, 0);
        let e = policy_of("spot-retries = -1\n").unwrap_err().to_string();
        assert!(e.contains("p.toml: line 3: invalid value"), "{e}");
        let e = policy_of("spot-retry = 2\n").unwrap_err().to_string();
        assert!(e.contains("spot-retry"), "{e}");
    }

    #[test]
    fn bad_rows_and_keys_are_named() {
        let d = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str, &str)] = &[
            ("n\n1\n", "instanse-type = \"x\"\n", "[job] instanse-type: is not a flag of `run-render run` (did you mean instance-type?)"),
            ("n\n1\n", "json = true\n", "[job] json: is a flag of the batch command"),
            ("n\n1\n", "startup = \"${m}\"\n", "[job] startup: ${m} is not a column of"),
            ("n\n1\n2\n", "job-id = \"same\"\n", "row 2 (line 3): job id 'same' is also row 1's"),
            ("n\n1\nnot a url\n", "", ""),
            ("n,o\n1,s3://lab-bucket/x\n2,http://lab-bucket\n", "", ""),
            ("n\n1\n2\n", "instance-type = \"m5.${n}xlarge\"\n", "row 2 (line 3): instance-type differs from row 1's"),
            ("n\n1\n", "keep = \"yes\"\n", "[job] keep: is an on/off flag"),
            ("n\n1\n", "timeout = [\"1h\"]\n", "[job] timeout: takes one value, not a list"),
        ];
        for (csv, extra, want) in cases {
            if want.is_empty() {
                continue;
            }
            let e = batch(d.path(), csv, &format!("{JOB}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        // A row whose expanded output is not an S3 URL: refused with its row.
        let e = batch(
            d.path(),
            "n,o\n1,s3://lab-bucket/x\n2,http://lab-bucket\n",
            "ami = \"ami-0123456789abcdef0\"\ncommand = \"r\"\noutput = \"${o}\"\njob-id = \"j${n}\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("row 2 (line 3): --output"), "{e}");
    }
}
