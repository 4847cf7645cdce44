"""Table tests of the test world's IAM evaluator (iam_policy.py) and request contexts
(iam_context.py), against AWS's documented evaluation logic and the shipped ami/iam policies.

    python3 -m unittest discover -s tests/world -p 'test_iam.py'

(tests/iam_world.rs runs this with the fault proxy's venv, so `tests/run.sh` runs it.)
"""

import json
import os
import unittest

import iam_context as ic
import iam_policy as ip

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = os.path.join(HERE, "..", "..", "ami", "iam")
ACCOUNT = "000000000000"
VALUES = {
    "ACCOUNT_ID": ACCOUNT,
    "INSTANCE_ROLE_NAME": "run-render-instance",
    "INPUT_BUCKET": ["scenes"],
    "OUTPUT_BUCKET": ["renders", "renders2"],
    "QUEUE_NAME": "rtb-q",
}


def shipped(name, values=VALUES):
    with open(os.path.join(POLICIES, name)) as f:
        return ip.fill(json.load(f), values)


def managed(name):
    with open(os.path.join(HERE, "iam-managed", name)) as f:
        return ip.fill(json.load(f), VALUES)


def policy(*statements):
    doc = {"Version": "2012-10-17", "Statement": list(statements)}
    ip.check(doc)
    return doc


def allow(action, resource="*", condition=None, sid="A"):
    s = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        s["Condition"] = condition
    return s


def deny(action, resource="*", condition=None, sid="D"):
    s = allow(action, resource, condition, sid)
    s["Effect"] = "Deny"
    return s


INST = f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0abc"


class Evaluation(unittest.TestCase):
    """AWS: an explicit Deny beats any Allow; without a matching Allow, the request is denied."""

    def decide(self, policies, action, resource="*", context=None):
        return ip.evaluate(policies, action, resource, context or {}).effect

    def test_logic(self):
        p_allow = policy(allow("s3:GetObject", "arn:aws:s3:::b/*"))
        p_deny = policy(deny("s3:*", "arn:aws:s3:::b/secret/*"))
        cases = [
            # (policies, action, resource, expected)
            ([p_allow], "s3:GetObject", "arn:aws:s3:::b/k", "allow"),
            ([p_allow], "s3:PutObject", "arn:aws:s3:::b/k", "implicit_deny"),
            ([p_allow], "s3:GetObject", "arn:aws:s3:::c/k", "implicit_deny"),
            ([], "s3:GetObject", "arn:aws:s3:::b/k", "implicit_deny"),
            ([p_allow, p_deny], "s3:GetObject", "arn:aws:s3:::b/secret/k", "explicit_deny"),
            ([p_deny, p_allow], "s3:GetObject", "arn:aws:s3:::b/secret/k", "explicit_deny"),
            ([p_allow, p_deny], "s3:GetObject", "arn:aws:s3:::b/public/k", "allow"),
        ]
        for policies, action, resource, want in cases:
            with self.subTest(action=action, resource=resource, n=len(policies)):
                self.assertEqual(self.decide(policies, action, resource), want)

    def test_a_deny_whose_condition_fails_does_not_deny(self):
        p = policy(allow("ec2:*"), deny("ec2:TerminateInstances", "*",
                                        {"StringNotEquals": {"aws:ResourceTag/rtb:tool": "run-render"}}))
        ctx_ok = {"aws:ResourceTag/rtb:tool": "run-render"}
        self.assertEqual(self.decide([p], "ec2:TerminateInstances", INST, ctx_ok), "allow")
        self.assertEqual(self.decide([p], "ec2:TerminateInstances", INST, {}), "explicit_deny")

    def test_actions_match_case_insensitively_with_wildcards(self):
        p = policy(allow(["ec2:Describe*", "ssm:Get?ommandInvocation"]))
        for action, want in [
            ("ec2:DescribeInstances", "allow"),
            ("EC2:describeimages", "allow"),
            ("ec2:RunInstances", "implicit_deny"),
            ("ssm:GetCommandInvocation", "allow"),
            ("ssm:GetCCommandInvocation", "implicit_deny"),
        ]:
            with self.subTest(action=action):
                self.assertEqual(self.decide([p], action), want)

    def test_resources_match_case_sensitively_segment_by_segment(self):
        p = policy(allow("s3:GetObject", "arn:aws:s3:::Bucket/a+(b)/*"),
                   allow("ec2:TerminateInstances", "arn:aws:ec2:*:123:instance/*"))
        for action, resource, want in [
            ("s3:GetObject", "arn:aws:s3:::Bucket/a+(b)/x", "allow"),
            ("s3:GetObject", "arn:aws:s3:::bucket/a+(b)/x", "implicit_deny"),
            ("s3:GetObject", "arn:aws:s3:::Bucket/a+(b)", "implicit_deny"),
            ("ec2:TerminateInstances", "arn:aws:ec2:eu-west-1:123:instance/i-1", "allow"),
            # A wildcard in the region segment does not reach into the account segment.
            ("ec2:TerminateInstances", "arn:aws:ec2:eu-west-1:999:123:instance/i-1", "implicit_deny"),
            ("ec2:TerminateInstances", "arn:aws:ec2:eu-west-1:124:instance/i-1", "implicit_deny"),
        ]:
            with self.subTest(resource=resource):
                self.assertEqual(self.decide([p], action, resource), want)

    def test_not_action_and_not_resource(self):
        p = policy({"Sid": "NA", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                   {"Sid": "NR", "Effect": "Deny", "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::ok/*"})
        for action, resource, want in [
            ("ec2:RunInstances", "*", "allow"),
            ("iam:PassRole", "*", "implicit_deny"),
            ("s3:GetObject", "arn:aws:s3:::ok/k", "allow"),
            ("s3:GetObject", "arn:aws:s3:::other/k", "explicit_deny"),
        ]:
            with self.subTest(action=action, resource=resource):
                self.assertEqual(self.decide([p], action, resource), want)


class Conditions(unittest.TestCase):
    def holds(self, op, key, wanted, context):
        return ip.key_holds(op, key, wanted, context)

    def test_operators(self):
        tag = "aws:RequestTag/rtb:tool"
        cases = [
            # (operator, key, policy values, context, holds)
            ("StringEquals", tag, "run-render", {tag: "run-render"}, True),
            ("StringEquals", tag, "run-render", {tag: "Run-Render"}, False),
            ("StringEquals", tag, ["a", "run-render"], {tag: "run-render"}, True),
            ("StringEquals", tag, "run-render", {}, False),
            # Keys are case-insensitive, values are not.
            ("StringEquals", "AWS:REQUESTTAG/rtb:tool", "run-render", {tag: "run-render"}, True),
            ("StringEqualsIgnoreCase", tag, "run-render", {tag: "Run-Render"}, True),
            ("StringNotEquals", tag, "run-render", {tag: "other"}, True),
            ("StringNotEquals", tag, "run-render", {tag: "run-render"}, False),
            ("StringNotEquals", tag, "run-render", {}, True),  # negated: absent holds
            ("StringEqualsIfExists", tag, "run-render", {}, True),
            ("StringEqualsIfExists", tag, "run-render", {tag: "x"}, False),
            ("StringLike", tag, "run-*", {tag: "run-render"}, True),
            ("StringLike", tag, "run-?ender", {tag: "run-render"}, True),
            ("StringLike", tag, "run-?", {tag: "run-render"}, False),
            ("StringLike", tag, "run-*", {}, False),
            ("StringNotLike", tag, "run-*", {}, True),
            ("StringNotLike", tag, "run-*", {tag: "run-render"}, False),
            ("ArnLike", "aws:SourceArn", "arn:aws:iam::*:role/x-*", {"aws:SourceArn": "arn:aws:iam::1:role/x-y"}, True),
            ("ArnLike", "aws:SourceArn", "arn:aws:iam::*:role/x-*", {"aws:SourceArn": "arn:aws:iam::1:role/y"}, False),
            ("ArnEquals", "aws:SourceArn", "arn:aws:iam::1:role/*", {"aws:SourceArn": "arn:aws:iam::1:role/x"}, False),
            ("ArnNotLike", "aws:SourceArn", "arn:aws:iam::*:role/x-*", {}, True),
            ("Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": True}, True),
            ("Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": "false"}, False),
            ("Null", tag, "true", {}, True),
            ("Null", tag, "true", {tag: "x"}, False),
            ("Null", tag, "false", {tag: "x"}, True),
            # Multi-valued keys.
            ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {"aws:TagKeys": ["a"]}, True),
            ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {"aws:TagKeys": ["a", "c"]}, False),
            ("ForAllValues:StringEquals", "aws:TagKeys", ["a"], {}, True),
            ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["c", "a"]}, True),
            ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["c"]}, False),
            ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {}, False),
            ("ForAnyValue:StringNotEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["a", "b"]}, True),
            ("StringEquals", "aws:TagKeys", "a", {"aws:TagKeys": ["b", "a"]}, True),
        ]
        for op, key, wanted, context, want in cases:
            with self.subTest(op=op, key=key, wanted=wanted, context=context):
                self.assertEqual(self.holds(op, key, wanted, context), want)

    def test_every_block_and_every_key_must_hold(self):
        s = allow("ec2:RunInstances", "*", {
            "StringEquals": {"aws:RequestTag/a": "1", "aws:RequestTag/b": "2"},
            "StringLike": {"ec2:InstanceType": "t3.*"},
        })
        p = policy(s)
        full = {"aws:RequestTag/a": "1", "aws:RequestTag/b": "2", "ec2:InstanceType": "t3.micro"}
        self.assertTrue(ip.evaluate([p], "ec2:RunInstances", "*", full).allowed)
        for drop in full:
            ctx = {k: v for k, v in full.items() if k != drop}
            with self.subTest(without=drop):
                d = ip.evaluate([p], "ec2:RunInstances", "*", ctx)
                self.assertEqual(d.effect, "implicit_deny")
                self.assertIn(drop, d.reason("ec2:RunInstances", "*"))

    def test_unimplemented_parts_are_refused_when_loaded(self):
        for bad in [
            allow("s3:*", "*", {"NumericLessThan": {"s3:max-keys": "10"}}),
            allow("s3:*", "*", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            allow("s3:*", "arn:aws:s3:::b/${aws:username}/*"),
            {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
            {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
        ]:
            with self.subTest(statement=bad):
                with self.assertRaises(ip.PolicyError):
                    ip.check({"Statement": [bad]})


class Placeholders(unittest.TestCase):
    def test_buckets_expand_and_empty_statements_go(self):
        doc = {"Statement": [
            allow("s3:ListBucket", ["arn:aws:s3:::INPUT_BUCKET", "arn:aws:s3:::OUTPUT_BUCKET"], sid="L"),
            allow("s3:GetObject", "arn:aws:s3:::INPUT_BUCKET/*", sid="G"),
            allow("iam:PassRole", "arn:aws:iam::ACCOUNT_ID:role/INSTANCE_ROLE_NAME", sid="P"),
        ]}
        out = ip.fill(doc, {"ACCOUNT_ID": "1", "INSTANCE_ROLE_NAME": "r",
                            "INPUT_BUCKET": [], "OUTPUT_BUCKET": ["o1", "o2"]})
        by_sid = {s["Sid"]: s for s in out["Statement"]}
        self.assertEqual(by_sid["L"]["Resource"], ["arn:aws:s3:::o1", "arn:aws:s3:::o2"])
        self.assertNotIn("G", by_sid, "no input bucket: the statement grants nothing")
        self.assertEqual(by_sid["P"]["Resource"], ["arn:aws:iam::1:role/r"])

    def test_a_placeholder_without_value_is_an_error(self):
        with self.assertRaises(ip.PolicyError):
            ip.fill({"Statement": [allow("batch:SubmitJob", "arn:aws:batch:*:1:job-queue/QUEUE_NAME")]},
                    {"ACCOUNT_ID": "1"})

    def test_every_shipped_identity_policy_loads(self):
        for name in ["client-policy.json", "instance-role-policy.json", "client-batch-policy.json",
                     "batch-setup-policy.json", "batch-service-role-policy.json",
                     "batch-instance-role-policy.json"]:
            with self.subTest(policy=name):
                self.assertTrue(shipped(name)["Statement"])
        self.assertTrue(managed("AmazonSSMManagedInstanceCore.json")["Statement"])


class ShippedPolicies(unittest.TestCase):
    """What ami/iam/*.json allow, decided for the calls the client and the instances make."""

    def test_client_policy(self):
        client = [shipped("client-policy.json")]
        tool = {"aws:RequestTag/rtb:tool": "run-render", "aws:TagKeys": ["rtb:tool"]}
        has_tool = {"aws:ResourceTag/rtb:tool": "run-render"}
        ssm_tool = {"ssm:resourceTag/rtb:tool": "run-render"}
        A = f"arn:aws:ec2:us-east-1:{ACCOUNT}"
        cases = [
            ("ec2:DescribeInstances", "*", {}, "allow"),
            ("ec2:RunInstances", f"{A}:instance/*", tool, "allow"),
            ("ec2:RunInstances", f"{A}:network-interface/*", tool, "allow"),
            ("ec2:RunInstances", f"{A}:network-interface/*", {}, "implicit_deny"),
            ("ec2:RunInstances", f"{A}:instance/*", {"aws:RequestTag/rtb:tool": "other"}, "implicit_deny"),
            ("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1", {}, "allow"),
            ("ec2:RunInstances", f"{A}:subnet/*", {}, "allow"),
            ("ec2:RunInstances", f"{A}:key-pair/mine", {}, "implicit_deny"),
            ("ec2:CreateTags", f"{A}:instance/*", {"ec2:CreateAction": "RunInstances"}, "allow"),
            # The retag of a running instance: no CreateAction.
            ("ec2:CreateTags", f"{A}:instance/i-1", {**has_tool, "aws:RequestTag/rtb:job-id": "j2"}, "implicit_deny"),
            ("ec2:TerminateInstances", f"{A}:instance/i-1", has_tool, "allow"),
            ("ec2:TerminateInstances", f"{A}:instance/i-1", {}, "implicit_deny"),
            ("ssm:SendCommand", f"{A}:instance/i-1", ssm_tool, "allow"),
            ("ssm:SendCommand", f"{A}:instance/i-1", has_tool, "implicit_deny"),
            ("ssm:SendCommand", "arn:aws:ssm:us-east-1::document/AWS-RunShellScript", {}, "allow"),
            ("ssm:SendCommand", "arn:aws:ssm:us-east-1::document/AWS-RunPowerShellScript", {}, "implicit_deny"),
            ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/run-render-instance",
             {"iam:PassedToService": "ec2.amazonaws.com"}, "allow"),
            ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/run-render-instance",
             {"iam:PassedToService": "lambda.amazonaws.com"}, "implicit_deny"),
            ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin",
             {"iam:PassedToService": "ec2.amazonaws.com"}, "implicit_deny"),
            ("iam:GetInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/run-render-instance", {}, "allow"),
            ("iam:GetInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/other", {}, "implicit_deny"),
            ("s3:ListBucket", "arn:aws:s3:::scenes", {}, "allow"),
            ("s3:ListBucket", "arn:aws:s3:::renders2", {}, "allow"),
            ("s3:ListBucket", "arn:aws:s3:::elsewhere", {}, "implicit_deny"),
            ("s3:GetObject", "arn:aws:s3:::renders/x/_rtb-job/j/result.json", {}, "allow"),
            ("s3:GetObject", "arn:aws:s3:::scenes/scene/a.mat", {}, "implicit_deny"),
            ("s3:PutObject", "arn:aws:s3:::renders/x", {}, "implicit_deny"),
        ]
        for action, resource, context, want in cases:
            with self.subTest(action=action, resource=resource, context=context):
                self.assertEqual(ip.evaluate(client, action, resource, context).effect, want)

    def test_instance_role(self):
        role = [shipped("instance-role-policy.json"), managed("AmazonSSMManagedInstanceCore.json")]
        cases = [
            ("s3:ListBucket", "arn:aws:s3:::scenes", "allow"),
            ("s3:ListBucket", "arn:aws:s3:::renders", "allow"),
            ("s3:GetObject", "arn:aws:s3:::scenes/a/b.mat", "allow"),
            # The AWS Batch manifest case: reading from an output bucket.
            ("s3:GetObject", "arn:aws:s3:::renders/_rtb-batch/manifest.json", "implicit_deny"),
            ("s3:PutObject", "arn:aws:s3:::renders/out/x.png", "allow"),
            ("s3:PutObject", "arn:aws:s3:::scenes/x.png", "implicit_deny"),
            ("s3:AbortMultipartUpload", "arn:aws:s3:::renders2/out/x.png", "allow"),
            ("s3:DeleteObject", "arn:aws:s3:::renders/out/x.png", "implicit_deny"),
            ("s3:ListBucket", "arn:aws:s3:::elsewhere", "implicit_deny"),
            ("ssm:UpdateInstanceInformation", "*", "allow"),
            ("ec2:CreateTags", INST, "implicit_deny"),
        ]
        for action, resource, want in cases:
            with self.subTest(action=action, resource=resource):
                self.assertEqual(ip.evaluate(role, action, resource, {}).effect, want)

    def test_client_batch_policy(self):
        p = [shipped("client-batch-policy.json")]
        B = f"arn:aws:batch:us-east-1:{ACCOUNT}"
        cases = [
            ("batch:SubmitJob", f"{B}:job-queue/rtb-q", {}, "allow"),
            ("batch:SubmitJob", f"{B}:job-queue/other", {}, "implicit_deny"),
            ("batch:SubmitJob", f"{B}:job-definition/run-render-abc:3", {}, "allow"),
            ("batch:SubmitJob", f"{B}:job-definition/theirs:1", {}, "implicit_deny"),
            ("batch:TerminateJob", f"{B}:job/123", {"aws:ResourceTag/rtb:tool": "run-render"}, "allow"),
            ("batch:TerminateJob", f"{B}:job/123", {}, "implicit_deny"),
            ("s3:PutObject", "arn:aws:s3:::renders/_rtb-batch/m.json", {}, "allow"),
        ]
        for action, resource, context, want in cases:
            with self.subTest(action=action, resource=resource):
                self.assertEqual(ip.evaluate(p, action, resource, context).effect, want)


def form(**kv):
    return {k.replace("__", "."): v for k, v in kv.items()}


def tagspec(n, kind, tags):
    out = {f"TagSpecification.{n}.ResourceType": kind}
    for i, (k, v) in enumerate(tags.items(), 1):
        out[f"TagSpecification.{n}.Tag.{i}.Key"] = k
        out[f"TagSpecification.{n}.Tag.{i}.Value"] = v
    return out


class Contexts(unittest.TestCase):
    """The checks a call needs, and the decision of the shipped policy on them."""

    client = None

    @classmethod
    def setUpClass(cls):
        cls.client = [shipped("client-policy.json")]

    def decide(self, call, facts=None, policies=None):
        return [(c.action, c.resource, ip.evaluate(policies or self.client, c.action,
                                                   c.resource, c.context).effect)
                for c in ic.checks(call, facts)]

    def run_instances(self, kinds=("instance", "volume", "network-interface"), **extra):
        tags = {"rtb:tool": "run-render", "rtb:job-id": "j1", "Name": "run-render j1"}
        params = {"ImageId": "ami-1", "InstanceType": "t3.micro",
                  "IamInstanceProfile.Name": "run-render-instance", "MinCount": "1", "MaxCount": "1"}
        for n, kind in enumerate(kinds, 1):
            params.update(tagspec(n, kind, tags))
        params.update(extra)
        return ic.Call("ec2", "RunInstances", params=params)

    def test_run_instances_as_the_client_sends_it(self):
        call = self.run_instances()
        self.assertEqual(ic.wanted_facts(call), {"profiles": ["run-render-instance"]})
        role = f"arn:aws:iam::{ACCOUNT}:role/run-render-instance"
        got = self.decide(call, {"profile_roles": {"run-render-instance": [role]}})
        resources = {(a, r) for a, r, _ in got}
        A = f"arn:aws:ec2:us-east-1:{ACCOUNT}"
        for want in [
            ("ec2:RunInstances", f"{A}:instance/*"),
            ("ec2:RunInstances", f"{A}:volume/*"),
            ("ec2:RunInstances", f"{A}:network-interface/*"),
            ("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1"),
            ("ec2:RunInstances", f"{A}:subnet/*"),
            ("ec2:RunInstances", f"{A}:security-group/*"),
            ("ec2:CreateTags", f"{A}:instance/*"),
            ("ec2:CreateTags", f"{A}:network-interface/*"),
            ("iam:PassRole", role),
        ]:
            self.assertIn(want, resources)
        self.assertEqual({e for _, _, e in got}, {"allow"}, got)

    def test_run_instances_without_network_interface_tags_is_denied_there(self):
        got = self.decide(self.run_instances(kinds=("instance", "volume")))
        denied = [(a, r) for a, r, e in got if e != "allow"]
        self.assertEqual(denied, [("ec2:RunInstances",
                                   f"arn:aws:ec2:us-east-1:{ACCOUNT}:network-interface/*")])

    def test_run_instances_spot_needs_the_spot_request_tagged(self):
        got = self.decide(self.run_instances(**{"InstanceMarketOptions.MarketType": "spot"}))
        denied = [r for _, r, e in got if e != "allow"]
        self.assertEqual(denied, [f"arn:aws:ec2:us-east-1:{ACCOUNT}:spot-instances-request/*"])
        got = self.decide(self.run_instances(
            kinds=("instance", "volume", "network-interface", "spot-instances-request"),
            **{"InstanceMarketOptions.MarketType": "spot"}))
        self.assertEqual({e for _, _, e in got}, {"allow"})

    def test_pass_role_of_another_profile_is_denied(self):
        got = self.decide(self.run_instances(**{"IamInstanceProfile.Name": "admin"}),
                          {"profile_roles": {"admin": [f"arn:aws:iam::{ACCOUNT}:role/admin"]}})
        self.assertIn(("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", "implicit_deny"), got)

    def test_retag_terminate_and_send_command_read_the_targets_tags(self):
        ours = {"i-1": {"rtb:tool": "run-render", "rtb:job-id": "j1"}}
        theirs = {"i-1": {"Name": "web"}}
        retag = ic.Call("ec2", "CreateTags", params=form(ResourceId__1="i-1", Tag__1__Key="rtb:job-id",
                                                          Tag__1__Value="j2"))
        self.assertEqual(ic.wanted_facts(retag), {"instances": ["i-1"]})
        self.assertEqual([e for *_, e in self.decide(retag, {"instance_tags": ours})], ["implicit_deny"])
        term = ic.Call("ec2", "TerminateInstances", params=form(InstanceId__1="i-1"))
        self.assertEqual([e for *_, e in self.decide(term, {"instance_tags": ours})], ["allow"])
        self.assertEqual([e for *_, e in self.decide(term, {"instance_tags": theirs})], ["implicit_deny"])
        send = ic.Call("ssm", "SendCommand", params={"InstanceIds": ["i-1"],
                                                      "DocumentName": "AWS-RunShellScript"})
        self.assertEqual([e for *_, e in self.decide(send, {"instance_tags": ours})], ["allow", "allow"])
        self.assertEqual([e for *_, e in self.decide(send, {"instance_tags": theirs})],
                         ["allow", "implicit_deny"])

    def test_s3_calls(self):
        role = [shipped("instance-role-policy.json")]
        cases = [
            # (call, expected checks, decision by the instance role)
            (ic.Call("s3", "ListObjectsV2", bucket="scenes", query={"prefix": "a/"}),
             [("s3:ListBucket", "arn:aws:s3:::scenes")], "allow"),
            (ic.Call("s3", "HeadBucket", bucket="renders"),
             [("s3:ListBucket", "arn:aws:s3:::renders")], "allow"),
            (ic.Call("s3", "GetObject", bucket="scenes", key="a/b c.mat"),
             [("s3:GetObject", "arn:aws:s3:::scenes/a/b c.mat")], "allow"),
            (ic.Call("s3", "HeadObject", bucket="renders", key="m.json"),
             [("s3:GetObject", "arn:aws:s3:::renders/m.json")], "implicit_deny"),
            (ic.Call("s3", "UploadPart", bucket="renders", key="o/x", query={"partNumber": "1"}),
             [("s3:PutObject", "arn:aws:s3:::renders/o/x")], "allow"),
            (ic.Call("s3", "CopyObject", bucket="renders", key="o/x",
                     headers={"x-amz-copy-source": "/scenes/a%2Bb"}),
             [("s3:PutObject", "arn:aws:s3:::renders/o/x"), ("s3:GetObject", "arn:aws:s3:::scenes/a+b")],
             "allow"),
            (ic.Call("s3", "DeleteObjects", bucket="renders", params={"keys": ["a", "b"]}),
             [("s3:DeleteObject", "arn:aws:s3:::renders/a"), ("s3:DeleteObject", "arn:aws:s3:::renders/b")],
             "implicit_deny"),
        ]
        for call, want, effect in cases:
            with self.subTest(op=call.op):
                got = ic.checks(call)
                self.assertEqual([(c.action, c.resource) for c in got], want)
                effects = {ip.evaluate(role, c.action, c.resource, c.context).effect for c in got}
                self.assertEqual(effects, {effect})

    def test_batch_calls(self):
        p = [shipped("client-batch-policy.json")]
        submit = ic.Call("batch", "SubmitJob", params={
            "jobName": "b-1", "jobQueue": "rtb-q", "jobDefinition": "run-render-abc:2",
            "tags": {"rtb:tool": "run-render"}})
        got = self.decide(submit, policies=p)
        self.assertEqual({e for *_, e in got}, {"allow"}, got)
        self.assertIn("batch:TagResource", [a for a, *_ in got])
        other_queue = ic.Call("batch", "SubmitJob", params={"jobQueue": "arn:aws:batch:us-east-1:000000000000:job-queue/theirs",
                                                             "jobDefinition": "run-render-abc"})
        self.assertIn("implicit_deny", {e for *_, e in self.decide(other_queue, policies=p)})
        term = ic.Call("batch", "TerminateJob", params={"jobId": "j-1"})
        self.assertEqual(ic.wanted_facts(term), {"batch_jobs": ["j-1"]})
        self.assertEqual(self.decide(term, {"batch_job_tags": {"j-1": {"rtb:tool": "run-render"}}}, p),
                         [("batch:TerminateJob", f"arn:aws:batch:us-east-1:{ACCOUNT}:job/j-1", "allow")])
        self.assertEqual(self.decide(term, {"batch_job_tags": {"j-1": {}}}, p)[0][2], "implicit_deny")

    def test_the_batch_client_finds_a_jobs_instance_only_in_batch_clusters(self):
        # A job's cost on AWS Batch: its attempt's container instance -> its EC2 instance.
        p = [shipped("client-batch-policy.json")]
        E = f"arn:aws:ecs:us-east-1:{ACCOUNT}"
        cases = [
            # (cluster, container instances, [(resource, effect)])
            ("rtb-q-ce_Batch_6a1c", [f"{E}:container-instance/rtb-q-ce_Batch_6a1c/0f1e"],
             [(f"{E}:container-instance/rtb-q-ce_Batch_6a1c/0f1e", "allow")]),
            # An id alone is the named cluster's.
            (f"{E}:cluster/rtb-q-ce_Batch_6a1c", ["0f1e", "9a8b"],
             [(f"{E}:container-instance/rtb-q-ce_Batch_6a1c/0f1e", "allow"),
              (f"{E}:container-instance/rtb-q-ce_Batch_6a1c/9a8b", "allow")]),
            # Not a cluster AWS Batch made, nor another account's.
            ("web", ["0f1e"], [(f"{E}:container-instance/web/0f1e", "implicit_deny")]),
            ("x", ["arn:aws:ecs:us-east-1:999999999999:container-instance/q_Batch_1/0f"],
             [("arn:aws:ecs:us-east-1:999999999999:container-instance/q_Batch_1/0f",
               "implicit_deny")]),
        ]
        for cluster, instances, want in cases:
            with self.subTest(cluster=cluster, instances=instances):
                call = ic.Call("ecs", "DescribeContainerInstances", params={
                    "cluster": cluster, "containerInstances": instances})
                got = self.decide(call, policies=p)
                self.assertEqual([(r, e) for _, r, e in got], want)
                for c in ic.checks(call):
                    self.assertTrue(c.context["ecs:cluster"].startswith("arn:aws:ecs:"), c)
        # The rest of ECS: refused.
        got = self.decide(ic.Call("ecs", "ListClusters"), policies=p)
        self.assertEqual(got, [("ecs:ListClusters", "*", "implicit_deny")])

    def test_a_job_definition_with_a_role_passes_it(self):
        # AWS: registering a job definition that names a job role (or an execution role)
        # needs iam:PassRole on that role.
        p = [shipped("client-batch-policy.json")]
        role = f"arn:aws:iam::{ACCOUNT}:role/rtb-q-job"

        def register(**container):
            return ic.Call("batch", "RegisterJobDefinition", params={
                "jobDefinitionName": "run-render-abc", "type": "container",
                "containerProperties": dict({"image": "i"}, **container),
                "tags": {"rtb:tool": "run-render"}})
        got = self.decide(register(jobRoleArn=role), policies=p)
        self.assertIn(("iam:PassRole", role, "allow"), got)
        self.assertEqual({e for *_, e in got}, {"allow"}, got)
        admin = f"arn:aws:iam::{ACCOUNT}:role/admin"
        got = self.decide(register(jobRoleArn=role, executionRoleArn=admin), policies=p)
        self.assertEqual([(a, r) for a, r, e in got if e != "allow"], [("iam:PassRole", admin)])
        got = self.decide(register(), policies=p)
        self.assertNotIn("iam:PassRole", [a for a, *_ in got])

    def test_get_caller_identity_needs_no_permission(self):
        self.assertEqual(ic.checks(ic.Call("sts", "GetCallerIdentity")), [])


if __name__ == "__main__":
    unittest.main()
