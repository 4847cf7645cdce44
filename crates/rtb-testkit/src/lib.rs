//! Test helpers for the local emulator world (tests/world/).
//!
//! [`FaultProxy`] starts a real intercepting proxy (mitmproxy's `mitmdump` running
//! `tests/world/faults.py`) between the AWS SDK and MiniStack, on a free port of 127.0.0.1.
//! Point the code under test at [`FaultProxy::endpoint`] instead of `AWS_ENDPOINT_URL`, then
//! tell the proxy which calls to delay, stall, fail, throttle or cut with [`Rule`]s, and read
//! back what went through with [`FaultProxy::calls`].
//!
//! ```no_run
//! use rtb_testkit::{FaultProxy, Rule};
//!
//! let proxy = FaultProxy::start(); // in front of $AWS_ENDPOINT_URL
//! proxy.add(Rule::on("RunInstances").times(1).throttle());
//! proxy.add(Rule::on("PutObject").path_contains("out/b.png").drop_response());
//! // ... run the client with AWS_ENDPOINT_URL=proxy.endpoint() ...
//! assert_eq!(proxy.count("RunInstances"), 2);
//! // Dropping `proxy` stops mitmdump.
//! ```
//!
//! The same proxy also enforces AWS's API rate limits when asked ([`FaultProxy::limits`] with
//! [`Limits`]; [`FaultProxy::limit_stats`] counts calls per API family either way), and
//! answers the two price APIs no emulator has from data the test sets
//! ([`FaultProxy::set_prices`] with [`Prices`], [`FaultProxy::no_prices`]).
//!
//! Each test starts its own proxy: start-up is mitmdump's (about 1 s on an idle 2-core
//! machine, more under load). tests/world/README.md ("Fault injection") has the rule format.
//!
//! [`IamScope`] registers a test's principals (a client key, the instances it launches, a key
//! for AWS Batch jobs) with the world's long-lived IAM-enforcing proxies (tests/world/iam.py,
//! started by setup.sh): every call they sign is evaluated against the shipped `ami/iam/`
//! policies, a refused one gets AWS's error, and [`IamScope::denials`] lists them.
//!
//! ```no_run
//! use rtb_testkit::IamScope;
//!
//! let iam = IamScope::new();
//! iam.allow_output_bucket("my-renders");
//! // ... run the client with iam.client_env() (keys and AWS_ENDPOINT_URL) ...
//! iam.assert_no_denials();
//! ```
//!
//! To combine both, start a [`FaultProxy`] in front of [`IamScope::endpoint`]
//! (`FaultProxy::start_for(&iam.endpoint())`) and point the client at the fault proxy.

mod control;
mod iam;
mod limits;
mod prices;
mod proxy;
mod rule;

pub use iam::{Credentials, Denial, IamScope, ScopeSetup};
pub use limits::{Counter, LimitStats, Limits};
pub use prices::{OnDemand, PriceAnswer, Prices, Spot};
pub use proxy::{world_python, Call, FaultProxy};
pub use rule::Rule;
