//! The job model shared by the `run-render` client and the `rtb-job` runner: the environment
//! contract, S3 locations, where log chunks and the result record live, and the record's shape.
//! A type that crosses the client/runner line lives here, once.

pub mod checkpoint;
pub mod contract;
pub mod errors;
pub mod exit;
pub mod job_id;
pub mod layout;
pub mod manifest;
pub mod records;
pub mod result;
mod s3url;

pub use layout::JobRecords;
pub use records::{AttemptRecord, InstanceRecord, RunRecords};
pub use result::{
    Checkpoints, JobResult, Outcome, Picture, PictureFlag, Resumed, Skipped, Thumbnail, Timings,
    Transfer, RESULT_SCHEMA,
};
pub use s3url::{S3Url, S3UrlError};
