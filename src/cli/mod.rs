//! The command line, as raw values: the subcommands and their flags. `plan` turns a job's
//! flags into a checked plan; `cmd/` runs each subcommand.

mod job;

use clap::{Args, Parser, Subcommand};

pub use job::{AwsArgs, JobArgs, LaunchArgs, LimitsArgs, WorkArgs, CONTAINER_FLAGS};

const RUN_EXAMPLES: &str = "\
Examples:
  # A RenderToolbox test on a fresh instance; outputs and the log under s3://lab-renders/test-1
  run-render --ami ami-0abc1234def567890 --iam-profile run-render-instance \\
      --matlab-root /usr/local/MATLAB/R2019b --volume /home/ubuntu:/home/ubuntu \\
      --startup /home/ubuntu/MATLAB/startup --toolboxes \"{'RenderToolbox4','isetbio'}\" \\
      --command \"rtbTestInstallation()\" --output s3://lab-renders/test-1

  # Launch it and go home: the instance runs the job, saves it, and ends itself
  run-render run --ami ami-0abc1234def567890 --command \"render()\" --output s3://lab/r1 --detach
  run-render status; run-render logs rr-20261124-053012-1a2b --follow

  # See what would be launched, and the script the instance would run, without launching
  run-render --ami ami-0abc1234def567890 --command \"ver\" --dry-run

  # A raw shell command on the instance (no container), result as JSON for scripts
  run-render --ami ami-0abc1234def567890 --shell \"docker images; df -h\" --json";

fn exit_codes() -> String {
    let mut s = String::from(
        "Exit codes: the job's own exit code when it ran (0 = success, 1 = MATLAB error, 6 = some \
         outputs skipped, 124 = its --timeout expired; see rtb-job --help for the rest); the \
         client's own failures:\n",
    );
    for (code, meaning) in rtb_model::exit::client::TABLE {
        s.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    s.push_str(
        "Every flag can also be set with the environment variable shown ([env: RUN_RENDER_...]);\n\
         AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL work as for every AWS tool.",
    );
    s
}

fn run_help() -> String {
    format!("{RUN_EXAMPLES}\n\n{}", exit_codes())
}

#[derive(Debug, Parser)]
#[command(
    name = "run-render",
    version,
    about = "Run MATLAB rendering jobs on short-lived EC2 instances: launch, run the rtb-support container through SSM, stream the log, terminate",
    long_about = "Run MATLAB rendering jobs on short-lived EC2 instances: launch, run the rtb-support \
        container through SSM, stream the log, terminate.\n\nWithout a subcommand, the flags are \
        those of `run`: `run-render --ami ... --command ...` runs one job.",
    after_help = run_help(),
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

// Parsed once per process: the size of `Run` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one job (the default: a bare list of flags means `run`).
    #[command(after_help = run_help(), args_override_self = true)]
    Run(RunArgs),
    /// Run a batch file's jobs (one per CSV row) on a pool of instances, with retries and
    /// resume; the flags of `run` given here override the file's [job] table.
    #[command(after_help = BATCH_HELP, args_override_self = true)]
    Batch(BatchArgs),
    /// One line per job: its state, instance, times, exit code and output.
    #[command(
        after_help = "Examples:\n  run-render status                       # the jobs this workstation started recently\n  run-render status rr-20261124-053012-1a2b --json\n  run-render status J1 --output s3://lab-renders/run-1   # from any machine: S3 and tags alone\n  run-render status --output s3://lab-renders/run-1      # every job whose records are under it"
    )]
    Status(StatusArgs),
    /// The job's whole log from S3, or follow it live with --follow (Ctrl-C leaves the job alone).
    #[command(
        after_help = "Examples:\n  run-render logs rr-20261124-053012-1a2b\n  run-render logs J1 --output s3://lab-renders/run-1 --follow\n  run-render logs --output s3://lab-renders/run-1   # from any machine: every job under it"
    )]
    Logs(LogsArgs),
    /// Stop a job as the first Ctrl-C does (its outputs saved), then terminate and confirm.
    #[command(after_help = "Example:\n  run-render stop rr-20261124-053012-1a2b")]
    Stop(StopArgs),
    /// Follow a detached job as `run` would, terminating it at the end (unless --detach).
    #[command(after_help = "Example:\n  run-render attach rr-20261124-053012-1a2b")]
    Attach(AttachArgs),
    /// The tool's own instances (tag rtb:tool): id, job, owner, state, age, time left, type.
    #[command(after_help = "Examples:\n  run-render list\n  run-render list --all-owners --json")]
    List(ListArgs),
    /// Terminate the tool's instances that should not be running (job ended, deadline passed,
    /// no job and old). Only instances carrying our tags; by default only your own.
    #[command(
        after_help = "Examples:\n  run-render cleanup --dry-run\n  run-render cleanup --yes --older-than 2h"
    )]
    Cleanup(CleanupArgs),
    /// What jobs cost: this workstation's cost records (or the jobs under --output), by job,
    /// batch or owner, with the price each figure came from.
    #[command(
        after_help = "Examples:\n  run-render cost                          # the last 7 days, by job\n  run-render cost --batch vwcc2 --by batch\n  run-render cost --since 30d --by owner --json\n  run-render cost --output s3://lab-renders/run-1   # from any machine: the records in S3"
    )]
    Cost(CostReportArgs),
    /// Write a batch's page: one self-contained HTML file with every job's picture, a
    /// timeline of the instances and attempts, and each failed job's error and log tail.
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Print the IAM policies the client and the instance need (ami/iam/).
    Policy,
    /// AWS Batch, the engine for queued batches with no client: set up or tear down its
    /// compute environment, job queue and IAM roles.
    #[command(subcommand, name = "aws-batch")]
    AwsBatch(AwsBatchCmd),
    /// Print a shell completion script: run-render completions bash > /etc/bash_completion.d/run-render
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `run` (and the bare flag list).
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Launch, wait until the job has started, print how to follow it, and exit: the instance
    /// runs the job, saves its outputs and log, and powers itself off when the job ends.
    #[arg(long, help_heading = "Output")]
    pub detach: bool,
    /// Print what would be launched and the script it would run; launch nothing.
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,
    /// Print one JSON result document on stdout (the job's log goes to stderr).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Same as the `policy` subcommand.
    #[arg(long, hide = true)]
    pub print_policy: bool,
    #[command(flatten)]
    pub cost: CostArgs,
    /// Take the job's flags from a job file's [job] table (a batch file without csv); flags
    /// given here override it.
    #[arg(long, value_name = "FILE.toml", help_heading = "Output")]
    pub file: Option<std::path::PathBuf>,
    /// Flags given on the command line itself (not from the environment or defaults).
    #[arg(skip)]
    pub explicit: Vec<String>,
    /// The job flags given on the command line, as arguments (`--name=value`): what overrides
    /// a job file.
    #[arg(skip)]
    pub given: Vec<std::ffi::OsString>,
}

const BATCH_HELP: &str = "\
The batch file (TOML):
  [batch]
  csv = \"jobs.csv\"          # one job per data row, relative to this file
  parallel = 4               # jobs running at once
  per-instance = 1           # jobs at once on one instance
  retries = 2                # extra attempts when the instance was the problem
  [job]                      # every `run` flag by its long name; ${column} is the row's value
  ami = \"ami-0abc1234def567890\"
  command = \"render(${scene})\"
  output = \"s3://lab-renders/${scene}\"
  job-id = \"scene-${scene}\"

Examples:
  run-render batch vwcc2.toml --dry-run          # every expanded job; nothing launched
  run-render batch vwcc2.toml                    # run it: progress, then a summary
  run-render batch vwcc2.toml --resume           # only the jobs that have not succeeded
  run-render batch vwcc2.toml --instance-type c5.4xlarge   # a flag overrides the file
  run-render status --batch vwcc2";

/// What the job may cost: the price to count with, and a budget (`run` and `batch`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cost")]
pub struct CostArgs {
    /// The instance's price in USD per hour, for labs on a negotiated rate or credits; wins
    /// over the AWS Price List and spot price history [default: from AWS; [batch] price]
    #[arg(long, env = "RUN_RENDER_PRICE", value_name = "USD_PER_HOUR")]
    pub price: Option<String>,
    /// Never spend more than this many USD on instances: nothing starts that would pass it
    /// (AWS Batch: what has not started is cancelled at it), and a detached instance's
    /// deadline is set so its worst case fits [[batch] max-cost]
    #[arg(long, env = "RUN_RENDER_MAX_COST", value_name = "USD")]
    pub max_cost: Option<String>,
}

/// `batch FILE`.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// The batch file (TOML: [batch] and [job]).
    #[arg(value_name = "FILE.toml")]
    pub path: std::path::PathBuf,
    /// Run only the jobs without a succeeded result, or whose row changed since (after a
    /// failure or a crash). Refused while the earlier run may still be alive.
    #[arg(long, conflicts_with = "rerun", help_heading = "Batch")]
    pub resume: bool,
    /// Run every job again, even those that succeeded.
    #[arg(long, help_heading = "Batch")]
    pub rerun: bool,
    /// Where each job's whole log is written [default: run-render-logs/<batch name>/]
    #[arg(long, value_name = "DIR", help_heading = "Batch")]
    pub log_dir: Option<std::path::PathBuf>,
    /// Jobs running at once (overrides [batch] parallel).
    #[arg(long, help_heading = "Batch")]
    pub parallel: Option<u32>,
    /// Which engine runs the jobs: ec2 (this client drives a pool of instances) or aws-batch
    /// (overrides [batch] engine).
    #[arg(long, help_heading = "Batch")]
    pub engine: Option<String>,
    /// The AWS Batch job queue (overrides [batch] queue).
    #[arg(long, help_heading = "Batch")]
    pub queue: Option<String>,
    /// At the budget (--max-cost): "finish" lets running jobs complete, "stop" stops them as
    /// Ctrl-C does, outputs saved (overrides [batch] on-budget) [default: finish]
    #[arg(long, value_name = "finish|stop", help_heading = "Cost")]
    pub on_budget: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Job ids [default: the jobs this workstation started in the last 7 days]
    pub jobs: Vec<String>,
    /// Where the job's outputs went (its --output): find it from S3 and tags alone.
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    /// Print one JSON document (a list of jobs) on stdout.
    #[arg(long)]
    pub json: bool,
    /// The jobs of this batch (its name: the batch file's [batch] name or file name).
    #[arg(long, value_name = "NAME")]
    pub batch: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

const REPORT_HELP: &str = "\
The batch writes its page by itself (beside its logs, every 30 s while it runs, and at the
end, with a copy next to its outputs in S3); `report` writes it again, up to date, from the
registry and the jobs' records in S3.

Examples:
  run-render report --batch vwcc2                  # run-render-logs/vwcc2/report.html
  run-render report --batch vwcc2 --open           # ... and open it in the browser
  run-render report --batch vwcc2 --output s3://lab-renders/vwcc2 --out vwcc2.html
                                                   # from any machine: S3 alone";

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The batch (its [batch] name, or its file's name).
    #[arg(long, value_name = "NAME")]
    pub batch: String,
    /// Where to write the page [default: run-render-logs/<batch>/report.html]
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Where the batch's outputs are (the folder its rows' outputs share): find its jobs, and
    /// the page it left, from S3 alone.
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    /// Open the page in the browser once it is written.
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The job [default: the jobs whose records are under --output]
    #[arg(required_unless_present = "output")]
    pub job: Option<String>,
    /// Follow the log live until the job ends.
    #[arg(long, short)]
    pub follow: bool,
    /// Where the job's outputs went (its --output).
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `aws-batch setup|teardown`.
#[derive(Debug, Clone, Subcommand)]
pub enum AwsBatchCmd {
    /// Create or update, idempotently, the compute environment, the job queue and the IAM
    /// roles a queue needs (--dry-run: print what would be done).
    #[command(
        after_help = "Example:\n  run-render aws-batch setup --queue rtb-renders --ami ami-0abc1234def567890 \\\n      --instance-type m6i.2xlarge,m6i.4xlarge --max-vcpus 256 --spot \\\n      --subnet subnet-0abc --security-group sg-0abc --output-bucket lab-renders --dry-run"
    )]
    Setup(AwsBatchSetupArgs),
    /// Remove what setup made for the queue (--dry-run: print what would be removed).
    Teardown(AwsBatchSetupArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AwsBatchSetupArgs {
    /// The job queue; every other name derives from it (<queue>-ce, <queue>-instance...).
    #[arg(long)]
    pub queue: String,
    /// The ECS-ready AMI (ami/README.md) [default: AWS's ECS-optimized AMI]
    #[arg(long)]
    pub ami: Option<String>,
    /// Instance types the compute environment may launch (comma-separated, or "optimal").
    #[arg(long, default_value = "optimal", value_delimiter = ',')]
    pub instance_type: Vec<String>,
    /// The most vCPUs running at once (the queue's ceiling on cost); it scales to zero.
    #[arg(long, default_value_t = 256)]
    pub max_vcpus: u32,
    /// Spot instances (SPOT_CAPACITY_OPTIMIZED unless --allocation-strategy).
    #[arg(long)]
    pub spot: bool,
    #[arg(long)]
    pub allocation_strategy: Option<String>,
    #[arg(long = "subnet", value_delimiter = ',')]
    pub subnets: Vec<String>,
    #[arg(long = "security-group", value_delimiter = ',')]
    pub security_groups: Vec<String>,
    /// Buckets the jobs read (the instance role's S3 read access); repeatable.
    #[arg(long = "input-bucket")]
    pub input_buckets: Vec<String>,
    /// Buckets the jobs write; repeatable.
    #[arg(long = "output-bucket")]
    pub output_buckets: Vec<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `cost`.
#[derive(Debug, Clone, Args)]
pub struct CostReportArgs {
    /// Only this batch's jobs.
    #[arg(long, value_name = "NAME")]
    pub batch: Option<String>,
    /// How far back [default: 7d]
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub since: String,
    /// One row per job, batch or owner.
    #[arg(long, default_value = "job", value_parser = ["job", "batch", "owner"])]
    pub by: String,
    /// Read the records of the jobs under this output in S3 (from any workstation).
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The job [or --batch NAME]
    #[arg(required_unless_present = "batch")]
    pub job: Option<String>,
    /// Stop every job of this batch: on the EC2 engine its client here is asked to stop as
    /// Ctrl-C does, then each job still running as `stop JOB` does (outputs saved), each
    /// instance ended once none of its jobs runs; on AWS Batch your jobs of that name on the
    /// queue (others' are left alone), one TerminateJob per array, waiting until they ended.
    #[arg(long, value_name = "NAME", conflicts_with = "job")]
    pub batch: Option<String>,
    /// The AWS Batch queue, when this workstation did not submit the batch.
    #[arg(long, requires = "batch")]
    pub queue: Option<String>,
    /// Where the job's outputs went (its --output).
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    pub job: String,
    /// Where the job's outputs went (its --output).
    #[arg(long, value_name = "S3_URL")]
    pub output: Option<String>,
    /// Only follow: leave the instance to end itself when the job ends (Ctrl-C leaves the job
    /// alone).
    #[arg(long)]
    pub detach: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Every owner's instances, not only yours (tag rtb:owner).
    #[arg(long)]
    pub all_owners: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Only list what would be terminated.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (needed when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Every owner's instances, not only yours.
    #[arg(long)]
    pub all_owners: bool,
    /// An instance with no job record is ended once it is this old.
    #[arg(long, default_value = "2h", value_name = "DURATION")]
    pub older_than: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// The subcommand to run, with the ids of the flags typed on the command line.
pub fn parse() -> Cmd {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = |name: &str| {
        let c = command.find_subcommand(name).cloned();
        matches.subcommand_matches(name).zip(c)
    };
    match cli.cmd {
        Some(Cmd::Run(mut run)) => {
            if let Some((m, c)) = sub("run") {
                run.explicit = explicit(m);
                run.given = given(&c, m);
            }
            Cmd::Run(run)
        }
        Some(Cmd::Batch(mut batch)) => {
            if let Some((m, c)) = sub("batch") {
                batch.run.explicit = explicit(m);
                batch.run.given = given(&c, m);
            }
            Cmd::Batch(batch)
        }
        Some(other) => other,
        None => {
            let mut run = cli.run;
            run.explicit = explicit(&matches);
            run.given = given(&command, &matches);
            Cmd::Run(run)
        }
    }
}

/// Flags that belong to the command (how it runs, where it prints), never to a job: a job
/// file cannot set them, and they are not passed on to its jobs.
pub const COMMAND_FLAGS: &[&str] = &[
    "detach",
    "dry_run",
    "json",
    "print_policy",
    "file",
    "resume",
    "rerun",
    "log_dir",
    "parallel",
    "engine",
    "queue",
    "price",
    "max_cost",
    "on_budget",
];

/// The job flags given on the command line, as `--long=value` arguments (one per value), in
/// a form `parse_run` reads back: what overrides a job file's values.
pub fn given(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for id in explicit(matches) {
        if COMMAND_FLAGS.contains(&id.as_str()) {
            continue;
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id.as_str()) else {
            continue;
        };
        let Some(long) = arg.get_long() else { continue };
        let takes_value = arg.get_action().takes_values();
        if !takes_value {
            out.push(format!("--{long}").into());
            continue;
        }
        for v in matches.get_raw(id.as_str()).into_iter().flatten() {
            let mut a = std::ffi::OsString::from(format!("--{long}="));
            a.push(v);
            out.push(a);
        }
    }
    out
}

/// The long names of `run`'s job flags: the keys a job file's [job] table may use, with
/// whether each takes a value and may repeat.
pub fn job_keys() -> Vec<(String, bool, bool)> {
    use clap::CommandFactory;
    let command = Cli::command();
    let Some(run) = command.find_subcommand("run") else {
        return Vec::new();
    };
    run.get_arguments()
        .filter(|a| !COMMAND_FLAGS.contains(&a.get_id().as_str()))
        .filter_map(|a| {
            let takes = a.get_action().takes_values();
            let repeats = matches!(a.get_action(), clap::ArgAction::Append);
            a.get_long().map(|l| (l.to_string(), takes, repeats))
        })
        .collect()
}

/// `run` flags from an argument list (the first item is the program name), with the ids of
/// the flags it gives; a batch file's rows are parsed this way too.
pub fn parse_run<I, T>(argv: I) -> Result<RunArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(match cli.cmd {
        Some(Cmd::Run(mut run)) => {
            if let Some(sub) = matches.subcommand_matches("run") {
                run.explicit = explicit(sub);
            }
            run
        }
        _ => {
            let mut run = cli.run;
            run.explicit = explicit(&matches);
            run
        }
    })
}

/// Ids of the arguments given on the command line itself.
pub fn explicit(matches: &clap::ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| {
            matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|id| id.as_str().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_flag_list_means_run() {
        let cli = Cli::try_parse_from([
            "run-render",
            "--ami",
            "ami-0123456789abcdef0",
            "--command",
            "ver",
        ])
        .unwrap();
        assert!(cli.cmd.is_none());
        assert_eq!(
            cli.run.job.launch.ami.as_deref(),
            Some("ami-0123456789abcdef0")
        );
        let cli = Cli::try_parse_from([
            "run-render",
            "run",
            "--ami",
            "ami-0123456789abcdef0",
            "--detach",
        ])
        .unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Run(ref r)) if r.detach));
        let cli = Cli::try_parse_from(["run-render", "status", "j1", "j2", "--json"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Status(ref s)) if s.jobs == ["j1", "j2"] && s.json));
        // Flags of `run` do not mix with another subcommand.
        assert!(
            Cli::try_parse_from(["run-render", "--ami", "ami-0123456789abcdef0", "status"])
                .is_err()
        );
    }

    #[test]
    fn help_lists_every_client_exit_code() {
        let help = run_help();
        for (code, _) in rtb_model::exit::client::TABLE {
            assert!(help.contains(&format!("{code:>3}  ")), "{code}");
        }
    }
}
