"""Unit tests of limits.py's bucket arithmetic and bucket choice (no proxy, no AWS).

    .world/faults-venv/bin/python -m unittest discover -s tests/world -p 'test_*.py'

(crates/rtb-testkit/tests/world_addons.rs runs them with the test suite.)
"""

import unittest

import limits
from limits import LOG_CHUNK, Bucket, Call, Limiter, Meter, check_config, family, needs


def aws(**over):
    return Limiter(check_config({"profile": "aws", **over}))


def describe(action="DescribeInstances", account="000000000000", region="us-east-1", **params):
    return Call("ec2", action, account=account, region=region, params={k: [v] for k, v in params.items()})


def burst(limiter, call, n, now=0.0):
    """How many of n calls at the same instant pass."""
    return sum(limiter.admit(call, now) is None for _ in range(n))


class BucketArithmetic(unittest.TestCase):
    def test_starts_full_and_empties_by_what_is_taken(self):
        b = Bucket(10, 2, now=0.0)
        self.assertEqual(b.level(0.0), 10)
        b.take(7, 0.0)
        self.assertTrue(b.can(3, 0.0))
        self.assertFalse(b.can(3.5, 0.0))

    def test_refills_at_its_rate_and_never_above_capacity(self):
        b = Bucket(10, 2, now=0.0)
        b.take(10, 0.0)
        self.assertAlmostEqual(b.level(1.5), 3.0)
        self.assertAlmostEqual(b.level(4.0), 8.0)
        self.assertEqual(b.level(100.0), 10)

    def test_time_going_back_does_not_drain(self):
        b = Bucket(10, 2, now=5.0)
        b.take(4, 5.0)
        self.assertEqual(b.level(4.0), 6)


class EC2Buckets(unittest.TestCase):
    def test_documented_numbers(self):
        self.assertEqual(limits.aws_spec("ec2:DescribeImages"), (100, 20))
        self.assertEqual(limits.aws_spec("ec2:DescribeInstances/unfiltered"), (50, 10))
        self.assertEqual(limits.aws_spec("ec2:ModifyInstanceAttribute"), (50, 5))
        self.assertEqual(limits.aws_spec("ec2:RunInstances"), (5, 2))
        self.assertEqual(limits.aws_spec("ec2:TerminateInstances"), (100, 5))
        self.assertEqual(limits.aws_spec("ec2:CreateTags"), (100, 10))
        self.assertEqual(limits.aws_spec("ec2:RunInstances/instances"), (1000, 2))
        self.assertEqual(limits.aws_spec("ec2:TerminateInstances/instances"), (1000, 20))
        self.assertEqual(limits.aws_spec("ec2:StopInstances"), (50, 5))
        self.assertEqual(limits.aws_spec("ec2:RequestSpotInstances"), (50, 5))
        # Only the listed actions have an unfiltered bucket or a resource bucket.
        self.assertIsNone(limits.aws_spec("ec2:DescribeImages/unfiltered"))
        self.assertIsNone(limits.aws_spec("ec2:CreateTags/instances"))

    def test_a_burst_over_the_bucket_is_throttled_then_the_refill_lets_calls_through(self):
        lim = aws()
        call = describe(**{"Filter.1.Name": "tag:rtb", "Filter.1.Value.1": "x"})
        self.assertEqual(burst(lim, call, 130, now=0.0), 100)
        self.assertEqual(lim.admit(call, 0.0), "ec2:DescribeInstances")
        # 20 tokens a second: one every 50 ms.
        self.assertEqual(burst(lim, call, 5, now=0.051), 1)
        self.assertEqual(burst(lim, call, 50, now=1.06), 20)

    def test_no_filter_and_no_pagination_takes_the_smaller_bucket(self):
        lim = aws()
        self.assertEqual(burst(lim, describe(), 80), 50)
        self.assertEqual(lim.admit(describe(), 0.0), "ec2:DescribeInstances/unfiltered")
        # Filtered or paginated calls take the standard bucket, still full.
        self.assertEqual(burst(lim, describe(MaxResults="100"), 60), 60)
        self.assertEqual(burst(lim, describe(**{"Filter.1.Name": "instance-id"}), 40), 40)
        self.assertEqual(burst(lim, describe(NextToken="t"), 1), 0)  # 100 used

    def test_instance_ids_alone_are_not_a_filter(self):
        self.assertEqual(
            needs(describe(**{"InstanceId.1": "i-1"}))[0][1], "ec2:DescribeInstances/unfiltered"
        )

    def test_each_action_has_its_own_bucket(self):
        lim = aws()
        burst(lim, describe(MaxResults="5"), 100)
        self.assertIsNotNone(lim.admit(describe(MaxResults="5"), 0.0))
        self.assertEqual(burst(lim, describe("DescribeImages"), 100), 100)

    def test_run_instances_has_its_own_small_request_bucket(self):
        lim = aws()
        run = describe("RunInstances", MaxCount="1", MinCount="1")
        self.assertEqual(burst(lim, run, 8), 5)
        self.assertEqual(lim.admit(run, 0.0), "ec2:RunInstances")
        self.assertEqual(burst(lim, run, 3, now=0.5), 1)  # 2 a second
        self.assertEqual(burst(lim, describe(MaxResults="5"), 10), 10)

    def test_the_resource_bucket_counts_instances_all_or_nothing(self):
        lim = aws(overrides={"ec2:RunInstances/instances": {"capacity": 4, "refill": 1}})
        three = describe("RunInstances", MaxCount="3", MinCount="1")
        self.assertIsNone(lim.admit(three, 0.0))
        self.assertEqual(lim.admit(three, 0.0), "ec2:RunInstances/instances")
        levels = lim.levels(0.0)
        # The short call took nothing: 4 request tokens left of 5, 1 instance token of 4.
        self.assertEqual(levels["000000000000 us-east-1 ec2:RunInstances"]["tokens"], 4)
        self.assertEqual(levels["000000000000 us-east-1 ec2:RunInstances/instances"]["tokens"], 1)
        self.assertIsNone(lim.admit(three, 2.0))

    def test_terminate_costs_one_instance_token_per_id(self):
        call = describe("TerminateInstances", **{"InstanceId.1": "i-1", "InstanceId.2": "i-2"})
        self.assertEqual(
            [(name, n) for _, name, n in needs(call)],
            [("ec2:TerminateInstances", 1), ("ec2:TerminateInstances/instances", 2)],
        )

    def test_buckets_are_per_account_and_region_shared_by_principals(self):
        lim = aws()
        run = describe("RunInstances", MaxCount="1")
        # Keys that are not 12 digits are all MiniStack's default account: one bucket.
        client = Call("ec2", "RunInstances", account=limits.account_of("test"), region="us-east-1",
                      params={"MaxCount": ["1"]})
        instance = Call("ec2", "RunInstances", account=limits.account_of("ASIAINSTANCE"),
                        region="us-east-1", params={"MaxCount": ["1"]})
        self.assertEqual(burst(lim, client, 3) + burst(lim, instance, 3), 5)
        other_account = describe("RunInstances", account=limits.account_of("111111111111"), MaxCount="1")
        self.assertEqual(burst(lim, other_account, 5), 5)
        other_region = describe("RunInstances", region="eu-west-1", MaxCount="1")
        self.assertEqual(burst(lim, other_region, 5), 5)
        self.assertIsNotNone(lim.admit(run, 0.0))


class OtherServices(unittest.TestCase):
    def test_s3_is_per_bucket_with_read_and_write_classes(self):
        lim = aws(overrides={"s3:read": {"capacity": 3, "refill": 1}})
        get_a = Call("s3", "GetObject", method="GET", s3_bucket="a")
        head_a = Call("s3", "HeadObject", method="HEAD", s3_bucket="a")
        put_a = Call("s3", "PutObject", method="PUT", s3_bucket="a")
        get_b = Call("s3", "GetObject", method="GET", s3_bucket="b")
        self.assertEqual(burst(lim, get_a, 2) + burst(lim, head_a, 2), 3)
        self.assertEqual(lim.admit(get_a, 0.0), "s3:read")
        self.assertEqual(burst(lim, put_a, 10), 10)
        self.assertEqual(burst(lim, get_b, 3), 3)
        self.assertEqual(limits.aws_spec("s3:write"), (3500, 3500))
        self.assertEqual(limits.aws_spec("s3:read"), (5500, 5500))

    def test_ssm_and_batch(self):
        lim = aws()
        poll = Call("ssm", "GetCommandInvocation", region="us-east-1")
        self.assertEqual(burst(lim, poll, 30), 20)
        self.assertEqual(burst(lim, poll, 30, now=1.0), 10)
        send = Call("ssm", "SendCommand", region="us-east-1")
        self.assertEqual(burst(lim, send, 30), 10)
        submit = Call("batch", "SubmitJob", region="us-east-1")
        self.assertEqual(burst(lim, submit, 60), 50)

    def test_services_without_a_modelled_limit_pass(self):
        lim = aws()
        self.assertEqual(burst(lim, Call("iam", "GetInstanceProfile"), 500), 500)
        self.assertEqual(burst(lim, Call("pricing", "GetProducts", region="us-east-1"), 500), 500)


class Configuration(unittest.TestCase):
    def test_scale_models_the_rest_of_the_account(self):
        lim = aws(scale=0.5)
        self.assertEqual(lim.spec("ec2:DescribeImages"), (50, 10))
        self.assertEqual(burst(lim, describe("DescribeImages"), 80), 50)
        # Never below one call.
        self.assertEqual(aws(scale=0.01).spec("ec2:DescribeInstanceTopology"), (1.0, 0.01))

    def test_overrides_are_absolute_and_null_lifts_a_limit(self):
        lim = aws(scale=0.5, overrides={"ec2:RunInstances": {"capacity": 1, "refill": 0},
                                        "ec2:DescribeImages": None})
        self.assertEqual(lim.spec("ec2:RunInstances"), (1.0, 0.0))
        self.assertIsNone(lim.spec("ec2:DescribeImages"))
        self.assertEqual(burst(lim, describe("DescribeImages"), 1000), 1000)

    def test_profile_none_limits_only_what_is_overridden(self):
        lim = Limiter(check_config({"profile": "none",
                                    "overrides": {"ssm:SendCommand": {"capacity": 2, "refill": 0}}}))
        self.assertEqual(burst(lim, Call("ssm", "SendCommand"), 5), 2)
        self.assertEqual(burst(lim, describe("RunInstances"), 50), 50)

    def test_bad_configurations_are_refused(self):
        for bad in (
            [],
            {"profile": "gcp"},
            {"scale": 0},
            {"scale": True},
            {"overrides": {"DescribeInstances": {"capacity": 1, "refill": 1}}},
            {"overrides": {"ec2:DescribeInstances": {"capacity": 1}}},
            {"overrides": {"ec2:DescribeInstances": {"capacity": -1, "refill": 1}}},
            {"overrides": {"ec2:DescribeInstances/other": None}},
            {"colour": "red"},
        ):
            with self.subTest(bad=bad), self.assertRaises(limits.LimitsError):
                check_config(bad)


class Meter_(unittest.TestCase):
    def test_families_sum_their_actions(self):
        m = Meter()
        m.record("ec2", "DescribeInstances", False, 10.0)
        m.record("ec2", "DescribeImages", True, 11.0)
        m.record("ec2", "RunInstances", False, 12.0)
        m.record("ssm", "GetCommandInvocation", False, 13.0)
        m.record("s3", "ListObjectsV2", False, 14.0)
        self.assertEqual(m.families["ec2-describe"], {"calls": 2, "throttled": 1, "first": 10.0, "last": 11.0})
        self.assertEqual(m.families["ec2-mutating"]["calls"], 1)
        self.assertEqual(m.actions["ssm:GetCommandInvocation"]["calls"], 1)
        self.assertEqual(set(m.families), {"ec2-describe", "ec2-mutating", "ssm", "s3"})

    def test_log_chunk_calls_are_counted_apart_in_their_family(self):
        m = Meter()
        m.record("s3", "GetObject", False, 1.0, "log")
        m.record("s3", "GetObject", False, 2.0, "log")
        m.record("s3", "GetObject", False, 3.0)
        self.assertEqual(m.actions["s3:GetObject/log"]["calls"], 2)
        self.assertEqual(m.actions["s3:GetObject"]["calls"], 1)
        self.assertEqual(m.families["s3"]["calls"], 3)
        self.assertTrue(LOG_CHUNK.search("/bkt/out/_rtb-job/j1/r1-a1/log/000012.log"))
        self.assertFalse(LOG_CHUNK.search("/bkt/out/_rtb-job/j1/r1-a1/result.json"))

    def test_family_names(self):
        self.assertEqual(family("ec2", "GetConsoleOutput"), "ec2-describe")
        self.assertEqual(family("ec2", "SearchTransitGatewayRoutes"), "ec2-describe")
        self.assertEqual(family("ec2", "TerminateInstances"), "ec2-mutating")
        self.assertEqual(family("batch", "SubmitJob"), "batch")


if __name__ == "__main__":
    unittest.main()
