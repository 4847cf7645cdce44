//! `run-render`: run MATLAB rendering jobs on short-lived EC2 instances through SSM.
//!
//! The layout follows what the program does:
//! - [`cli`] the flags, raw; [`plan`] a job's flags checked into a plan (no AWS call)
//! - [`batch`] batch files (a CSV of jobs) and the pool of instances that runs them
//! - [`cmd`] one module per subcommand (`run`, `status`, `logs`, `stop`, `attach`, `list`,
//!   `cleanup`)
//! - [`lifecycle`] one job's life as a state machine (preflight, launch, boot, agent, start,
//!   follow, end) over [`engine::ec2`] (launch, the instance guard, SSM, the shell text)
//! - [`termination`] how every path leaves an instance; [`outcome`] how a job ended (pure)
//! - [`preflight`] checks before spending money; [`patience`] how long AWS may not answer
//! - [`registry`] the workstation's record of its jobs; [`inventory`] pure decisions over
//!   fetched state for `status` / `list` / `cleanup`
//! - [`cost`] prices, the ledger of what each job cost, budgets
//! - [`logs`] following the runner's S3 log chunks; [`report`] a job's result
//! - [`cloud`] the thin seam over the AWS SDK; [`ui`] progress; [`signals`] Ctrl-C

pub mod batch;
pub mod cli;
pub mod cloud;
pub mod cmd;
pub mod cost;
pub mod engine;
pub mod inventory;
pub mod lifecycle;
pub mod logs;
pub mod outcome;
pub mod patience;
pub mod plan;
pub mod policies;
pub mod preflight;
pub mod registry;
pub mod report;
pub mod signals;
pub mod termination;
pub mod ui;
