//! `rtb-job`: the rtb-support container's entrypoint. It keeps the original `rtb-job.sh`
//! environment contract (see `rtb_model::contract`) and adds streamed logs, a result record,
//! real failure exit codes, timeouts and clean stops.
//!
//! - [`manifest`]: an AWS Batch array child's row of the batch manifest, as its environment
//! - [`settings`]: flags and environment, checked once into ready-to-use settings
//! - [`scratch`]: emptying the scratch folders an earlier job on a batch's instance left
//! - [`compose`]: which interpreter, and the script and command line it runs
//! - [`process`]: running the interpreter, streaming its lines, stopping it
//! - [`logsink`]: stdout, `matlab.log` and the S3 log chunks
//! - [`transfer`]: the S3 copies in and out
//! - [`mount`]: MOUNT_BUCKET through mount-s3
//! - [`checkpoint`]: OUTPUT_SCRATCH saved while the command runs, and restored by a retry
//! - [`notice`]: the spot interruption notice (the two-minute warning) from IMDS
//! - [`record`]: the small JSON records in S3
//! - [`thumbnail`]: the job's picture, found among the outputs, as a small PNG in the records
//! - [`host`]: the EC2 instance the runner is on, best effort
//! - [`job`]: the phases, in order, and the result record

pub mod checkpoint;
pub mod compose;
pub mod host;
pub mod job;
pub mod logsink;
pub mod manifest;
pub mod mount;
pub mod notice;
pub mod process;
pub mod record;
pub mod scratch;
pub mod settings;
pub mod thumbnail;
pub mod transfer;
