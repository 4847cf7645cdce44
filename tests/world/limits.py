"""AWS's API rate limits in the fault proxy: token buckets at AWS's sizes, and a call meter.

Loaded by faults.py (it runs after the fault rules, on the call Faults named). Off by default:
until a test turns it on, every call goes through as before; the meter always counts.

    POST   /_limits         {"profile": "aws" | "none", "scale": 1.0, "overrides": {...}}
    GET    /_limits         the configuration in force
    DELETE /_limits         off again (buckets forgotten; the meter keeps counting)
    GET    /_limits/stats   calls and throttled calls per API family and per action,
                            with first/last timestamps, and the buckets' levels
    DELETE /_limits/stats   forget the counts

A bucket is named "service:Action" ("ec2:DescribeInstances"), with two EC2 extras:
"ec2:DescribeInstances/unfiltered" (the same call with no filter and no pagination) and
"ec2:RunInstances/instances" (the resource bucket: one token per instance). S3 has
"s3:read" and "s3:write" per bucket. `scale` multiplies the profile's sizes and rates (0.5:
the rest of the account uses half of each bucket); `overrides` set a bucket's
{"capacity": N, "refill": per_second} outright, or null for no limit.

Buckets are account-wide per region, as AWS keeps them: the key is the account (MiniStack's
rule: a 12-digit access key id is the account, any other key is 000000000000), the region of
the SigV4 scope, and the bucket's name. S3's are per bucket (one partitioned prefix each).
A throttled call is answered here with the service's own throttling error and never reaches
the emulator; it takes no token. See tests/world/README.md ("Rate limits").
"""

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

CONTROL_PREFIX = "/_limits"
DEFAULT_ACCOUNT = "000000000000"

# ── AWS's numbers: (bucket capacity, refill per second) ────────────────────────────────────
#
# EC2: "Request throttling for the Amazon EC2 API",
# https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html (read 2026-12).
# Each API action has its own bucket, sized by its category unless the page lists the action
# apart ("Uncategorized actions"); RunInstances, StartInstances, StopInstances and
# TerminateInstances also take one token per instance from a resource bucket.
EC2_NON_MUTATING = (100, 20)  # Describe*, List*, Search*, Get* not listed elsewhere
EC2_UNFILTERED = (50, 10)  # the actions below, called with no filter and no pagination
EC2_MUTATING = (50, 5)  # every other action
EC2_RESOURCE_INTENSIVE = (50, 5)
EC2_UNFILTERED_ACTIONS = {
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
}
EC2_RESOURCE_INTENSIVE_ACTIONS = {
    "AcceptVpcPeeringConnection",
    "AuthorizeSecurityGroupIngress",
    "CancelSpotInstanceRequests",
    "CreateKeyPair",
    "CreateVpcPeeringConnection",
    "DeleteVpcPeeringConnection",
    "RejectVpcPeeringConnection",
    "RevokeSecurityGroupIngress",
    "RequestSpotInstances",
}
# The page's "Uncategorized actions" this product and its neighbours call; an action not
# here takes its category's bucket (add more through overrides).
EC2_UNCATEGORIZED = {
    "RunInstances": (5, 2),
    "StartInstances": (5, 2),
    "TerminateInstances": (100, 5),
    "CreateTags": (100, 10),
    "DeleteTags": (100, 10),
    "CopyImage": (100, 1),
    "DeregisterImage": (100, 5),
    "ModifyImageAttribute": (100, 5),
    "CreateVolume": (100, 5),
    "DeleteVolume": (100, 5),
    "CreateSnapshot": (100, 5),
    "DeleteSnapshot": (100, 5),
    "CreateNetworkInterface": (100, 5),
    "DeleteNetworkInterface": (100, 5),
    "AssociateIamInstanceProfile": (100, 5),
    "DisassociateIamInstanceProfile": (100, 5),
    "ModifyInstanceMetadataOptions": (100, 5),
    "CreateLaunchTemplateVersion": (100, 5),
    "ModifyLaunchTemplate": (100, 5),
    "DescribeSpotFleetRequests": (50, 3),
    "DescribeSpotDatafeedSubscription": (100, 13),
    "DescribeReservedInstancesOfferings": (10, 10),
    "DescribeInstanceTopology": (1, 1),
}
# Same page, "Resource token bucket sizes and refill rates": tokens are instances.
EC2_RESOURCE = {
    "RunInstances": (1000, 2),
    "TerminateInstances": (1000, 20),
    "StartInstances": (1000, 2),
    "StopInstances": (1000, 20),
}

# S3: "Best practices design patterns: optimizing Amazon S3 performance",
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html: "at
# least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per partitioned
# prefix". A new bucket is one partition (S3 splits busy prefixes over 30-60 minutes, longer
# than any test), so one bucket of each class per S3 bucket. No burst is published: a
# second's worth. LIST is a GET on the bucket and counts as a read.
S3_READ = (5500, 5500)
S3_WRITE = (3500, 3500)

# AWS Batch: "AWS Batch service quotas",
# https://docs.aws.amazon.com/batch/latest/userguide/service_limits.html ("Maximum number of
# transactions per second (TPS) for each account for SubmitJob operations: 50"), and the
# knowledge-center article aws-batch-requests-error (every Batch API, 50 TPS, answered 429
# TooManyRequestsException). No burst is published: a second's worth, per action.
BATCH_ANY = (50, 50)

# SSM: ASSUMED, not published. AWS documents no per-API rate for Run Command
# (SendCommand, GetCommandInvocation, ListCommandInvocations, DescribeInstanceInformation):
# the Service Quotas list for ssm has only StartAutomationExecution (1 TPS) and Parameter
# Store's throughput, and users report AWS support quoting undocumented figures
# (github-aws-runners/terraform-aws-github-runner#2944: PutParameter 3 TPS;
# aws/amazon-ssm-agent#151; aws/aws-rfdk#1723: ListCommandInvocations polled once a second
# by a few parallel suites was throttled). These are set low enough that a client that fits
# them fits AWS; a test that knows its account's figures overrides them.
SSM_READ = (20, 10)  # Get*, List*, Describe*
SSM_WRITE = (10, 5)  # everything else (SendCommand, CancelCommand...)

# ── Throttling answers (the service's own error; faults.py's formats) ──────────────────────
THROTTLE_BY_SERVICE = {
    "ec2": ("ec2", 503, "RequestLimitExceeded", "Request limit exceeded."),
    "ssm": ("json", 400, "ThrottlingException", "Rate exceeded"),
    "s3": ("s3", 503, "SlowDown", "Please reduce your request rate."),
    "batch": ("rest-json", 429, "TooManyRequestsException", "Too Many Requests"),
}


class LimitsError(ValueError):
    pass


# ── What a call is ─────────────────────────────────────────────────────────────────────────
@dataclass
class Call:
    service: str
    action: str
    account: str = DEFAULT_ACCOUNT
    region: str = ""
    method: str = "POST"
    params: dict = field(default_factory=dict)  # query-protocol parameters: name -> [values]
    s3_bucket: str = ""


def family(service, action):
    """The API family a call is counted under: ec2-describe, ec2-mutating, ssm, s3, batch..."""
    if service == "ec2":
        return "ec2-describe" if is_non_mutating(action) else "ec2-mutating"
    return service or "unsigned"


def is_non_mutating(action):
    return action.startswith(("Describe", "List", "Search", "Get"))


def account_of(access_key_id):
    return access_key_id if re.fullmatch(r"\d{12}", access_key_id or "") else DEFAULT_ACCOUNT


def ec2_request_spec(action):
    if action in EC2_UNCATEGORIZED:
        return EC2_UNCATEGORIZED[action]
    if action in EC2_RESOURCE_INTENSIVE_ACTIONS:
        return EC2_RESOURCE_INTENSIVE
    return EC2_NON_MUTATING if is_non_mutating(action) else EC2_MUTATING


def aws_spec(name):
    """AWS's (capacity, refill) for a bucket name, or None when AWS sets no limit we model."""
    service, _, rest = name.partition(":")
    if service == "ec2":
        action, _, part = rest.partition("/")
        if part == "unfiltered":
            return EC2_UNFILTERED if action in EC2_UNFILTERED_ACTIONS else None
        if part == "instances":
            return EC2_RESOURCE.get(action)
        return ec2_request_spec(action) if not part else None
    if service == "s3":
        return {"read": S3_READ, "write": S3_WRITE}.get(rest)
    if service == "batch":
        return BATCH_ANY
    if service == "ssm":
        return SSM_READ if is_non_mutating(rest) else SSM_WRITE
    return None


def counted(params, prefix):
    """How many members a query-protocol list has: InstanceId.1, InstanceId.2..."""
    pat = re.compile(re.escape(prefix) + r"\.\d+$")
    return sum(1 for k in params if pat.match(k))


def first(params, name, default=""):
    v = params.get(name)
    return v[0] if v else default


def needs(call):
    """The buckets a call takes tokens from: [(scope, bucket name, tokens)].

    Pure: which buckets, not how full they are. Scope keeps buckets apart as AWS does
    (account and region; an S3 bucket for S3)."""
    scope = (call.account, call.region)
    if call.service == "ec2":
        a, p = call.action, call.params
        out = []
        if a in EC2_UNFILTERED_ACTIONS and not (
            counted_any(p, "Filter") or "MaxResults" in p or "NextToken" in p
        ):
            out.append((scope, f"ec2:{a}/unfiltered", 1))
        else:
            out.append((scope, f"ec2:{a}", 1))
        if a in EC2_RESOURCE:
            if a == "RunInstances":
                n = int(first(p, "MaxCount", "1") or 1)
            else:
                n = counted(p, "InstanceId")
            out.append((scope, f"ec2:{a}/instances", max(n, 1)))
        return out
    if call.service == "s3":
        if not call.s3_bucket:
            return [(scope, f"s3:{call.action}", 1)]
        kind = "read" if call.method in ("GET", "HEAD") else "write"
        return [(("s3", call.s3_bucket), f"s3:{kind}", 1)]
    if call.service:
        return [(scope, f"{call.service}:{call.action}", 1)]
    return []


def counted_any(params, prefix):
    """Filter.1.Name... : any member of a structure list."""
    pat = re.compile(re.escape(prefix) + r"\.\d+\.")
    return any(pat.match(k) for k in params)


# ── Token buckets ──────────────────────────────────────────────────────────────────────────
class Bucket:
    """A token bucket, full at creation, refilled continuously up to its capacity."""

    def __init__(self, capacity, refill, now):
        self.capacity = float(capacity)
        self.refill = float(refill)
        self.tokens = float(capacity)
        self.at = now

    def level(self, now):
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.refill)
            self.at = now
        return self.tokens

    def can(self, n, now):
        return self.level(now) >= n

    def take(self, n, now):
        self.level(now)
        self.tokens -= n


def check_config(raw):
    if not isinstance(raw, dict):
        raise LimitsError("the limits configuration must be a JSON object")
    extra = set(raw) - {"profile", "scale", "overrides"}
    if extra:
        raise LimitsError(f"unknown field(s): {', '.join(sorted(extra))}")
    profile = raw.get("profile", "aws")
    if profile not in ("aws", "none"):
        raise LimitsError("profile must be 'aws' or 'none'")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise LimitsError("scale must be a number > 0")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise LimitsError("overrides must be an object: {\"ec2:DescribeInstances\": {...}}")
    checked = {}
    for name, spec in overrides.items():
        if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+(/(unfiltered|instances))?", name):
            raise LimitsError(
                f"override {name!r}: a bucket is named service:Action "
                "(ec2:DescribeInstances, ec2:RunInstances/instances, s3:read...)"
            )
        if spec is None:
            checked[name] = None
            continue
        if not isinstance(spec, dict) or set(spec) != {"capacity", "refill"}:
            raise LimitsError(f"override {name!r}: give {{\"capacity\": N, \"refill\": N}} or null")
        c, r = spec["capacity"], spec["refill"]
        for v in (c, r):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise LimitsError(f"override {name!r}: capacity and refill are numbers >= 0")
        checked[name] = (float(c), float(r))
    return {"profile": profile, "scale": float(scale), "overrides": checked}


class Limiter:
    """The buckets of one configuration. admit() decides a call against all its buckets."""

    def __init__(self, config):
        self.config = config
        self.buckets = {}

    def spec(self, name):
        o = self.config["overrides"]
        if name in o:
            return o[name]
        if self.config["profile"] != "aws":
            return None
        base = aws_spec(name)
        if base is None:
            return None
        s = self.config["scale"]
        # A scaled bucket still holds one call: below that nothing would ever pass.
        return (max(base[0] * s, 1.0), base[1] * s)

    def bucket(self, scope, name, now):
        key = (scope, name)
        b = self.buckets.get(key)
        if b is None:
            spec = self.spec(name)
            if spec is None:
                return None
            b = self.buckets[key] = Bucket(spec[0], spec[1], now)
        return b

    def admit(self, call, now):
        """None when the call may go (its tokens taken), else the name of the bucket that is
        short. All or nothing: a call short in one bucket takes from none."""
        wanted = []
        for scope, name, n in needs(call):
            b = self.bucket(scope, name, now)
            if b is None:
                continue
            if not b.can(n, now):
                return name
            wanted.append((b, n))
        for b, n in wanted:
            b.take(n, now)
        return None

    def levels(self, now):
        out = {}
        for (scope, name), b in sorted(self.buckets.items(), key=lambda kv: repr(kv[0])):
            out[" ".join([*scope, name])] = {
                "capacity": b.capacity,
                "refill": b.refill,
                "tokens": round(b.level(now), 3),
            }
        return out


# ── The meter ──────────────────────────────────────────────────────────────────────────────
class Meter:
    def __init__(self):
        self.families = {}
        self.actions = {}

    @staticmethod
    def _bump(table, key, throttled, wall):
        c = table.get(key)
        if c is None:
            c = table[key] = {"calls": 0, "throttled": 0, "first": wall, "last": wall}
        c["calls"] += 1
        c["throttled"] += 1 if throttled else 0
        c["last"] = wall

    def record(self, service, action, throttled, wall, part=""):
        """`part` splits an action's count by what it was for (S3 calls on log chunks: "log"),
        so a benchmark can count the log's requests apart; families count them all."""
        self._bump(self.families, family(service, action), throttled, wall)
        self._bump(self.actions, f"{service}:{action}" + (f"/{part}" if part else ""), throttled, wall)


# ── The addon ──────────────────────────────────────────────────────────────────────────────
def credentials(req):
    """(access key id, region) from SigV4's Credential=AKID/DATE/REGION/SERVICE/aws4_request."""
    auth = req.headers.get("authorization", "")
    m = re.search(r"Credential=([^,\s]+)", auth)
    cred = unquote(m.group(1) if m else req.query.get("X-Amz-Credential", ""))
    parts = cred.split("/")
    if len(parts) >= 5:
        return parts[-5], parts[-3]
    return "", ""


def query_params(req):
    params = {}
    for k, v in req.query.items(multi=True):
        params.setdefault(k, []).append(v)
    ctype = req.headers.get("content-type", "").lower()
    if req.method == "POST" and ctype.startswith("application/x-www-form-urlencoded"):
        if req.raw_content is not None:
            for k, vs in parse_qs(req.get_text(strict=False) or "", keep_blank_values=True).items():
                params.setdefault(k, []).extend(vs)
    return params


# A job's live log chunk (rtb_model::layout): <records>/log/000001.log.
LOG_CHUNK = re.compile(r"/log/\d{6}\.log$")


def s3_bucket_of(req):
    bucket = urlsplit(req.path).path.lstrip("/").partition("/")[0]
    if bucket:
        return unquote(bucket)
    host = req.headers.get("host", "").split(":")[0]
    if host.count(".") >= 3 and not re.fullmatch(r"[\d.]+", host):
        return host.split(".")[0]  # virtual-hosted style: bucket.s3.region.amazonaws.com
    return ""


class Limits:
    def __init__(self, error_response, clock=time.monotonic, wall=time.time):
        self.error_response = error_response
        self.clock = clock
        self.wall = wall
        self.limiter = None
        self.meter = Meter()
        self.since = wall()

    # ── control API ────────────────────────────────────────────────────────────────────────
    def control(self, flow):
        from mitmproxy import http

        req = flow.request
        path = urlsplit(req.path).path.rstrip("/")
        status, body = 404, {"error": f"no control endpoint {req.method} {path}"}
        if path == CONTROL_PREFIX and req.method == "POST":
            try:
                config = check_config(json.loads(req.get_text(strict=False) or "{}"))
            except (ValueError, LimitsError) as e:
                status, body = 400, {"error": str(e)}
            else:
                self.limiter = Limiter(config)
                status, body = 200, self.describe()
        elif path == CONTROL_PREFIX and req.method == "GET":
            status, body = 200, self.describe()
        elif path == CONTROL_PREFIX and req.method == "DELETE":
            self.limiter = None
            status, body = 200, self.describe()
        elif path == CONTROL_PREFIX + "/stats" and req.method == "GET":
            status, body = 200, self.stats()
        elif path == CONTROL_PREFIX + "/stats" and req.method == "DELETE":
            self.meter = Meter()
            self.since = self.wall()
            status, body = 200, self.stats()
        flow.response = http.Response.make(
            status, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    def describe(self):
        if self.limiter is None:
            return {"enabled": False}
        c = self.limiter.config
        return {
            "enabled": True,
            "profile": c["profile"],
            "scale": c["scale"],
            "overrides": {
                k: (None if v is None else {"capacity": v[0], "refill": v[1]})
                for k, v in c["overrides"].items()
            },
        }

    def stats(self):
        now = self.clock()
        return {
            **self.describe(),
            "since": self.since,
            "now": self.wall(),
            "families": self.meter.families,
            "actions": self.meter.actions,
            "buckets": self.limiter.levels(now) if self.limiter else {},
        }

    # ── hooks (after Faults: a call is named once Faults has seen it) ──────────────────────
    async def requestheaders(self, flow):
        self.handle(flow)

    async def request(self, flow):
        if flow.request.path.startswith(CONTROL_PREFIX) and flow.response is None:
            if urlsplit(flow.request.path).path.rstrip("/") in (
                CONTROL_PREFIX,
                CONTROL_PREFIX + "/stats",
            ):
                self.control(flow)
                return
        self.handle(flow)

    def handle(self, flow):
        named = flow.metadata.get("faults.call")
        if named is None or flow.metadata.get("limits.seen"):
            return  # a control call, or a form body not read yet, or done
        flow.metadata["limits.seen"] = True
        service, action = named["service"], named["action"]
        if service in ("ministack", ""):
            return
        answered = flow.response is not None or flow.error is not None
        throttled = None
        if self.limiter is not None and not answered and service != "imds":
            req = flow.request
            akid, region = credentials(req)
            call = Call(
                service=service,
                action=action,
                account=account_of(akid),
                region=region,
                method=req.method,
                params=query_params(req) if service == "ec2" else {},
                s3_bucket=s3_bucket_of(req) if service == "s3" else "",
            )
            throttled = self.limiter.admit(call, self.clock())
            if throttled is not None:
                self.throttle(flow, service, named, throttled)
        part = "log" if service == "s3" and LOG_CHUNK.search(urlsplit(flow.request.path).path) else ""
        self.meter.record(service, action, throttled is not None, self.wall(), part)

    def throttle(self, flow, service, named, bucket):
        protocol, status, code, message = THROTTLE_BY_SERVICE.get(
            service, ("query", 400, "Throttling", "Rate exceeded")
        )
        flow.request.stream = False  # answered here: nothing is forwarded
        flow.response = self.error_response(flow.request, protocol, status, code, message)
        flow.response.headers["x-rtb-limit-bucket"] = bucket
        named["fault"] = "rate_limit"
