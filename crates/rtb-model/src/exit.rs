//! Exit codes, defined once: the runner's (`rtb-job`, the container's entrypoint) and the
//! client's (`run-render`). Both programs, their `--help` and the docs use these tables.

/// The runner's exit codes. A command that ran to its end passes the interpreter's own code
/// through (0 = success, 1 = the command raised an error).
pub mod runner {
    pub const SUCCEEDED: i32 = 0;
    /// The interpreter's usual code when the command raised an error.
    pub const COMMAND_FAILED: i32 = 1;
    pub const BAD_SETTINGS: i32 = 2;
    pub const INPUT_FAILED: i32 = 3;
    pub const OUTPUT_FAILED: i32 = 4;
    pub const NO_INTERPRETER: i32 = 5;
    /// The command succeeded, but some outputs could not be uploaded (listed in the log and in
    /// `result.json`); everything else was.
    pub const OUTPUT_INCOMPLETE: i32 = 6;
    /// An array child could not read its row of the batch manifest (`RTB_MANIFEST`): nothing
    /// was done. Retrying does not help; the manifest or the submission is wrong.
    pub const BAD_MANIFEST: i32 = 7;
    pub const TIMED_OUT: i32 = 124;
    /// Stopped by signal N: 128 + N (143 for `docker stop`).
    pub const SIGNAL_BASE: i32 = 128;

    /// (code, meaning), in the order `--help` lists them.
    pub const TABLE: &[(i32, &str)] = &[
        (SUCCEEDED, "the command succeeded and every output was uploaded"),
        (COMMAND_FAILED, "the command raised an error (the interpreter's own code passes through)"),
        (BAD_SETTINGS, "bad settings: nothing was done"),
        (INPUT_FAILED, "the input copy failed: the command did not run"),
        (OUTPUT_FAILED, "the output copy failed"),
        (NO_INTERPRETER, "the interpreter could not be started"),
        (OUTPUT_INCOMPLETE, "the command succeeded but some outputs were skipped (listed in the log and result.json)"),
        (BAD_MANIFEST, "the job's row of the batch manifest (RTB_MANIFEST) could not be read: nothing was done"),
        (TIMED_OUT, "the command ran past its timeout and was stopped"),
        (SIGNAL_BASE, "128+N: stopped by signal N (143 for docker stop)"),
    ];
}

/// The client's own exit codes. A job that ran passes its runner's code through.
pub mod client {
    pub const BAD_INPUT: i32 = 2;
    pub const PREFLIGHT: i32 = 65;
    pub const LAUNCH: i32 = 66;
    pub const AGENT: i32 = 67;
    pub const REMOTE: i32 = 68;
    /// The instance's fate is not confirmed (termination unconfirmed, or AWS stopped answering):
    /// it may still be running until its deadline.
    pub const UNCONFIRMED: i32 = 69;
    /// The instance ended under the job (spot reclaim, the console, a crash): worth a retry.
    pub const INSTANCE_LOST: i32 = 70;
    /// A batch ended with jobs that did not succeed (its summary names them and why).
    pub const BATCH_INCOMPLETE: i32 = 71;
    pub const TIMED_OUT: i32 = 124;
    pub const INTERRUPTED: i32 = 130;

    /// (code, meaning), in the order `--help` lists them.
    pub const TABLE: &[(i32, &str)] = &[
        (BAD_INPUT, "bad input (nothing launched)"),
        (PREFLIGHT, "preflight failed (nothing launched)"),
        (LAUNCH, "launch failed (nothing running)"),
        (
            AGENT,
            "the SSM agent never came online (instance terminated)",
        ),
        (REMOTE, "the remote command failed to run"),
        (
            UNCONFIRMED,
            "the instance's end is NOT confirmed: it may run until its deadline",
        ),
        (
            INSTANCE_LOST,
            "the instance ended under the job (spot reclaim, console, crash)",
        ),
        (
            BATCH_INCOMPLETE,
            "batch: some jobs did not succeed (the summary says which and why)",
        ),
        (TIMED_OUT, "the job ran past its --timeout"),
        (
            INTERRUPTED,
            "interrupted by Ctrl-C / SIGTERM / SIGHUP (instance terminated)",
        ),
    ];
}
