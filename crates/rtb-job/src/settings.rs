//! The runner's settings: each one a flag and an environment variable (the original contract),
//! parsed raw by clap, then checked in one place into ready-to-use [`Settings`]. Every check
//! that can fail does so here, before any work starts, with a line that names the setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use rtb_model::contract::{
    self, ATTEMPT, COMMAND, EMPTY_SCRATCH, INPUT_BUCKET, INPUT_FLAGS, INPUT_SCRATCH, JOB_ID,
    LOG_BUCKET, MATLAB_EXECUTABLE, MATLAB_PRELOAD, MATLAB_STYLE, MOUNT_BUCKET, MOUNT_FLAGS,
    MOUNT_SCRATCH, OUTPUT_BUCKET, OUTPUT_FLAGS, OUTPUT_SCRATCH, RUN_ID, STARTUP, TIMEOUT,
    TOOLBOXES,
};
use rtb_model::exit::runner as exit;
use rtb_model::manifest::BATCH_ATTEMPT_VAR;
use rtb_model::{JobRecords, S3Url};

use crate::compose::{Interpreter, MatlabStyle};
use crate::mount::{Mount, MOUNT_S3};
use crate::transfer::CopyOptions;

/// What `--help` says after the flags; the exit codes come from `rtb_model::exit::runner`.
fn after_help() -> String {
    let mut text = String::from(
        "Every setting can also be given as the environment variable shown, so `docker run -e NAME=...`
lines written for the original rtb-job.sh keep working. An empty variable means its default
(except MATLAB_PRELOAD, where empty means preload nothing).

RTB_MANIFEST=s3://bucket/key.json (AWS Batch array jobs): read that batch manifest first and take
this child's row (by AWS_BATCH_JOB_ARRAY_INDEX, else the :N suffix of AWS_BATCH_JOB_ID) as the
environment, over the container's own.

Exit codes (outputs, the log and the result record are uploaded in every case but 2 and 7):
",
    );
    for (code, meaning) in exit::TABLE {
        let (code, meaning) = if *code == exit::SIGNAL_BASE {
            let rest = meaning.split_once(": ").map_or(*meaning, |(_, m)| m);
            (format!("{code}+N"), rest)
        } else {
            (code.to_string(), *meaning)
        };
        text.push_str(&format!("  {code:<6} {meaning}\n"));
    }
    text.push_str(
        "
Example:
  rtb-job --interpreter octave --command \"disp(42)\" \\
      --input-bucket s3://lab-data/scene1 --output-bucket s3://lab-renders/scene1",
    );
    text
}

/// The `rtb-job` command line, with its `--help` text.
pub fn command() -> clap::Command {
    Args::command().after_help(after_help())
}

/// Parse the command line and the environment (clap prints usage errors and exits).
pub fn parse_args() -> Args {
    Args::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// A setting's default as clap wants it ("" where the contract has none).
const fn default_of(var: contract::Var) -> &'static str {
    match var.default {
        Some(d) => d,
        None => "",
    }
}

/// Raw settings as given on the command line or in the environment. Names, defaults and help
/// come from `rtb_model::contract`, the one list the client writes and the runner reads.
#[derive(Debug, Parser)]
#[command(
    name = "rtb-job",
    version,
    about = "Run one MATLAB/Octave job: copy inputs from S3, run the command, stream its log, copy outputs back"
)]
pub struct Args {
    #[arg(long, env = STARTUP.name, help = STARTUP.help, value_name = "SCRIPT")]
    pub startup: Option<String>,
    #[arg(long, env = TOOLBOXES.name, help = help_with_default(TOOLBOXES), value_name = "ARGS")]
    pub toolboxes: Option<String>,
    #[arg(long, env = COMMAND.name, help = help_with_default(COMMAND), value_name = "CODE")]
    pub command: Option<String>,

    #[arg(long, env = INPUT_SCRATCH.name, help = INPUT_SCRATCH.help, value_parser = any_path,
          default_value = default_of(INPUT_SCRATCH))]
    pub input_scratch: PathBuf,
    #[arg(long, env = INPUT_BUCKET.name, help = INPUT_BUCKET.help, value_name = "S3_URL")]
    pub input_bucket: Option<String>,
    #[arg(long, env = INPUT_FLAGS.name, help = INPUT_FLAGS.help,
          default_value = default_of(INPUT_FLAGS), allow_hyphen_values = true)]
    pub input_flags: String,

    #[arg(long, env = OUTPUT_SCRATCH.name, help = OUTPUT_SCRATCH.help, value_parser = any_path,
          default_value = default_of(OUTPUT_SCRATCH))]
    pub output_scratch: PathBuf,
    #[arg(long, env = OUTPUT_BUCKET.name, help = OUTPUT_BUCKET.help, value_name = "S3_URL")]
    pub output_bucket: Option<String>,
    #[arg(long, env = OUTPUT_FLAGS.name, help = OUTPUT_FLAGS.help,
          default_value = default_of(OUTPUT_FLAGS), allow_hyphen_values = true)]
    pub output_flags: String,

    #[arg(long, env = MOUNT_SCRATCH.name, help = MOUNT_SCRATCH.help, value_parser = any_path,
          default_value = default_of(MOUNT_SCRATCH))]
    pub mount_scratch: PathBuf,
    #[arg(long, env = MOUNT_BUCKET.name, help = MOUNT_BUCKET.help, value_name = "S3_URL")]
    pub mount_bucket: Option<String>,
    #[arg(long, env = MOUNT_FLAGS.name, help = MOUNT_FLAGS.help,
          default_value = default_of(MOUNT_FLAGS), allow_hyphen_values = true)]
    pub mount_flags: String,

    #[arg(long, env = MATLAB_EXECUTABLE.name, help = MATLAB_EXECUTABLE.help,
          default_value = default_of(MATLAB_EXECUTABLE), value_name = "EXECUTABLE")]
    pub interpreter: String,
    #[arg(long, env = MATLAB_STYLE.name, help = MATLAB_STYLE.help,
          default_value = default_of(MATLAB_STYLE))]
    pub matlab_style: String,
    #[arg(long, env = MATLAB_PRELOAD.name, help = MATLAB_PRELOAD.help,
          default_value = default_of(MATLAB_PRELOAD))]
    pub matlab_preload: String,

    #[arg(long, env = JOB_ID.name, help = JOB_ID.help)]
    pub job_id: Option<String>,
    #[arg(long, env = LOG_BUCKET.name, help = LOG_BUCKET.help, value_name = "S3_URL")]
    pub log_bucket: Option<String>,
    #[arg(long, env = TIMEOUT.name, help = TIMEOUT.help, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[arg(long, env = EMPTY_SCRATCH.name, help = EMPTY_SCRATCH.help, value_name = "1")]
    pub empty_scratch: Option<String>,
    #[arg(long, env = ATTEMPT.name, help = ATTEMPT.help, value_name = "N")]
    pub attempt: Option<String>,
    #[arg(long, env = RUN_ID.name, help = RUN_ID.help, value_name = "RUN")]
    pub run_id: Option<String>,
    /// AWS Batch's attempt number, which AWS Batch sets in every job's environment.
    #[arg(long = "aws-batch-job-attempt", env = BATCH_ATTEMPT_VAR, hide = true)]
    pub batch_attempt: Option<String>,
}

/// Help for a setting whose default is applied after parsing (an empty value means it too),
/// so clap does not show it by itself.
fn help_with_default(var: contract::Var) -> String {
    format!("{} [default: {}]", var.help, default_of(var))
}

/// One S3 copy, ready to run.
#[derive(Debug, Clone)]
pub struct Copy {
    pub bucket: S3Url,
    pub options: CopyOptions,
}

/// Checked settings: everything the job needs, nothing left to parse.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job_id: String,
    pub startup: Option<String>,
    pub toolboxes: String,
    pub command: String,
    pub input_scratch: PathBuf,
    pub input: Option<Copy>,
    pub output_scratch: PathBuf,
    pub output: Option<Copy>,
    pub mount: Option<Mount>,
    pub interpreter: Interpreter,
    /// This attempt's records: the job's folder, or with a run id the attempt's folder in it.
    pub records: Option<JobRecords>,
    pub timeout: Option<Duration>,
    /// The scratch folders emptied before the job (RTB_EMPTY_SCRATCH), for its log.
    pub emptied: Vec<crate::scratch::Emptied>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// With a run id: the job's records folder and the run, under which every attempt of the
    /// run has its folder ([`Settings::attempt_records`]).
    pub attempts: Option<(JobRecords, String)>,
}

impl Settings {
    /// The records of attempt `n` of this run (an earlier attempt's, say), when attempts have
    /// folders of their own (a run id was given).
    pub fn attempt_records(&self, n: u32) -> Option<JobRecords> {
        self.attempts.as_ref().map(|(job, run)| job.attempt(run, n))
    }
}

/// A setting that cannot be used, named as the user wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        setting,
        problem: problem.into(),
    }
}

/// A path, empty allowed (clap's own PathBuf parser refuses ""): an empty variable means the
/// default, as in the original.
fn any_path(s: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

/// Treat an empty value like an absent one, as the original's `${VAR:=default}` did.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn s3_url(setting: &'static str, value: &Option<String>) -> Result<Option<S3Url>, SettingError> {
    given(value)
        .map(|v| v.parse::<S3Url>().map_err(|e| bad(setting, e.to_string())))
        .transpose()
}

impl Args {
    /// Check every setting; the only place raw values become [`Settings`].
    pub fn check(mut self, now: std::time::SystemTime) -> Result<Settings, SettingError> {
        self.empty_means_default();
        let job_id = match given(&self.job_id) {
            Some(id) => check_job_id(id)?,
            None => default_job_id(now),
        };

        let input = s3_url(contract::INPUT_BUCKET.name, &self.input_bucket)?
            .map(|bucket| {
                CopyOptions::parse(contract::INPUT_FLAGS.name, &self.input_flags)
                    .map(|options| Copy { bucket, options })
                    .map_err(|e| bad(contract::INPUT_FLAGS.name, strip_setting(&e.to_string())))
            })
            .transpose()?;
        let output = s3_url(contract::OUTPUT_BUCKET.name, &self.output_bucket)?
            .map(|bucket| {
                CopyOptions::parse(contract::OUTPUT_FLAGS.name, &self.output_flags)
                    .map(|options| Copy { bucket, options })
                    .map_err(|e| bad(contract::OUTPUT_FLAGS.name, strip_setting(&e.to_string())))
            })
            .transpose()?;
        if let Some(out) = &output {
            if !out.options.recursive {
                return Err(bad(
                    contract::OUTPUT_FLAGS.name,
                    "copying OUTPUT_SCRATCH (a folder) needs --recursive",
                ));
            }
        }
        let mount = s3_url(contract::MOUNT_BUCKET.name, &self.mount_bucket)?
            .map(|bucket| {
                shlex::split(&self.mount_flags)
                    .ok_or_else(|| {
                        bad(contract::MOUNT_FLAGS.name, "unbalanced quotes in the value")
                    })
                    .map(|flags| Mount {
                        bucket,
                        point: self.mount_scratch.clone(),
                        flags,
                    })
            })
            .transpose()?;

        let job_records = match s3_url(contract::LOG_BUCKET.name, &self.log_bucket)? {
            Some(root) => Some(JobRecords::at(root)),
            None => output
                .as_ref()
                .map(|o| JobRecords::under_output(&o.bucket, &job_id)),
        };
        let attempt = match (given(&self.attempt), given(&self.batch_attempt)) {
            (Some(n), _) => attempt_number(contract::ATTEMPT.name, n)?,
            (None, Some(n)) => attempt_number(BATCH_ATTEMPT_VAR, n)?,
            (None, None) => 1,
        };
        let run_id = given(&self.run_id)
            .map(|r| {
                if rtb_model::layout::parse_attempt_dir(&rtb_model::layout::attempt_dir(r, 1))
                    .is_some_and(|(run, _)| run == r)
                    && !r.contains('/')
                {
                    Ok(r.to_string())
                } else {
                    Err(bad(
                        contract::RUN_ID.name,
                        format!("'{r}' is not a run id (r and letters, digits, no '/')"),
                    ))
                }
            })
            .transpose()?;
        let attempts = run_id.and_then(|run| job_records.clone().map(|base| (base, run)));
        let records = match &attempts {
            Some((base, run)) => Some(base.attempt(run, attempt)),
            None => job_records,
        };

        let timeout = given(&self.timeout)
            .map(|t| {
                humantime::parse_duration(t).map_err(|e| {
                    bad(
                        contract::TIMEOUT.name,
                        format!("'{t}' is not a duration ({e}); write e.g. 6h, 90m or 1h30m"),
                    )
                })
            })
            .transpose()?;
        if timeout == Some(Duration::ZERO) {
            return Err(bad(contract::TIMEOUT.name, "must be longer than zero"));
        }

        let style = MatlabStyle::parse(&self.matlab_style).ok_or_else(|| {
            bad(
                contract::MATLAB_STYLE.name,
                format!("'{}' is not one of batch, r, auto", self.matlab_style),
            )
        })?;
        let interpreter = Interpreter::resolve(&self.interpreter, style, &self.matlab_preload)
            .map_err(|e| bad(contract::MATLAB_EXECUTABLE.name, e))?;

        let empty = match given(&self.empty_scratch) {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(bad(
                    contract::EMPTY_SCRATCH.name,
                    format!("'{other}' is not 1 or 0"),
                ))
            }
        };
        let mut emptied = Vec::new();
        for (setting, dir) in [
            (contract::INPUT_SCRATCH.name, &self.input_scratch),
            (contract::OUTPUT_SCRATCH.name, &self.output_scratch),
        ] {
            usable_dir(dir).map_err(|e| bad(setting, e))?;
            if empty {
                emptied.push(crate::scratch::empty(setting, dir).map_err(|e| bad(setting, e))?);
            }
        }
        if let Some(m) = &mount {
            if crate::compose::find_executable(MOUNT_S3).is_none() {
                return Err(bad(
                    contract::MOUNT_BUCKET.name,
                    "mount-s3 (Mountpoint for Amazon S3) is not installed in this image; install it, or copy the data with INPUT_BUCKET instead",
                ));
            }
            usable_dir(&m.point).map_err(|e| bad(contract::MOUNT_SCRATCH.name, e))?;
            if empty {
                emptied.push(
                    crate::scratch::empty(contract::MOUNT_SCRATCH.name, &m.point)
                        .map_err(|e| bad(contract::MOUNT_SCRATCH.name, e))?,
                );
            }
        }

        Ok(Settings {
            job_id,
            startup: given(&self.startup).map(str::to_string),
            toolboxes: given(&self.toolboxes).unwrap_or("''").to_string(),
            // COMMAND is code: keep it as written, only an all-blank value means the default.
            command: match self.command {
                Some(c) if !c.trim().is_empty() => c,
                _ => "ver".to_string(),
            },
            input_scratch: self.input_scratch,
            input,
            output_scratch: self.output_scratch,
            output,
            mount,
            interpreter,
            records,
            timeout,
            emptied,
            attempt,
            attempts,
        })
    }
}

/// An attempt number: 1 or more.
fn attempt_number(setting: &'static str, value: &str) -> Result<u32, SettingError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            bad(
                setting,
                format!("'{value}' is not an attempt number (1, 2, ...)"),
            )
        })
}

impl Args {
    /// The original's `${VAR:=default}`: a variable set to "" gets its default, as an unset
    /// one does. (MATLAB_PRELOAD is the exception: empty means "preload nothing".)
    fn empty_means_default(&mut self) {
        for (value, var) in [
            (&mut self.input_flags, contract::INPUT_FLAGS),
            (&mut self.output_flags, contract::OUTPUT_FLAGS),
            (&mut self.interpreter, contract::MATLAB_EXECUTABLE),
            (&mut self.matlab_style, contract::MATLAB_STYLE),
        ] {
            if value.trim().is_empty() {
                *value = default_of(var).to_string();
            }
        }
        for (path, var) in [
            (&mut self.input_scratch, contract::INPUT_SCRATCH),
            (&mut self.output_scratch, contract::OUTPUT_SCRATCH),
            (&mut self.mount_scratch, contract::MOUNT_SCRATCH),
        ] {
            if path.as_os_str().is_empty() {
                *path = PathBuf::from(default_of(var));
            }
        }
    }
}

/// The copy options' own errors already name the setting; ours adds it once.
fn strip_setting(message: &str) -> String {
    message
        .split_once(": ")
        .filter(|(head, _)| head.ends_with("_FLAGS"))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| message.to_string())
}

fn check_job_id(id: &str) -> Result<String, SettingError> {
    rtb_model::job_id::check(id)
        .map(|()| id.to_string())
        .map_err(|e| bad(contract::JOB_ID.name, e))
}

fn default_job_id(now: std::time::SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("rtb-job-{compact}")
}

/// Create the folder if needed and make sure we can write in it.
fn usable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".rtb-job-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    std::fs::read_dir(dir)
        .map(|_| ())
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let dir = std::env::temp_dir().join(format!("rtb-settings-{}", std::process::id()));
        let mut v = vec![
            "rtb-job".to_string(),
            "--interpreter".into(),
            "octave-cli".into(),
        ];
        for (flag, sub) in [("--input-scratch", "in"), ("--output-scratch", "out")] {
            if !extra.contains(&flag) {
                v.extend([flag.to_string(), dir.join(sub).display().to_string()]);
            }
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        Args::try_parse_from(v).unwrap()
    }

    fn error_of(extra: &[&str]) -> String {
        args(extra)
            .check(std::time::SystemTime::now())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_their_setting() {
        assert!(error_of(&["--input-bucket", "bucket/x"]).starts_with("INPUT_BUCKET: "));
        assert!(error_of(&["--output-bucket", "s3://"]).starts_with("OUTPUT_BUCKET: "));
        assert!(error_of(&["--timeout", "soon"]).starts_with("RTB_TIMEOUT: "));
        assert!(error_of(&["--matlab-style", "x"]).starts_with("MATLAB_STYLE: "));
        let e = error_of(&["--input-bucket", "s3://bkt/x", "--input-flags", "--sse"]);
        assert!(e.starts_with("INPUT_FLAGS: ") && e.contains("--sse"), "{e}");
        assert!(error_of(&["--job-id", "a/b"]).starts_with("RTB_JOB_ID: "));
        let e = error_of(&[
            "--output-bucket",
            "s3://bkt/x",
            "--output-flags",
            "--exclude",
        ]);
        assert!(e.starts_with("OUTPUT_FLAGS: "), "{e}");
    }

    /// RTB_EMPTY_SCRATCH=1 empties both scratch folders (an earlier job's files), and only
    /// when asked; a value that is not 1 or 0 is refused.
    #[test]
    fn scratch_is_emptied_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let (inp, out) = (d.path().join("in"), d.path().join("out"));
        let flags = |empty: Option<&str>| {
            let mut v = vec![
                "--input-scratch".to_string(),
                inp.display().to_string(),
                "--output-scratch".to_string(),
                out.display().to_string(),
            ];
            if let Some(e) = empty {
                v.extend(["--empty-scratch".to_string(), e.to_string()]);
            }
            v
        };
        let check = |extra: Vec<String>| {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            args(&extra).check(std::time::SystemTime::now())
        };
        for dir in [&inp, &out] {
            std::fs::create_dir_all(dir.join("old")).unwrap();
            std::fs::write(dir.join("old/frame.exr"), "left by job 1").unwrap();
        }
        let s = check(flags(None)).unwrap();
        assert!(s.emptied.is_empty());
        assert!(
            out.join("old/frame.exr").exists(),
            "not asked: nothing goes"
        );
        let s = check(flags(Some("1"))).unwrap();
        assert_eq!(s.emptied.len(), 2);
        assert!(s.emptied.iter().all(|e| e.removed == 1), "{:?}", s.emptied);
        for dir in [&inp, &out] {
            assert_eq!(
                std::fs::read_dir(dir).unwrap().count(),
                0,
                "{}",
                dir.display()
            );
        }
        let e = check(flags(Some("yes"))).unwrap_err().to_string();
        assert!(
            e.starts_with("RTB_EMPTY_SCRATCH: 'yes' is not 1 or 0"),
            "{e}"
        );
    }

    #[test]
    fn unknown_interpreter_is_refused() {
        let dir = std::env::temp_dir();
        let e = Args::try_parse_from([
            "rtb-job",
            "--interpreter",
            "python3",
            "--output-scratch",
            dir.to_str().unwrap(),
            "--input-scratch",
            dir.to_str().unwrap(),
        ])
        .unwrap()
        .check(std::time::SystemTime::now())
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("MATLAB_EXECUTABLE: "), "{e}");
    }

    #[test]
    fn unwritable_scratch_is_refused() {
        let e = error_of(&["--output-scratch", "/proc/rtb-job-cannot-exist"]);
        assert!(e.starts_with("OUTPUT_SCRATCH: cannot create"), "{e}");
    }

    #[test]
    fn empty_values_mean_defaults_as_in_the_original() {
        let s = args(&[
            "--output-bucket",
            "s3://bkt/run",
            "--output-flags",
            " ",
            "--input-flags",
            "",
        ])
        .check(std::time::SystemTime::now())
        .unwrap();
        assert!(s.output.unwrap().options.recursive);
        let mut a =
            Args::try_parse_from(["rtb-job", "--output-scratch", "", "--interpreter", ""]).unwrap();
        a.empty_means_default();
        assert_eq!(a.interpreter, "matlab");
        assert_eq!(a.output_scratch, PathBuf::from("/output-scratch"));
    }

    #[test]
    fn help_lists_the_contract_and_every_exit_code() {
        let help = command().render_long_help().to_string();
        for var in contract::ALL {
            assert!(help.contains(&format!("env: {}", var.name)), "{}", var.name);
            assert!(help.contains(var.help), "{}", var.name);
        }
        for (code, meaning) in exit::TABLE {
            let line = if *code == exit::SIGNAL_BASE {
                "128+N  stopped by signal N".to_string()
            } else {
                format!("{code:<6} {meaning}")
            };
            assert!(help.contains(&line), "{line}\n{help}");
        }
        assert!(help.contains("[default: /output-scratch]"), "{help}");
    }

    #[test]
    fn attempts_of_a_run_get_folders_of_their_own() {
        let check = |extra: &[&str]| args(extra).check(std::time::SystemTime::now());
        let base = ["--output-bucket", "s3://bkt/run", "--job-id", "j1"];
        let with = |more: &[&'static str]| -> Vec<&str> {
            base.iter().chain(more.iter()).copied().collect()
        };
        // No run id: the job's folder, attempt 1 (a plain `run`, the original contract).
        let s = check(&base).unwrap();
        assert_eq!(s.attempt, 1);
        assert_eq!(
            s.records.unwrap().result_key(),
            "run/_rtb-job/j1/result.json"
        );
        // A run id: the attempt's folder; AWS Batch's attempt number, unless one is given.
        let s = check(&with(&[
            "--run-id",
            "r20261201T101500",
            "--aws-batch-job-attempt",
            "3",
        ]))
        .unwrap();
        assert_eq!(s.attempt, 3);
        assert_eq!(
            s.records.as_ref().unwrap().result_key(),
            "run/_rtb-job/j1/r20261201T101500-a3/result.json"
        );
        assert_eq!(
            s.attempt_records(2).unwrap().root().to_string(),
            "s3://bkt/run/_rtb-job/j1/r20261201T101500-a2/"
        );
        let s = check(&with(&[
            "--run-id",
            "r1",
            "--attempt",
            "2",
            "--aws-batch-job-attempt",
            "5",
            "--log-bucket",
            "s3://logs/j1",
        ]))
        .unwrap();
        assert_eq!(s.attempt, 2);
        assert_eq!(s.records.unwrap().root().to_string(), "s3://logs/j1/r1-a2/");
        // Bad values name their setting.
        for (extra, want) in [
            (&["--attempt", "0"][..], "RTB_ATTEMPT: "),
            (
                &["--aws-batch-job-attempt", "x"][..],
                "AWS_BATCH_JOB_ATTEMPT: ",
            ),
            (&["--run-id", "../x"][..], "RTB_RUN_ID: "),
        ] {
            let e = check(&with(extra)).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn records_default_under_output() {
        let s = args(&["--output-bucket", "s3://bkt/run", "--job-id", "j1"])
            .check(std::time::SystemTime::now())
            .unwrap();
        let r = s.records.unwrap();
        assert_eq!(r.result_key(), "run/_rtb-job/j1/result.json");
        assert_eq!(s.toolboxes, "''");
        assert_eq!(s.command, "ver");
    }
}
