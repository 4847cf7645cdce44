//! Batches: a lab's CSV of render jobs as one command.
//!
//! - [`file`] the batch file (`[batch]`, `[job]`) and its CSV, parsed and checked
//! - [`expand`] `${column}` in the template's strings
//! - [`jobs`] each row's job, parsed by `run`'s own flag definition and checked as `run`
//!   checks it; the batch's policy
//! - [`earlier`] what an earlier run left: results, what they ran, instances and their client
//! - [`pool`] the EC2 engine: a pool of instances that take queued jobs in turn
//! - [`host`] one instance of the pool: its jobs, their deadline, the check before reuse,
//!   its end
//! - [`scratch`] where each job's scratch folders lie, checked before a pool runs them
//! - [`retry`] which failed attempts are tried again, and how (pure)
//! - [`resume`] what interrupted an attempt (a spot reclaim notice, a lost instance), and
//!   whether the next one resumes from an earlier one's checkpoint
//! - [`records`] who runs where: the pool's records in S3 (a pool instance's tags cannot change)
//! - [`view`] the progress view; [`summary`] the end; [`page`] the batch's page (HTML)
//! - [`watch`] follows every running job of the pool at once, in few calls

pub mod aws;
pub mod earlier;
pub mod expand;
pub mod file;
pub mod host;
pub mod jobs;
pub mod page;
pub mod pool;
pub mod records;
pub mod resume;
pub mod retry;
pub mod scratch;
pub mod summary;
pub mod view;
pub mod watch;

pub use file::{BatchFile, FileError};
pub use jobs::{BatchJob, Engine, Policy};
