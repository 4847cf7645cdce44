//! The client's own budget of AWS calls: a token bucket per API family at a fraction
//! ([`SHARE`]) of AWS's documented account limits, so that a batch of a hundred jobs, or two
//! batches at once, leaves the rest of the lab's account most of its share.
//!
//! Shares: a fifth of AWS's bucket for what the client polls (EC2 Describe, S3 reads), up to
//! half for what only the jobs call (launch, send, terminate) and for SSM reads (see
//! [`SSM_READ_SHARE`]): two clients at once stay under AWS's limits.
//!
//! Two kinds of call take tokens. A call a job needs (launch, send, stop, terminate, a
//! record) waits for a token. A poll (a status, a log, an instance's state) waits until the
//! bucket is above its reserve: when the buckets run low, polling slows first and the jobs'
//! own calls find tokens.
//!
//! AWS's figures: EC2 "Request throttling for the Amazon EC2 API"
//! (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>): non-mutating
//! actions 100 tokens refilled 20/s, mutating 50 refilled 5/s, RunInstances 5 refilled 2/s.
//! SSM publishes no rate for Run Command; the figures the test world assumes
//! (tests/world/limits.py: reads 20 refilled 10/s, writes 10 refilled 5/s) are used. S3:
//! 5,500 reads and 3,500 writes a second per prefix (a second's worth of burst).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The fraction of each AWS bucket the client allows itself for the families it polls.
pub const SHARE: f64 = 0.2;
/// The families only the jobs' own calls use (launch, send, terminate) get a larger share:
/// a tighter one would slow the jobs, and AWS's own small RunInstances bucket is the limit.
pub const JOB_SHARE: f64 = 0.5;
/// SSM reads: a single `run` reads its command's status 4 times a second for its first 30 s
/// (its end is seen at once); a fifth of the assumed 10/s would halve that. A batch's watch
/// makes about 2 a second at parallel 100 whatever the share.
pub const SSM_READ_SHARE: f64 = 0.4;
/// The part of a bucket polls leave to the jobs' own calls.
const POLL_RESERVE: f64 = 0.5;

/// Families of calls that share one of AWS's buckets (AWS keeps one per action; one per
/// family here is stricter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ec2Describe,
    Ec2Mutating,
    Ec2Run,
    SsmRead,
    SsmWrite,
    S3Read,
    S3Write,
}

const FAMILIES: [Family; 7] = [
    Family::Ec2Describe,
    Family::Ec2Mutating,
    Family::Ec2Run,
    Family::SsmRead,
    Family::SsmWrite,
    Family::S3Read,
    Family::S3Write,
];

impl Family {
    /// AWS's (capacity, refill per second) for the family.
    pub fn aws(self) -> (f64, f64) {
        match self {
            Family::Ec2Describe => (100.0, 20.0),
            Family::Ec2Mutating => (50.0, 5.0),
            Family::Ec2Run => (5.0, 2.0),
            Family::SsmRead => (20.0, 10.0),
            Family::SsmWrite => (10.0, 5.0),
            Family::S3Read => (5500.0, 5500.0),
            Family::S3Write => (3500.0, 3500.0),
        }
    }

    /// The fraction of AWS's bucket the client takes.
    pub fn share(self) -> f64 {
        match self {
            Family::Ec2Mutating | Family::Ec2Run | Family::SsmWrite => JOB_SHARE,
            Family::SsmRead => SSM_READ_SHARE,
            _ => SHARE,
        }
    }

    fn index(self) -> usize {
        FAMILIES.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Whether a call can wait for the bucket to be above its reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A job needs it: any token will do.
    Must,
    /// A poll: only a token above the reserve.
    Poll,
}

/// One token bucket, refilled continuously up to its capacity.
#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: f64, refill: f64, now: Instant) -> Bucket {
        Bucket {
            capacity,
            refill,
            tokens: capacity,
            at: now,
        }
    }

    fn level(&mut self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.refill).min(self.capacity);
        self.at = self.at.max(now);
        self.tokens
    }

    /// Take a token when one is there above `floor` (None), or say how long until one is.
    fn take_above(&mut self, floor: f64, now: Instant) -> Option<Duration> {
        let level = self.level(now);
        if level - 1.0 >= floor - 1e-9 {
            self.tokens -= 1.0;
            return None;
        }
        let short = floor + 1.0 - level;
        Some(Duration::from_secs_f64(
            (short / self.refill.max(1e-6)).max(0.001),
        ))
    }

    /// The floor a call of this need may not take the bucket below. A bucket of one or two
    /// tokens keeps no reserve: it could never let a poll through.
    fn floor(&self, need: Need) -> f64 {
        match need {
            Need::Must => 0.0,
            Need::Poll if self.capacity >= 3.0 => (self.capacity * POLL_RESERVE).floor(),
            Need::Poll => 0.0,
        }
    }
}

/// The client's buckets, one per family (shared by every clone of a `Cloud`).
#[derive(Debug)]
pub struct Budget {
    buckets: Mutex<Vec<Bucket>>,
    /// Calls made per family, and how long they waited in all (for the benchmark).
    counts: Mutex<Vec<(u64, Duration)>>,
}

impl Budget {
    /// Every bucket at `scale` times its family's share of AWS's (at least one token, so a
    /// call can always pass).
    pub fn new(scale: f64) -> Budget {
        let now = Instant::now();
        Budget {
            buckets: Mutex::new(
                FAMILIES
                    .iter()
                    .map(|f| {
                        let (c, r) = f.aws();
                        let share = f.share() * scale;
                        Bucket::new((c * share).max(1.0), r * share, now)
                    })
                    .collect(),
            ),
            counts: Mutex::new(vec![(0, Duration::ZERO); FAMILIES.len()]),
        }
    }

    /// Wait until the family's bucket lets this call through, then take its token.
    pub async fn take(&self, family: Family, need: Need) {
        let started = Instant::now();
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let bucket = &mut b[family.index()];
                let floor = bucket.floor(need);
                bucket.take_above(floor, Instant::now())
            };
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut c[family.index()];
        slot.0 += 1;
        slot.1 += started.elapsed();
    }

    /// Whether a call of this need would get a token now (none is taken): a loop that polls
    /// several things skips a look rather than wait for it and hold up the others.
    pub fn ready(&self, family: Family, need: Need) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = &mut b[family.index()];
        let floor = bucket.floor(need);
        bucket.level(Instant::now()) - 1.0 >= floor - 1e-9
    }

    /// (calls, time waited) per family so far.
    pub fn counts(&self) -> Vec<(Family, u64, Duration)> {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        FAMILIES
            .iter()
            .zip(c.iter())
            .map(|(f, (n, d))| (*f, *n, *d))
            .collect()
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_leave_the_reserve_to_the_jobs_calls() {
        let t0 = Instant::now();
        // (capacity, refill, need, calls made at t0, the next call waits)
        let table = [
            // 20 tokens: polls take 10 and then wait; a job's call takes all 20.
            (20.0, 4.0, Need::Poll, 10, true),
            (20.0, 4.0, Need::Poll, 9, false),
            (20.0, 4.0, Need::Must, 19, false),
            (20.0, 4.0, Need::Must, 20, true),
            // A bucket of one token keeps no reserve.
            (1.0, 0.4, Need::Poll, 0, false),
            (1.0, 0.4, Need::Poll, 1, true),
        ];
        for (cap, refill, need, made, waits) in table {
            let mut b = Bucket::new(cap, refill, t0);
            let floor = b.floor(need);
            for _ in 0..made {
                assert!(b.take_above(floor, t0).is_none(), "{cap} {need:?} {made}");
            }
            assert_eq!(
                b.take_above(floor, t0).is_some(),
                waits,
                "{cap} {need:?} after {made}"
            );
        }
    }

    #[test]
    fn the_wait_is_the_time_to_refill_what_is_short() {
        let t0 = Instant::now();
        let mut b = Bucket::new(4.0, 2.0, t0);
        for _ in 0..4 {
            assert!(b.take_above(0.0, t0).is_none());
        }
        let wait = b.take_above(0.0, t0).expect("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Half a second later one token is back.
        assert!(b.take_above(0.0, t0 + Duration::from_millis(500)).is_none());
        // Refill never passes the capacity.
        let mut b = Bucket::new(4.0, 2.0, t0);
        assert!((b.level(t0 + Duration::from_secs(60)) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn the_budget_is_a_share_of_aws_and_every_bucket_lets_a_call_through() {
        let b = Budget::default();
        let buckets = b.buckets.lock().unwrap();
        for (f, bucket) in FAMILIES.iter().zip(buckets.iter()) {
            let (c, r) = f.aws();
            assert!(f.share() <= JOB_SHARE, "{f:?}");
            assert!(bucket.capacity >= 1.0, "{f:?}");
            assert!(bucket.capacity <= c * f.share() + 1.0, "{f:?}");
            assert!((bucket.refill - r * f.share()).abs() < 1e-9, "{f:?}");
        }
        // What the client polls stays under a fifth of AWS's documented limits (SSM publishes
        // none: under half of the assumed ones, so two clients at once stay under them).
        for f in [Family::Ec2Describe, Family::S3Read] {
            assert!(f.share() <= 0.2, "{f:?}");
        }
        assert!(Family::SsmRead.share() < 0.5);
    }

    #[test]
    fn ready_tells_without_taking() {
        // SSM reads: 8 tokens, polls keep 4 in reserve.
        let b = Budget::default();
        for _ in 0..5 {
            assert!(b.ready(Family::SsmRead, Need::Poll));
        }
        {
            let mut buckets = b.buckets.lock().unwrap();
            let bucket = &mut buckets[Family::SsmRead.index()];
            let now = Instant::now();
            for _ in 0..4 {
                assert!(bucket.take_above(4.0, now).is_none());
            }
        }
        assert!(!b.ready(Family::SsmRead, Need::Poll), "at the reserve");
        assert!(
            b.ready(Family::SsmRead, Need::Must),
            "a job's call still passes"
        );
    }

    #[tokio::test]
    async fn sustained_polls_run_at_the_refill_rate() {
        // 4 tokens refilled 20/s: polls take 2 at once, then about 20 a second.
        let b = Budget {
            buckets: Mutex::new(vec![Bucket::new(4.0, 20.0, Instant::now()); FAMILIES.len()]),
            counts: Mutex::new(vec![(0, Duration::ZERO); FAMILIES.len()]),
        };
        let t = Instant::now();
        for _ in 0..12 {
            b.take(Family::SsmRead, Need::Poll).await;
        }
        let took = t.elapsed().as_secs_f64();
        assert!((0.4..1.0).contains(&took), "12 polls took {took} s");
        assert_eq!(b.counts()[Family::SsmRead.index()].1, 12);
    }
}
