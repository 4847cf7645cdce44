//! What a render costs, from real data, and a budget it never passes.
//!
//! - [`prices`] hourly prices behind one trait (the user's `--price`, the Price List API,
//!   EC2's spot price history), an on-disk cache, and where each price came from and when
//! - [`ledger`] per-second billing over EC2's instance times, and each job's share (pure)
//! - [`before`] the price and budget given, the price a budget needs, the dry run's figures
//!   and the shorter deadline of a detached instance under a budget
//! - [`batch`] a batch's figures before it runs, and its budget on each engine
//! - [`budget`] the decision before each start, the dry run's worst and expected cases, and
//!   the live meter a pool feeds (pure but for the meter's state)
//! - [`aws_batch`] a job's cost on AWS Batch: its attempts' times at the price of the
//!   instance each ran on (fetched, then pure)
//! - [`record`] a job's cost as written to S3 and the registry; [`account`] fetching the
//!   instances' times and prices, then the ledger, then the records

pub mod account;
pub mod aws_batch;
pub mod batch;
pub mod before;
pub mod budget;
pub mod ledger;
pub mod prices;
pub mod record;

pub use budget::{Budget, OnBudget};
pub use prices::{Price, Priced, Prices};
pub use record::{CostRecord, CURRENCY};
