"""What IAM authorizes for one AWS call: the (action, resource ARN, context keys) checks.

Pure Python (no mitmproxy): tests/world/iam.py parses the request into a `Call`, asks
`wanted_facts` what the emulator must tell about existing resources (an instance's tags, an
instance profile's role, a Batch job's tags), fetches that, and evaluates every `Check` that
`checks` returns with tests/world/iam_policy.py. Every check must be allowed for the call to go
through. tests/world/test_iam.py table-tests this module.

Resources and condition keys follow AWS's Service Authorization Reference for the calls the
client, the runner and AWS Batch jobs make; the rest of a service gets a resource-less check
(`*`) so a policy that does not name the action denies it. Choices where the emulator cannot
say what AWS would (written down so a reader can judge them):
- RunInstances without SubnetId / SecurityGroupId is checked against `subnet/*` /
  `security-group/*` (AWS uses the default subnet's and group's ids): a policy naming one
  subnet or group by id would deny such a launch here.
- `aws:RequestTag/...` and `aws:TagKeys` in RunInstances come, for each created resource type
  (instance, volume, network-interface, spot-instances-request), from that type's
  TagSpecification only: an untagged network interface fails a RequestTag condition as on AWS.
  Existing resources (image, subnet, security group, key pair) get no request tags.
- CreateTags outside a launch carries no `ec2:CreateAction`; inside RunInstances it is
  `RunInstances`, one `ec2:CreateTags` check per tagged resource type.
- An instance or Batch job the emulator does not know (already gone) is checked without its
  tags; iam.py forwards such a call when that is the only reason for a denial, so the
  emulator's own NotFound answers it (as AWS answers before looking at tags). Likewise an S3
  call on a bucket that does not exist goes to the emulator (NoSuchBucket: S3 answers 404 for a
  missing bucket whoever asks).
- RegisterJobDefinition needs `iam:PassRole` on the container's job role and execution role,
  if named (no PassedToService: AWS does not document the service those passes name);
- AddRoleToInstanceProfile needs `iam:PassRole` on the role (no PassedToService);
  CreateComputeEnvironment passes its serviceRole to batch.amazonaws.com and the instance
  profile's role to ec2.amazonaws.com.
- ECS DescribeContainerInstances is checked per container instance ARN (an id alone gets the
  request's cluster, `default` when none), with `ecs:cluster` the cluster's ARN.
"""

import json
from urllib.parse import unquote

# Calls IAM never refuses (AWS: no permission needed).
ALWAYS_ALLOWED = {("sts", "GetCallerIdentity")}

EC2_ID_TYPES = {
    "i": "instance",
    "vol": "volume",
    "eni": "network-interface",
    "sir": "spot-instances-request",
    "sg": "security-group",
    "subnet": "subnet",
    "vpc": "vpc",
    "snap": "snapshot",
    "lt": "launch-template",
    "igw": "internet-gateway",
    "rtb": "route-table",
}
# Resource types RunInstances creates (and may tag through TagSpecifications).
CREATED_BY_RUN_INSTANCES = ("instance", "volume", "network-interface")

# EC2 actions with resource-level permissions this module knows; any other EC2 action is
# checked against "*" (Describe* calls, for instance, support no resource ARNs).
EC2_INSTANCE_ACTIONS = {
    "TerminateInstances",
    "StopInstances",
    "StartInstances",
    "RebootInstances",
    "ModifyInstanceAttribute",
    "ModifyInstanceMetadataOptions",
}

S3_ACTION_NAMES = {
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListParts": "ListMultipartUploadParts",
    "ListBuckets": "ListAllMyBuckets",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
}


class Call:
    """One parsed AWS request.

    service: the SigV4 scope's service; op: the API operation; region, account: where it
    acts; params: the query protocol's form fields (flat, 'InstanceId.1': 'i-1'), or the JSON
    body (SSM, Batch); for S3: bucket, key (decoded), query (dict), headers (lower-case
    names); path: the URL path (Batch's /v1/tags/ARN)."""

    def __init__(self, service, op, region="us-east-1", account="000000000000", params=None,
                 bucket="", key="", query=None, headers=None, path=""):
        self.service = service
        self.op = op
        self.region = region or "us-east-1"
        self.account = account
        self.params = params or {}
        self.bucket = bucket
        self.key = key
        self.query = query or {}
        self.headers = headers or {}
        self.path = path


class Check:
    """One authorization: action, resource ARN, request context."""

    def __init__(self, action, resource, context=None):
        self.action = action
        self.resource = resource
        self.context = context or {}

    def as_tuple(self):
        return (self.action, self.resource, self.context)

    def __repr__(self):
        return f"Check({self.action!r}, {self.resource!r}, {self.context!r})"


# ── helpers ──────────────────────────────────────────────────────────────────────────────────
def numbered(params, prefix):
    """Values of 'Prefix.1', 'Prefix.2', ... in order."""
    out, n = [], 1
    while f"{prefix}.{n}" in params:
        out.append(params[f"{prefix}.{n}"])
        n += 1
    return out


def numbered_groups(params, prefix):
    """['Prefix.1.', 'Prefix.2.', ...] for every N that has a field."""
    ns = set()
    for k in params:
        if k.startswith(prefix + "."):
            head = k[len(prefix) + 1:].split(".", 1)[0]
            if head.isdigit():
                ns.add(int(head))
    return [f"{prefix}.{n}." for n in sorted(ns)]


def tags_from_form(params, prefix):
    """{'Key': 'Value'} of 'Prefix.N.Key' / 'Prefix.N.Value'."""
    tags = {}
    for g in numbered_groups(params, prefix):
        if g + "Key" in params:
            tags[params[g + "Key"]] = params.get(g + "Value", "")
    return tags


def request_tag_context(tags):
    ctx = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if tags:
        ctx["aws:TagKeys"] = list(tags)
    return ctx


def resource_tag_context(tags, service_prefix=None):
    ctx = {f"aws:ResourceTag/{k}": v for k, v in (tags or {}).items()}
    if service_prefix:
        ctx.update({f"{service_prefix}:ResourceTag/{k}": v for k, v in (tags or {}).items()})
    return ctx


def ec2_arn(call, kind, ident):
    if kind == "image":
        return f"arn:aws:ec2:{call.region}::image/{ident}"
    return f"arn:aws:ec2:{call.region}:{call.account}:{kind}/{ident}"


def ec2_arn_for_id(call, ident):
    kind = EC2_ID_TYPES.get(ident.split("-", 1)[0])
    if ident.startswith("ami-"):
        kind = "image"
    return ec2_arn(call, kind or "unknown", ident)


def global_context(call):
    return {"aws:RequestedRegion": call.region}


def iam_role_arn(account, name_or_arn):
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:aws:iam::{account}:role/{name_or_arn}"


def profile_name(name_or_arn):
    return name_or_arn.rsplit("/", 1)[-1]


# ── what to ask the emulator ─────────────────────────────────────────────────────────────────
def wanted_facts(call):
    """{'instances': [ids whose tags count], 'profiles': [instance profile names whose role
    is passed], 'batch_jobs': [Batch job ids whose tags count], 'batch_arns': [ARNs for
    TagResource]}; empty lists are left out."""
    want = {}
    p = call.params
    if call.service == "ec2":
        if call.op in EC2_INSTANCE_ACTIONS:
            want["instances"] = numbered(p, "InstanceId")
        elif call.op == "CreateTags":
            want["instances"] = [r for r in numbered(p, "ResourceId") if r.startswith("i-")]
        elif call.op == "RunInstances":
            name = p.get("IamInstanceProfile.Name") or p.get("IamInstanceProfile.Arn")
            if name:
                want["profiles"] = [profile_name(name)]
    elif call.service == "ssm" and call.op == "SendCommand":
        want["instances"] = [i for i in as_list(p.get("InstanceIds")) if isinstance(i, str)]
    elif call.service == "batch":
        if call.op in ("CancelJob", "TerminateJob") and p.get("jobId"):
            want["batch_jobs"] = [p["jobId"]]
        elif call.op in ("TagResource", "UntagResource", "ListTagsForResource"):
            arn = batch_tag_arn(call)
            if ":job/" in arn:
                want["batch_jobs"] = [arn.rsplit("/", 1)[-1]]
        elif call.op == "CreateComputeEnvironment":
            ip = (p.get("computeResources") or {}).get("instanceRole")
            if ip:
                want["profiles"] = [profile_name(ip)]
    elif call.service == "iam" and call.op == "AddRoleToInstanceProfile":
        pass  # the role is in the request
    return {k: v for k, v in want.items() if v}


def as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


# ── the checks ───────────────────────────────────────────────────────────────────────────────
def checks(call, facts=None):
    """Every Check the call needs; [] when IAM does not check it at all."""
    facts = facts or {}
    if (call.service, call.op) in ALWAYS_ALLOWED:
        return []
    build = {
        "ec2": ec2_checks,
        "ssm": ssm_checks,
        "s3": s3_checks,
        "iam": iam_checks,
        "batch": batch_checks,
        "ecs": ecs_checks,
    }.get(call.service)
    if build is None:
        return [Check(f"{call.service}:{call.op}", "*", global_context(call))]
    out = build(call, facts)
    for c in out:
        for k, v in global_context(call).items():
            c.context.setdefault(k, v)
    return out


def instance_tags(facts, ident):
    return (facts.get("instance_tags") or {}).get(ident)


def ec2_checks(call, facts):
    p = call.params
    op = call.op
    if op == "RunInstances":
        return run_instances_checks(call, facts)
    if op == "CreateTags":
        tags = tags_from_form(p, "Tag")
        out = []
        for rid in numbered(p, "ResourceId"):
            ctx = request_tag_context(tags)
            ctx.update(resource_tag_context(instance_tags(facts, rid), "ec2"))
            out.append(Check("ec2:CreateTags", ec2_arn_for_id(call, rid), ctx))
        return out
    if op in EC2_INSTANCE_ACTIONS:
        return [
            Check(f"ec2:{op}", ec2_arn(call, "instance", i),
                  resource_tag_context(instance_tags(facts, i), "ec2"))
            for i in numbered(p, "InstanceId")
        ]
    return [Check(f"ec2:{op}", "*")]


def run_instances_checks(call, facts):
    p = call.params
    by_type = {}
    for g in numbered_groups(p, "TagSpecification"):
        kind = p.get(g + "ResourceType", "")
        by_type.setdefault(kind, {}).update(tags_from_form(p, g + "Tag"))
    spot = p.get("InstanceMarketOptions.MarketType", "").lower() == "spot"
    created = list(CREATED_BY_RUN_INSTANCES) + (["spot-instances-request"] if spot else [])
    out = []
    for kind in created:
        ctx = request_tag_context(by_type.get(kind, {}))
        if kind == "instance":
            ctx["ec2:InstanceType"] = p.get("InstanceType", "m1.small")
            ctx["ec2:InstanceMarketType"] = "spot" if spot else "on-demand"
            if p.get("MetadataOptions.HttpTokens"):
                ctx["ec2:MetadataHttpTokens"] = p["MetadataOptions.HttpTokens"]
        out.append(Check("ec2:RunInstances", ec2_arn(call, kind, "*"), ctx))
    if p.get("ImageId"):
        out.append(Check("ec2:RunInstances", ec2_arn(call, "image", p["ImageId"])))
    subnets = [p["SubnetId"]] if p.get("SubnetId") else []
    groups = numbered(p, "SecurityGroupId")
    for g in numbered_groups(p, "NetworkInterface"):
        if p.get(g + "SubnetId"):
            subnets.append(p[g + "SubnetId"])
        groups.extend(numbered(p, g + "SecurityGroupId"))
    for s in subnets or ["*"]:
        out.append(Check("ec2:RunInstances", ec2_arn(call, "subnet", s)))
    for g in groups or ["*"]:
        out.append(Check("ec2:RunInstances", ec2_arn(call, "security-group", g)))
    if p.get("KeyName"):
        out.append(Check("ec2:RunInstances", ec2_arn(call, "key-pair", p["KeyName"])))
    if p.get("LaunchTemplate.LaunchTemplateId"):
        out.append(Check("ec2:RunInstances",
                         ec2_arn(call, "launch-template", p["LaunchTemplate.LaunchTemplateId"])))
    # Tags in TagSpecifications are created by the launch: ec2:CreateTags with CreateAction.
    for kind, tags in by_type.items():
        if not tags:
            continue
        ctx = request_tag_context(tags)
        ctx["ec2:CreateAction"] = "RunInstances"
        out.append(Check("ec2:CreateTags", ec2_arn(call, kind, "*"), ctx))
    # The instance profile's role is passed to EC2.
    for role in (facts.get("profile_roles") or {}).get(
            profile_name(p.get("IamInstanceProfile.Name") or p.get("IamInstanceProfile.Arn") or ""),
            []):
        out.append(Check("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
    return out


def ssm_document_arn(call, name):
    if name.startswith("arn:"):
        return name
    if name.startswith("AWS-") or name.startswith("Amazon"):
        return f"arn:aws:ssm:{call.region}::document/{name}"
    return f"arn:aws:ssm:{call.region}:{call.account}:document/{name}"


def ssm_checks(call, facts):
    p = call.params
    if call.op == "SendCommand":
        out = [Check("ssm:SendCommand", ssm_document_arn(call, p.get("DocumentName", "")))]
        ids = [i for i in as_list(p.get("InstanceIds")) if isinstance(i, str)]
        for i in ids:
            tags = instance_tags(facts, i)
            ctx = resource_tag_context(tags)
            ctx.update({f"ssm:resourceTag/{k}": v for k, v in (tags or {}).items()})
            out.append(Check("ssm:SendCommand", ec2_arn(call, "instance", i), ctx))
        if not ids and p.get("Targets"):
            out.append(Check("ssm:SendCommand", ec2_arn(call, "instance", "*")))
        return out
    if call.op in ("GetDocument", "DescribeDocument"):
        return [Check(f"ssm:{call.op}", ssm_document_arn(call, p.get("Name", "")))]
    # DescribeInstanceInformation, GetCommandInvocation, ListCommand*, CancelCommand: the
    # shipped policy grants them on "*" (CancelCommand's instance condition would deny all).
    return [Check(f"ssm:{call.op}", "*")]


def s3_checks(call, facts):
    op = call.op
    if op == "ListBuckets":
        return [Check("s3:ListAllMyBuckets", "*")]
    bucket_arn = f"arn:aws:s3:::{call.bucket}"
    object_arn = f"{bucket_arn}/{call.key}"
    action = "s3:" + S3_ACTION_NAMES.get(op, op)
    if op == "GetObject" and call.query.get("versionId"):
        action = "s3:GetObjectVersion"
    if op in ("CopyObject", "UploadPartCopy"):
        src = unquote(call.headers.get("x-amz-copy-source", "")).lstrip("/").split("?", 1)[0]
        return [Check("s3:PutObject", object_arn), Check("s3:GetObject", f"arn:aws:s3:::{src}")]
    if op == "DeleteObjects":
        keys = as_list(call.params.get("keys"))
        return [Check("s3:DeleteObject", f"{bucket_arn}/{k}") for k in keys] or [
            Check("s3:DeleteObject", f"{bucket_arn}/*")
        ]
    if not call.key:
        ctx = {}
        if action == "s3:ListBucket":
            for q in ("prefix", "delimiter", "max-keys"):
                if q in call.query:
                    ctx[f"s3:{q}"] = call.query[q]
        return [Check(action, bucket_arn, ctx)]
    return [Check(action, object_arn)]


def iam_checks(call, facts):
    p = call.params
    a = call.account
    op = call.op
    if "InstanceProfileName" in p:
        res = f"arn:aws:iam::{a}:instance-profile/{p['InstanceProfileName']}"
        out = [Check(f"iam:{op}", res)]
        if op == "AddRoleToInstanceProfile" and p.get("RoleName"):
            out.append(Check("iam:PassRole", iam_role_arn(a, p["RoleName"])))
        return out
    if "RoleName" in p:
        path = p.get("Path", "/") if op == "CreateRole" else "/"
        path = path if path.endswith("/") else path + "/"
        res = f"arn:aws:iam::{a}:role{path}{p['RoleName']}"
        ctx = request_tag_context(tags_from_form(p, "Tags.member"))
        return [Check(f"iam:{op}", res, ctx)]
    if "PolicyArn" in p:
        return [Check(f"iam:{op}", p["PolicyArn"])]
    return [Check(f"iam:{op}", "*")]


def batch_arn(call, kind, name_or_arn):
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:aws:batch:{call.region}:{call.account}:{kind}/{name_or_arn}"


def batch_tag_arn(call):
    path = call.path.split("?", 1)[0]
    return unquote(path[len("/v1/tags/"):]) if path.startswith("/v1/tags/") else ""


def batch_job_tags(facts, job_id):
    return (facts.get("batch_job_tags") or {}).get(job_id)


def batch_checks(call, facts):
    p = call.params
    op = call.op
    tags = p.get("tags") if isinstance(p.get("tags"), dict) else {}
    if op == "RegisterJobDefinition":
        res = batch_arn(call, "job-definition", p.get("jobDefinitionName", ""))
        out = [Check("batch:RegisterJobDefinition", res, request_tag_context(tags))]
        if tags:
            out.append(Check("batch:TagResource", res, request_tag_context(tags)))
        container = p.get("containerProperties")
        container = container if isinstance(container, dict) else {}
        for key in ("jobRoleArn", "executionRoleArn"):
            if container.get(key):
                out.append(Check("iam:PassRole", iam_role_arn(call.account, container[key])))
        return out
    if op == "SubmitJob":
        ctx = request_tag_context(tags)
        out = [
            Check("batch:SubmitJob", batch_arn(call, "job-queue", p.get("jobQueue", "")), dict(ctx)),
            Check("batch:SubmitJob",
                  batch_arn(call, "job-definition", p.get("jobDefinition", "")), dict(ctx)),
        ]
        if tags:
            out.append(Check("batch:TagResource",
                             f"arn:aws:batch:{call.region}:{call.account}:job/*", dict(ctx)))
        return out
    if op in ("CancelJob", "TerminateJob"):
        job = p.get("jobId", "")
        return [Check(f"batch:{op}", batch_arn(call, "job", job),
                      resource_tag_context(batch_job_tags(facts, job)))]
    if op in ("TagResource", "UntagResource", "ListTagsForResource"):
        arn = batch_tag_arn(call)
        ctx = {}
        if ":job/" in arn:
            ctx.update(resource_tag_context(batch_job_tags(facts, arn.rsplit("/", 1)[-1])))
        if op == "TagResource":
            ctx.update(request_tag_context(tags))
        return [Check(f"batch:{op}", arn, ctx)]
    if op in ("CreateComputeEnvironment", "UpdateComputeEnvironment", "DeleteComputeEnvironment"):
        name = p.get("computeEnvironmentName") or p.get("computeEnvironment", "")
        res = batch_arn(call, "compute-environment", name)
        out = [Check(f"batch:{op}", res, request_tag_context(tags))]
        if tags:
            out.append(Check("batch:TagResource", res, request_tag_context(tags)))
        if p.get("serviceRole"):
            out.append(Check("iam:PassRole", iam_role_arn(call.account, p["serviceRole"]),
                             {"iam:PassedToService": "batch.amazonaws.com"}))
        ip = (p.get("computeResources") or {}).get("instanceRole")
        for role in (facts.get("profile_roles") or {}).get(profile_name(ip or ""), []):
            out.append(Check("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
        return out
    if op in ("CreateJobQueue", "UpdateJobQueue", "DeleteJobQueue"):
        res = batch_arn(call, "job-queue", p.get("jobQueueName") or p.get("jobQueue", ""))
        out = [Check(f"batch:{op}", res, request_tag_context(tags))]
        for o in as_list(p.get("computeEnvironmentOrder")):
            if isinstance(o, dict) and o.get("computeEnvironment"):
                out.append(Check(f"batch:{op}",
                                 batch_arn(call, "compute-environment", o["computeEnvironment"])))
        if tags:
            out.append(Check("batch:TagResource", res, request_tag_context(tags)))
        return out
    # Describe*, List*: no resource-level permissions.
    return [Check(f"batch:{op}", "*")]


def ecs_cluster_arn(call, name_or_arn):
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:aws:ecs:{call.region}:{call.account}:cluster/{name_or_arn or 'default'}"


def ecs_checks(call, facts):
    """DescribeContainerInstances is authorized per container instance (ARN
    `container-instance/CLUSTER/ID`; an id alone is the named cluster's), with `ecs:cluster`;
    the rest of ECS gets a resource-less check."""
    p = call.params
    if call.op == "DescribeContainerInstances":
        cluster = ecs_cluster_arn(call, p.get("cluster") or "")
        name = cluster.rsplit("/", 1)[-1]
        out = []
        for ci in as_list(p.get("containerInstances")):
            if not isinstance(ci, str):
                continue
            res = ci if ci.startswith("arn:") else (
                f"arn:aws:ecs:{call.region}:{call.account}:container-instance/{name}/{ci}")
            out.append(Check("ecs:DescribeContainerInstances", res, {"ecs:cluster": cluster}))
        return out or [Check("ecs:DescribeContainerInstances", "*", {"ecs:cluster": cluster})]
    return [Check(f"ecs:{call.op}", "*")]


def parse_json(text):
    try:
        v = json.loads(text or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}
