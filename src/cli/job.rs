//! One job's flags, in groups: what runs (work), on what (launch), for how long (limits), and
//! where AWS is (aws). A batch file's `[job]` table uses the same flags by their long names,
//! so a batch row and a command line are parsed by the same definition.

use std::path::PathBuf;

use clap::Args;

/// What runs on the instance.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "What runs")]
pub struct WorkArgs {
    /// MATLAB code the job runs (the runner's COMMAND).
    #[arg(
        long,
        env = "RUN_RENDER_COMMAND",
        value_name = "CODE",
        conflicts_with = "shell",
        allow_hyphen_values = true
    )]
    pub command: Option<String>,
    /// Arguments for tbUse(...), e.g. "{'RenderToolbox4','isetbio'}" (TOOLBOXES).
    #[arg(
        long,
        env = "RUN_RENDER_TOOLBOXES",
        value_name = "ARGS",
        allow_hyphen_values = true
    )]
    pub toolboxes: Option<String>,
    /// MATLAB script run first, as run('...'), a path on the instance (STARTUP).
    #[arg(
        long,
        env = "RUN_RENDER_STARTUP",
        value_name = "SCRIPT",
        allow_hyphen_values = true
    )]
    pub startup: Option<String>,
    /// s3://bucket/prefix copied to the job's input folder before the command (INPUT_BUCKET).
    #[arg(long, env = "RUN_RENDER_INPUT", value_name = "S3_URL")]
    pub input: Option<String>,
    /// s3://bucket/prefix that receives the outputs, the log and the result (OUTPUT_BUCKET).
    #[arg(long, env = "RUN_RENDER_OUTPUT", value_name = "S3_URL")]
    pub output: Option<String>,
    /// Save what changed in the job's output folder to its records this often while it runs
    /// (e.g. 15m), so that a retry after a lost (spot) instance resumes from it; off by default
    /// (RTB_CHECKPOINT_EVERY). The job's code finds RTB_ATTEMPT and RTB_RESUMED_FROM.
    #[arg(long, env = "RUN_RENDER_CHECKPOINT_EVERY", value_name = "DURATION")]
    pub checkpoint_every: Option<String>,
    /// More runner settings, NAME=VALUE (e.g. OUTPUT_SCRATCH=/home/ubuntu/work); repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Run this shell command on the instance instead of the container.
    #[arg(
        long,
        env = "RUN_RENDER_SHELL",
        value_name = "SHELL_COMMAND",
        allow_hyphen_values = true
    )]
    pub shell: Option<String>,
    /// The rtb-support image on the instance (the AMI recipe tags it rtb-support:ami).
    #[arg(long, env = "RUN_RENDER_IMAGE", default_value = "rtb-support:ami")]
    pub image: String,
    /// MATLAB's folder on the instance, mounted read-only at /usr/local/MATLAB/from-host.
    #[arg(long, env = "RUN_RENDER_MATLAB_ROOT", value_name = "PATH")]
    pub matlab_root: Option<PathBuf>,
    /// The interpreter inside the container: matlab, octave, or a path (MATLAB_EXECUTABLE).
    #[arg(long, env = "RUN_RENDER_INTERPRETER")]
    pub interpreter: Option<String>,
    /// Mount a folder of the instance into the container, HOST:CONTAINER[:ro]; repeatable.
    #[arg(long = "volume", value_name = "HOST:CONTAINER")]
    pub volumes: Vec<String>,
}

/// What is launched.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "The instance")]
pub struct LaunchArgs {
    /// The private AMI to launch (ami-...).
    #[arg(long, env = "RUN_RENDER_AMI")]
    pub ami: Option<String>,
    /// EC2 instance type; a comma-separated list (m6i.2xlarge,m5.2xlarge) is tried in order
    /// when EC2 has no capacity for one.
    #[arg(long, env = "RUN_RENDER_INSTANCE_TYPE", default_value = "m6i.large")]
    pub instance_type: String,
    /// Root volume size in GiB (encrypted, deleted with the instance) [default: the AMI's]
    #[arg(long, env = "RUN_RENDER_DISK_GB")]
    pub disk_gb: Option<u32>,
    /// Subnet to launch in [default: the default VPC's]
    #[arg(long, env = "RUN_RENDER_SUBNET")]
    pub subnet: Option<String>,
    /// Security group id; repeatable [default: the VPC's default]. No inbound rules are needed.
    #[arg(
        long = "security-group",
        env = "RUN_RENDER_SECURITY_GROUP",
        value_delimiter = ','
    )]
    pub security_groups: Vec<String>,
    /// Instance profile (name or ARN) with SSM core and the job's S3 access.
    #[arg(
        long,
        env = "RUN_RENDER_IAM_PROFILE",
        default_value = "run-render-instance"
    )]
    pub iam_profile: String,
    /// The instance's Name tag [default: run-render-<job id>]
    #[arg(long, env = "RUN_RENDER_NAME")]
    pub name: Option<String>,
    /// Extra tag KEY=VALUE on the instance; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// The job's id [default: generated]. Names its log folder and the instance's tags.
    #[arg(long, env = "RUN_RENDER_JOB_ID")]
    pub job_id: Option<String>,
}

/// For how long, and what happens at the end.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsArgs {
    /// Longest the command may run (e.g. 6h). The instance also stops itself a margin after
    /// it, even if this client is gone. "none" turns the limit off.
    #[arg(long, env = "RUN_RENDER_TIMEOUT", default_value = "24h")]
    pub timeout: String,
    /// How long past --timeout the instance may live before it powers itself off (boot, input
    /// and output copies happen outside the command's own limit).
    #[arg(
        long,
        env = "RUN_RENDER_DEADLINE_MARGIN",
        default_value = "30m",
        hide_short_help = true
    )]
    pub deadline_margin: String,
    /// How long to wait for the instance's SSM agent to come online.
    #[arg(long, env = "RUN_RENDER_AGENT_TIMEOUT", default_value = "10m")]
    pub agent_timeout: String,
    /// How long AWS may fail to answer (every call failing or timing out) before the client
    /// gives up following the job and exits 69; the job goes on, and the instance ends itself.
    #[arg(
        long,
        env = "RUN_RENDER_API_PATIENCE",
        default_value = "5m",
        hide_short_help = true
    )]
    pub api_patience: String,
    /// Leave the instance running when the job ends (its deadline still applies).
    #[arg(long, env = "RUN_RENDER_KEEP")]
    pub keep: bool,
}

/// Where AWS is. AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL work as for every AWS tool.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// AWS region [default: from the profile or AWS_REGION]
    #[arg(long)]
    pub region: Option<String>,
    /// AWS named profile [default: AWS_PROFILE or default]
    #[arg(long)]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (a local emulator, for testing).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Every flag of one job.
#[derive(Debug, Clone, Default, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub work: WorkArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

/// The container's settings, (field, flag): meaningless to a raw `--shell` command.
pub const CONTAINER_FLAGS: &[(&str, &str)] = &[
    ("command", "--command"),
    ("toolboxes", "--toolboxes"),
    ("startup", "--startup"),
    ("input", "--input"),
    ("output", "--output"),
    ("env", "--env"),
    ("image", "--image"),
    ("matlab_root", "--matlab-root"),
    ("interpreter", "--interpreter"),
    ("volumes", "--volume"),
    ("checkpoint_every", "--checkpoint-every"),
];
