//! The EC2 engine: one instance per job (or per pool slot), driven through SSM Run Command.
//!
//! - [`launch`]: RunInstances, recovering from lost answers by the launch token
//! - [`instance`]: the guard that owns an instance id until its end is confirmed
//! - [`remote`]: the SSM agent, sending scripts
//! - [`script`]: the shell text the instance runs (user data, job, stop, re-attach)

pub mod instance;
pub mod launch;
pub mod remote;
pub mod script;
