//! The runner's environment contract: the variable names the original `rtb-job.sh` read (kept
//! so existing `docker run -e ...` lines work), plus the few this project adds. The client
//! writes these, the runner reads them: both use the names from here.

/// One setting of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// The original's default, where it had one.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

pub const STARTUP: Var = Var {
    name: "STARTUP",
    default: None,
    help: "MATLAB script run first as run('STARTUP'); skipped when empty",
};
pub const TOOLBOXES: Var = Var {
    name: "TOOLBOXES",
    default: Some("''"),
    help: "arguments passed verbatim to tbUse(...) when tbUse exists, e.g. {'isetbio','RenderToolbox4'}",
};
pub const COMMAND: Var = Var {
    name: "COMMAND",
    default: Some("ver"),
    help: "MATLAB code to run; an error in it makes the job fail",
};
pub const INPUT_SCRATCH: Var = Var {
    name: "INPUT_SCRATCH",
    default: Some("/input-scratch"),
    help: "folder created before the command, filled from INPUT_BUCKET",
};
pub const INPUT_BUCKET: Var = Var {
    name: "INPUT_BUCKET",
    default: None,
    help: "s3://bucket/prefix copied into INPUT_SCRATCH before the command",
};
pub const INPUT_FLAGS: Var = Var {
    name: "INPUT_FLAGS",
    default: Some("--recursive"),
    help: "aws s3 cp flags for the input copy: --recursive, --exclude P, --include P, --quiet",
};
pub const OUTPUT_SCRATCH: Var = Var {
    name: "OUTPUT_SCRATCH",
    default: Some("/output-scratch"),
    help: "folder created before the command, copied to OUTPUT_BUCKET after it (even on failure)",
};
pub const OUTPUT_BUCKET: Var = Var {
    name: "OUTPUT_BUCKET",
    default: None,
    help: "s3://bucket/prefix that receives OUTPUT_SCRATCH, the log and the result record",
};
pub const OUTPUT_FLAGS: Var = Var {
    name: "OUTPUT_FLAGS",
    default: Some("--recursive"),
    help: "aws s3 cp flags for the output copy: --recursive, --exclude P, --include P, --quiet",
};
pub const MOUNT_SCRATCH: Var = Var {
    name: "MOUNT_SCRATCH",
    default: Some("/mount-scratch"),
    help: "folder where MOUNT_BUCKET is mounted (read lazily, with mount-s3)",
};
pub const MOUNT_BUCKET: Var = Var {
    name: "MOUNT_BUCKET",
    default: None,
    help: "s3://bucket/prefix mounted at MOUNT_SCRATCH for the command's duration",
};
pub const MOUNT_FLAGS: Var = Var {
    name: "MOUNT_FLAGS",
    default: Some(""),
    help: "extra mount-s3 options, e.g. --read-only",
};

// Added by this project.
pub const MATLAB_EXECUTABLE: Var = Var {
    name: "MATLAB_EXECUTABLE",
    default: Some("matlab"),
    help: "interpreter to run: matlab (or a path to it), octave or octave-cli",
};
pub const MATLAB_STYLE: Var = Var {
    name: "MATLAB_STYLE",
    default: Some("auto"),
    help: "how MATLAB is started: batch (-batch, R2019a+), r (-r with exit, older), auto (from VersionInfo.xml)",
};
pub const MATLAB_PRELOAD: Var = Var {
    name: "MATLAB_PRELOAD",
    default: Some("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    help: "LD_PRELOAD for MATLAB (the system libstdc++, newer than MATLAB's own); empty for none",
};
pub const JOB_ID: Var = Var {
    name: "RTB_JOB_ID",
    default: None,
    help: "the job's id, naming its records folder (default: rtb-job-<UTC time>)",
};
pub const LOG_BUCKET: Var = Var {
    name: "LOG_BUCKET",
    default: None,
    help: "s3:// folder for log chunks and the result record (default: OUTPUT_BUCKET/_rtb-job/<job id>)",
};
pub const TIMEOUT: Var = Var {
    name: "RTB_TIMEOUT",
    default: None,
    help: "stop the command after this long, e.g. 6h or 90m (default: no limit)",
};
pub const EMPTY_SCRATCH: Var = Var {
    name: "RTB_EMPTY_SCRATCH",
    default: None,
    help: "1: empty INPUT_SCRATCH, OUTPUT_SCRATCH (and MOUNT_SCRATCH) before the job, leaving other file systems alone (run-render sets it on a batch instance an earlier job used)",
};
pub const ATTEMPT: Var = Var {
    name: "RTB_ATTEMPT",
    default: None,
    help: "this attempt's number, from 1; the command sees it as RTB_ATTEMPT (default: AWS Batch's AWS_BATCH_JOB_ATTEMPT, else 1)",
};
pub const RUN_ID: Var = Var {
    name: "RTB_RUN_ID",
    default: None,
    help: "the batch run this attempt belongs to: its records go to <records>/<run>-a<attempt>/, one folder per attempt, where <records> is LOG_BUCKET or OUTPUT_BUCKET/_rtb-job/<job id>",
};

pub const CHECKPOINT_EVERY: Var = Var {
    name: "RTB_CHECKPOINT_EVERY",
    default: None,
    help: "while the command runs, save what changed in OUTPUT_SCRATCH to the job's records this often, e.g. 15m, so a later attempt can resume (default: off)",
};
pub const WATCH_NOTICES: Var = Var {
    name: "RTB_WATCH_NOTICES",
    default: None,
    help: "watch the instance metadata for a spot interruption or rebalance notice and checkpoint at once when one comes: on or off (default: on with RTB_CHECKPOINT_EVERY, else off)",
};
pub const LOG_EVERY: Var = Var {
    name: "RTB_LOG_EVERY",
    default: None,
    help: "write the job's log to S3 at most this often, e.g. 250ms or 2s: a line after a quiet spell goes out at once, and while lines keep coming a chunk holds what came since the last (default: 1s; run-render sets 250ms for a single run it follows, 2s for a batch's jobs)",
};
pub const RESUME_FROM: Var = Var {
    name: "RTB_RESUME_FROM",
    default: None,
    help: "restore an earlier attempt's checkpointed outputs into OUTPUT_SCRATCH before the command: its records folder (s3://...), or 'previous' for the newest earlier attempt beside this one's records (<run>-a<N>)",
};

/// Every variable, in the order a reader meets them.
pub const ALL: &[Var] = &[
    STARTUP,
    TOOLBOXES,
    COMMAND,
    INPUT_SCRATCH,
    INPUT_BUCKET,
    INPUT_FLAGS,
    OUTPUT_SCRATCH,
    OUTPUT_BUCKET,
    OUTPUT_FLAGS,
    MOUNT_SCRATCH,
    MOUNT_BUCKET,
    MOUNT_FLAGS,
    MATLAB_EXECUTABLE,
    MATLAB_STYLE,
    MATLAB_PRELOAD,
    JOB_ID,
    LOG_BUCKET,
    TIMEOUT,
    EMPTY_SCRATCH,
    ATTEMPT,
    RUN_ID,
    CHECKPOINT_EVERY,
    WATCH_NOTICES,
    RESUME_FROM,
    LOG_EVERY,
];

/// What the runner puts in the interpreter's environment for a resumed attempt (besides
/// RTB_ATTEMPT): the number of the attempt whose checkpoint was restored.
pub const RESUMED_FROM_ENV: &str = "RTB_RESUMED_FROM";

/// Where the original image expected the host's MATLAB to be mounted.
pub const MATLAB_MOUNT_POINT: &str = "/usr/local/MATLAB/from-host";
