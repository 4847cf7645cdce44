//! `run-render`: run a MATLAB rendering job on a short-lived EC2 instance through SSM.
//!
//! One module per job the program does:
//! - [`cli`] the flags, raw; [`plan`] them checked into a plan (no AWS call)
//! - [`preflight`] checks before spending money
//! - [`launch`] launching with recovery from lost answers; [`instance`] wait, terminate-and-confirm
//! - [`remote`] SSM agent and commands; [`script`] the shell text sent
//! - [`logs`] following the runner's S3 log chunks
//! - [`job`] the lifecycle that ties them together; [`outcome`] how a job ended (pure);
//!   [`patience`] how long AWS may fail to answer; [`report`] the result
//! - [`cloud`] the thin seam over the AWS SDK; [`ui`] progress; [`signals`] Ctrl-C

pub mod cli;
pub mod cloud;
pub mod instance;
pub mod job;
pub mod launch;
pub mod logs;
pub mod outcome;
pub mod patience;
pub mod plan;
pub mod policies;
pub mod preflight;
pub mod remote;
pub mod report;
pub mod script;
pub mod signals;
pub mod ui;
