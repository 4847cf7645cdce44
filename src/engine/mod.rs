//! Where jobs run. `ec2`: instances this client launches and drives through SSM (the
//! lifecycle in `lifecycle/` runs over it).

pub mod aws_batch;
pub mod ec2;
