"""Fault injection between the AWS SDK and MiniStack: a mitmproxy addon.

    mitmdump -q --mode reverse:http://127.0.0.1:MINISTACK_PORT \
        --listen-host 127.0.0.1 --listen-port P -s tests/world/faults.py

Every call is named (service from the SigV4 credential scope, action from the protocol),
logged, and matched against rules that tests send to the control API on the same port:

    POST   /_faults/rules   a JSON array of rules (or one rule), appended in order
    DELETE /_faults/rules   remove every rule
    GET    /_faults/calls   every proxied call so far, in arrival order
    DELETE /_faults/calls   forget the calls seen so far
    GET    /_faults/ping    200 once the addon is loaded

Beside iam.py (loaded first, `-s iam.py -s faults.py`): a call iam.py refused is logged with
`"denied": {...}` (principal, action, resource, reason) and gets no fault; iam.py's own
control calls (/_iam/) are not logged. An instance's metadata call (/_imds/<instance id>/...)
is matched by that path, as sent, so `path_contains` can pick one instance. RTB_FAULTS_KEEP_CALLS=N keeps only the last N calls
(the world's long-lived proxy).

A rule: {"action": "RunInstances" | "*", "service": "ec2", "path_contains": "out/b.png",
"skip": 0, "times": 1 | null, "fault": {"kind": ...}}. The first rule that matches a call and
has budget left takes it: its first `skip` calls pass untouched, the next `times` (null: all)
get the fault. Fault kinds: delay, stall, error, throttle, drop_request, drop_response,
corrupt_body, rewrite_etag, set_header, respond. See tests/world/README.md ("Fault injection").

Bodies over 1 MiB, or of unknown length, stream through (a 256 MiB upload is never held
whole). The addon decides that per call instead of mitmproxy's global stream_large_bodies
option (leave that unset: it would stream even where a rule needs the body): a body is
buffered only when the query protocol's Action is in it, when a rule answers here instead of
the emulator (the request is read whole first), or for an ETag rewrite of an XML listing.
"""

import asyncio
import hashlib
import json
import os
import re
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from mitmproxy import ctx, http
from mitmproxy.net.http.http1 import expected_http_body_size

CONTROL_PREFIX = "/_faults/"
# The control APIs of the world's other addons (world_addons below): never forwarded or logged.
OTHER_CONTROL_PREFIXES = ("/_limits", "/_prices")
# How long a stalled call is held before its connection is closed (if the proxy lives that long).
STALL_SECONDS = 30 * 60
DEFAULT_MESSAGE = "fault injected by the test world's fault proxy"
# Bodies larger than this (or of unknown length) are streamed, not buffered.
STREAM_ABOVE = 1024 * 1024

KINDS = {
    "delay",
    "stall",
    "error",
    "throttle",
    "drop_request",
    "drop_response",
    "corrupt_body",
    "rewrite_etag",
    "set_header",
    "respond",
}
# Faults decided before forwarding that answer (or cut) instead of the emulator.
NOT_FORWARDED = {"stall", "error", "throttle", "drop_request", "respond"}

# Services on the query protocol (form-encoded POST with Action=...). EC2 has its own error format.
QUERY_SERVICES = {
    "ec2",
    "iam",
    "sts",
    "sns",
    "sqs",
    "cloudformation",
    "autoscaling",
    "elasticloadbalancing",
    "rds",
    "monitoring",
    "ses",
    "elasticache",
    "redshift",
}

# AWS Batch is REST-JSON: POST /v1/<operation in lower case>.
BATCH_OPERATIONS = [
    "CancelJob",
    "CreateComputeEnvironment",
    "CreateConsumableResource",
    "CreateJobQueue",
    "CreateSchedulingPolicy",
    "CreateServiceEnvironment",
    "DeleteComputeEnvironment",
    "DeleteConsumableResource",
    "DeleteJobQueue",
    "DeleteSchedulingPolicy",
    "DeleteServiceEnvironment",
    "DeregisterJobDefinition",
    "DescribeComputeEnvironments",
    "DescribeConsumableResource",
    "DescribeJobDefinitions",
    "DescribeJobQueues",
    "DescribeJobs",
    "DescribeSchedulingPolicies",
    "DescribeServiceEnvironments",
    "DescribeServiceJob",
    "GetJobQueueSnapshot",
    "ListConsumableResources",
    "ListJobs",
    "ListJobsByConsumableResource",
    "ListSchedulingPolicies",
    "ListServiceJobs",
    "RegisterJobDefinition",
    "SubmitJob",
    "SubmitServiceJob",
    "TerminateJob",
    "TerminateServiceJob",
    "UpdateComputeEnvironment",
    "UpdateConsumableResource",
    "UpdateJobQueue",
    "UpdateSchedulingPolicy",
    "UpdateServiceEnvironment",
]
BATCH_BY_PATH = {op.lower(): op for op in BATCH_OPERATIONS}
# Words to rebuild CamelCase for an operation this table does not know yet.
BATCH_WORDS = sorted(
    {w for op in BATCH_OPERATIONS for w in re.findall(r"[A-Z][a-z]*", op)} | {"By", "Get"},
    key=len,
    reverse=True,
)

# S3 sub-resources whose operation name is not just the capitalised query key.
S3_SUBRESOURCE_NAMES = {
    "acl": "Acl",
    "cors": "Cors",
    "lifecycle": "LifecycleConfiguration",
    "notification": "NotificationConfiguration",
    "publicAccessBlock": "PublicAccessBlock",
    "ownershipControls": "OwnershipControls",
    "object-lock": "ObjectLockConfiguration",
    "requestPayment": "RequestPayment",
    "accelerate": "AccelerateConfiguration",
    "intelligent-tiering": "IntelligentTieringConfiguration",
    "inventory": "InventoryConfiguration",
    "metrics": "MetricsConfiguration",
    "analytics": "AnalyticsConfiguration",
    "replication": "Replication",
    "website": "Website",
    "logging": "Logging",
    "encryption": "Encryption",
    "policy": "Policy",
    "tagging": "Tagging",
    "versioning": "Versioning",
}
ETAG_ELEMENT = re.compile(rb"<ETag>(.*?)</ETag>", re.S)


class RuleError(ValueError):
    pass


def is_large(request, response=None):
    try:
        size = expected_http_body_size(request, response)
    except ValueError:
        return True
    return size is None or size < 0 or size > STREAM_ABOVE


def camel_from_words(text, words):
    """'describejobqueues' -> 'DescribeJobQueues' with a vocabulary of capitalised words."""
    out, i = [], 0
    while i < len(text):
        for w in words:
            if text.startswith(w.lower(), i):
                out.append(w)
                i += len(w)
                break
        else:
            out.append(text[i:].capitalize())
            break
    return "".join(out)


def credential_scope(req):
    """(region, service) from SigV4's Credential=AKID/DATE/REGION/SERVICE/aws4_request."""
    auth = req.headers.get("authorization", "")
    m = re.search(r"Credential=([^,\s]+)", auth)
    cred = m.group(1) if m else req.query.get("X-Amz-Credential", "")
    parts = unquote(cred).split("/")
    if len(parts) >= 5 and parts[-1] == "aws4_request":
        return parts[-3], parts[-2]
    return "", ""


def split_path(path):
    """'/b/k/x?q' -> ('b', 'k/x'): bucket and key of a path-style S3 URL (still %-encoded)."""
    p = urlsplit(path).path.lstrip("/")
    bucket, _, key = p.partition("/")
    return bucket, key


def s3_subresource(query):
    for k in query:
        if k in S3_SUBRESOURCE_NAMES:
            return S3_SUBRESOURCE_NAMES[k]
    return None


def s3_action(req):
    q = req.query
    x_id = q.get("x-id", "")
    if re.fullmatch(r"[A-Z][A-Za-z0-9]+", x_id or ""):
        return x_id  # the SDK names the operation itself for many S3 calls
    bucket, key = split_path(req.path)
    m = req.method
    copy = "x-amz-copy-source" in req.headers
    if not bucket:
        return "ListBuckets" if m == "GET" else m.capitalize() + "Service"
    sub = s3_subresource(q)
    if not key:
        if m == "GET":
            if q.get("list-type") == "2":
                return "ListObjectsV2"
            if "uploads" in q:
                return "ListMultipartUploads"
            if "versions" in q:
                return "ListObjectVersions"
            if "location" in q:
                return "GetBucketLocation"
            return "GetBucket" + sub if sub else "ListObjects"
        if m == "HEAD":
            return "HeadBucket"
        if m == "PUT":
            return "PutBucket" + sub if sub else "CreateBucket"
        if m == "DELETE":
            return "DeleteBucket" + sub if sub else "DeleteBucket"
        if m == "POST":
            return "DeleteObjects" if "delete" in q else "PostObject"
        return m.capitalize() + "Bucket"
    if m == "PUT":
        if "partNumber" in q and "uploadId" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if "tagging" in q:
            return "PutObjectTagging"
        if "acl" in q:
            return "PutObjectAcl"
        if "retention" in q:
            return "PutObjectRetention"
        if "legal-hold" in q:
            return "PutObjectLegalHold"
        return "CopyObject" if copy else "PutObject"
    if m == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        if "restore" in q:
            return "RestoreObject"
        if "select" in q:
            return "SelectObjectContent"
        return "PostObject"
    if m == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        if "tagging" in q:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if m == "GET":
        if "uploadId" in q:
            return "ListParts"
        if "tagging" in q:
            return "GetObjectTagging"
        if "acl" in q:
            return "GetObjectAcl"
        if "attributes" in q:
            return "GetObjectAttributes"
        return "GetObject"
    if m == "HEAD":
        return "HeadObject"
    return m.capitalize() + "Object"


def batch_action(req):
    path = urlsplit(req.path).path.rstrip("/")
    if path.startswith("/v1/tags/"):
        return {"POST": "TagResource", "GET": "ListTagsForResource", "DELETE": "UntagResource"}.get(
            req.method, "TagResource"
        )
    last = path.rsplit("/", 1)[-1].lower()
    return BATCH_BY_PATH.get(last) or camel_from_words(last, BATCH_WORDS)


def is_form(req):
    return req.headers.get("content-type", "").lower().startswith(
        "application/x-www-form-urlencoded"
    )


def needs_body_for_action(req, service):
    """The query protocol carries Action= in the form body."""
    if "x-amz-target" in req.headers or "Action" in req.query:
        return False
    return req.method == "POST" and (service in QUERY_SERVICES or is_form(req))


def classify(req, with_body):
    """(service, action, protocol). protocol picks the error format: ec2, query, json, s3, rest-json."""
    _, service = credential_scope(req)
    path = urlsplit(req.path).path
    target = req.headers.get("x-amz-target", "")
    if target:
        return service, target.rsplit(".", 1)[-1], "json"
    if "Action" in req.query:
        action = req.query.get("Action", "")
        return service, action, "ec2" if service == "ec2" else "query"
    if service in QUERY_SERVICES or (req.method == "POST" and is_form(req)):
        action = ""
        if with_body:
            form = parse_qs(req.get_text(strict=False) or "", keep_blank_values=True)
            action = (form.get("Action") or [""])[0]
        return service, action, "ec2" if service == "ec2" else "query"
    if service == "s3":
        return service, s3_action(req), "s3"
    if service == "batch" or path.startswith("/v1/"):
        return service or "batch", batch_action(req), "rest-json"
    if not service and path.startswith("/latest/"):
        return "imds", "GetToken" if req.method == "PUT" else "GetMetadata", "rest-json"
    if not service and path.startswith("/_ministack/"):
        return "ministack", path[len("/_ministack/"):], "rest-json"
    return service, req.method + " " + path, "rest-json"


def request_id():
    return str(uuid.uuid4())


def default_code(protocol, status):
    if status == 503:
        return {"ec2": "Unavailable", "s3": "ServiceUnavailable"}.get(protocol, "ServiceUnavailable")
    if status >= 500:
        return {
            "ec2": "InternalError",
            "s3": "InternalError",
            "query": "ServiceFailure",
            "json": "InternalServerError",
            "rest-json": "ServerException",
        }[protocol]
    return "InjectedFault"


def error_response(req, protocol, status, code, message):
    """An error answer in the service's own format, so the SDK parses the code."""
    rid = request_id()
    xml_escape = (
        lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    )
    c, msg = xml_escape(code), xml_escape(message)
    if protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{c}</Code><Message>{msg}</Message></Error>"
            f"</Errors><RequestID>{rid}</RequestID></Response>"
        )
        headers = {"Content-Type": "text/xml;charset=UTF-8", "x-amzn-RequestId": rid}
    elif protocol == "query":
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{c}</Code>"
            f"<Message>{msg}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
        headers = {"Content-Type": "text/xml", "x-amzn-RequestId": rid}
    elif protocol == "s3":
        body = (
            ""
            if req.method == "HEAD"
            else '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{c}</Code><Message>{msg}</Message><RequestId>{rid}</RequestId>"
            "</Error>"
        )
        headers = {"Content-Type": "application/xml", "x-amz-request-id": rid, "x-amz-id-2": rid}
    else:
        ctype = (
            req.headers.get("content-type", "application/x-amz-json-1.1")
            if protocol == "json"
            else "application/json"
        )
        body = json.dumps({"__type": code, "message": message})
        headers = {"Content-Type": ctype, "x-amzn-ErrorType": code, "x-amzn-RequestId": rid}
    return http.Response.make(status, body.encode(), headers)


THROTTLE = {
    "ec2": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "query": (400, "Throttling", "Rate exceeded"),
    "json": (400, "ThrottlingException", "Rate exceeded"),
    "rest-json": (400, "ThrottlingException", "Rate exceeded"),
    "s3": (503, "SlowDown", "Please reduce your request rate."),
}


def check_rule(raw):
    if not isinstance(raw, dict):
        raise RuleError("a rule must be a JSON object")
    known = {"action", "service", "path_contains", "skip", "times", "fault"}
    extra = set(raw) - known
    if extra:
        raise RuleError(f"unknown rule field(s): {', '.join(sorted(extra))}")
    action = raw.get("action", "*")
    if not isinstance(action, str) or not action:
        raise RuleError("rule.action must be an operation name or '*'")
    for k in ("service", "path_contains"):
        if raw.get(k) is not None and not isinstance(raw[k], str):
            raise RuleError(f"rule.{k} must be a string")
    skip = raw.get("skip", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise RuleError("rule.skip must be a whole number >= 0")
    times = raw.get("times")
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
        raise RuleError("rule.times must be a whole number >= 0 or null")
    fault = raw.get("fault")
    if not isinstance(fault, dict) or fault.get("kind") not in KINDS:
        raise RuleError(f"rule.fault.kind must be one of {', '.join(sorted(KINDS))}")
    kind = fault["kind"]
    if kind == "delay":
        s = fault.get("seconds")
        if not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0:
            raise RuleError("a delay needs seconds >= 0")
    if kind == "error":
        st = fault.get("status", 500)
        if not isinstance(st, int) or not 100 <= st <= 599:
            raise RuleError("an error needs a status between 100 and 599")
    if kind == "corrupt_body":
        for k in ("from", "to"):
            b = fault.get(k)
            if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 255:
                raise RuleError(f"corrupt_body needs '{k}' as a byte value 0..255")
    if kind == "set_header":
        if not isinstance(fault.get("name"), str) or not isinstance(fault.get("value"), str):
            raise RuleError("set_header needs a name and a value (strings)")
    if kind == "respond":
        st = fault.get("status", 200)
        if not isinstance(st, int) or isinstance(st, bool) or not 100 <= st <= 599:
            raise RuleError("respond needs a status between 100 and 599")
        headers = fault.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise RuleError("respond's headers must be an object of strings")
        if not isinstance(fault.get("body", ""), str):
            raise RuleError("respond's body must be a string")
    return {
        "action": action,
        "service": raw.get("service"),
        "path_contains": raw.get("path_contains"),
        "skip": skip,
        "times": times,
        "fault": fault,
        "skipped": 0,
        "faulted": 0,
    }


def new_etag(old):
    """32 hex digits that are not the object's MD5: the MD5 of the original ETag's value.

    The quoting is kept (a header's '"..."', an XML body's '"..."' or '&quot;...&quot;'), and
    the value is the same wherever the same ETag appears (HeadObject, ListObjectsV2...).
    """
    text = old.strip()
    for q in ('"', "&quot;", "&#34;"):
        if text.startswith(q) and text.endswith(q) and len(text) >= 2 * len(q):
            inner = text[len(q) : len(text) - len(q)]
            return q + hashlib.md5(inner.encode("utf-8", "replace")).hexdigest() + q
    return hashlib.md5(text.encode("utf-8", "replace")).hexdigest()


class Faults:
    def __init__(self):
        self.rules = []
        self.calls = []
        self.watchdog = None
        keep = os.environ.get("RTB_FAULTS_KEEP_CALLS", "")
        self.keep_calls = int(keep) if keep.isdigit() and int(keep) > 0 else None

    # ── lifecycle ──────────────────────────────────────────────────────────────────────────
    def running(self):
        # When the process that started us dies without stopping us (a test binary killed by
        # a timeout), exit too: no proxy may outlive its test.
        parent = os.environ.get("RTB_FAULTS_PARENT_PID", "")
        if parent.isdigit() and self.watchdog is None:
            self.watchdog = asyncio.get_running_loop().create_task(self.watch_parent(int(parent)))

    async def watch_parent(self, pid):
        # Once the parent is gone we are re-parented: our parent pid changes.
        while os.getppid() == pid:
            await asyncio.sleep(0.5)
        ctx.master.shutdown()

    # ── control API ────────────────────────────────────────────────────────────────────────
    def control(self, flow):
        req = flow.request
        path = urlsplit(req.path).path
        status, body = 404, {"error": f"no control endpoint {req.method} {path}"}
        if path == "/_faults/ping":
            status, body = 200, {"ok": True}
        elif path == "/_faults/rules" and req.method == "POST":
            try:
                raw = json.loads(req.get_text(strict=False) or "null")
                raw = raw if isinstance(raw, list) else [raw]
                rules = [check_rule(r) for r in raw]
            except (ValueError, RuleError) as e:
                status, body = 400, {"error": str(e)}
            else:
                self.rules.extend(rules)
                status, body = 200, {"added": len(rules), "rules": len(self.rules)}
        elif path == "/_faults/rules" and req.method == "DELETE":
            self.rules.clear()
            status, body = 200, {"rules": 0}
        elif path == "/_faults/rules" and req.method == "GET":
            status, body = 200, self.rules
        elif path == "/_faults/calls" and req.method == "GET":
            status, body = 200, [c for _, c in self.calls]
        elif path == "/_faults/calls" and req.method == "DELETE":
            self.calls.clear()
            status, body = 200, {"calls": 0}
        flow.response = http.Response.make(
            status, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    # ── rules ──────────────────────────────────────────────────────────────────────────────
    def match(self, service, action, path):
        for r in self.rules:
            if r["action"] != "*" and r["action"] != action:
                continue
            if r["service"] is not None and r["service"] != service:
                continue
            if r["path_contains"] is not None and r["path_contains"] not in path:
                continue
            if r["skipped"] < r["skip"]:
                r["skipped"] += 1
                return None
            if r["times"] is not None and r["faulted"] >= r["times"]:
                continue
            r["faulted"] += 1
            return r["fault"]
        return None

    async def decide(self, flow, service, action, protocol, before_body):
        req = flow.request
        # Answered already by another addon (an IAM denial): logged, never faulted, and its
        # request is read whole (an answer cannot go with a streamed request).
        answered = flow.response is not None
        # An instance's metadata call is matched by the path it sent (/_imds/<id>/latest/...,
        # before iam.py took its instance id off), so a rule can be for one instance.
        sent = flow.metadata.get("iam.sent_path", req.path)
        fault = None if answered else self.match(service, action, sent)
        call = {
            "service": service,
            "action": action,
            "method": req.method,
            "path": req.path,
            "status": None,
            "fault": fault["kind"] if fault else None,
        }
        denied = flow.metadata.get("iam.denial")
        if denied is not None:
            call["denied"] = denied
        flow.metadata["faults.call"] = call
        self.calls.append((flow.id, call))
        if self.keep_calls is not None and len(self.calls) > self.keep_calls:
            del self.calls[: len(self.calls) - self.keep_calls]
        kind = fault["kind"] if fault else None
        if before_body and not answered:
            # An answer made here cannot go with a streamed request: read the body instead.
            req.stream = kind not in NOT_FORWARDED and is_large(req)
        if fault is None:
            return
        if kind == "delay":
            await asyncio.sleep(float(fault["seconds"]))
        elif kind == "stall":
            await asyncio.sleep(STALL_SECONDS)
            if flow.killable:
                flow.kill()
        elif kind == "drop_request":
            if flow.killable:
                flow.kill()
        elif kind == "error":
            status = int(fault.get("status", 500))
            code = fault.get("code") or default_code(protocol, status)
            flow.response = error_response(
                req, protocol, status, code, fault.get("message") or DEFAULT_MESSAGE
            )
        elif kind == "throttle":
            status, code, message = THROTTLE[protocol]
            flow.response = error_response(req, protocol, status, code, message)
        elif kind == "respond":
            # Any answer at all, as given: e.g. an IMDS stand-in's spot notice.
            flow.response = http.Response.make(
                int(fault.get("status", 200)),
                fault.get("body", "").encode(),
                dict(fault.get("headers", {})),
            )
        else:
            flow.metadata["faults.response"] = fault

    # ── hooks ──────────────────────────────────────────────────────────────────────────────
    async def requestheaders(self, flow):
        req = flow.request
        if flow.metadata.get("iam.control"):
            return  # iam.py's control API
        if req.path.startswith((CONTROL_PREFIX, *OTHER_CONTROL_PREFIXES)):
            flow.metadata["faults.control"] = True
            req.stream = False
            return
        _, service = credential_scope(req)
        if needs_body_for_action(req, service):
            req.stream = False  # small form body: Action is in it
            flow.metadata["faults.deferred"] = True
            return
        service, action, protocol = classify(req, with_body=False)
        await self.decide(flow, service, action, protocol, before_body=True)

    async def request(self, flow):
        if flow.metadata.get("iam.control"):
            return
        if flow.metadata.get("faults.control"):
            if flow.request.path.startswith(CONTROL_PREFIX):
                self.control(flow)
            return
        if flow.metadata.pop("faults.deferred", False):
            service, action, protocol = classify(flow.request, with_body=True)
            await self.decide(flow, service, action, protocol, before_body=False)

    def responseheaders(self, flow):
        call = flow.metadata.get("faults.call")
        if call is None or call["fault"] in NOT_FORWARDED or call.get("denied"):
            return  # a control call, or an answer made here (a fault, an IAM denial)
        resp = flow.response
        resp.stream = is_large(flow.request, resp)
        fault = flow.metadata.get("faults.response")
        if fault is None:
            return
        kind = fault["kind"]
        if kind == "drop_response":
            if flow.killable:
                flow.kill()
        elif kind == "corrupt_body":
            table = bytes.maketrans(bytes([fault["from"]]), bytes([fault["to"]]))
            resp.stream = lambda data: data.translate(table)
        elif kind == "rewrite_etag":
            if "etag" in resp.headers:
                resp.headers["ETag"] = new_etag(resp.headers["etag"])
            ctype = resp.headers.get("content-type", "")
            if "xml" in ctype and call["action"] != "GetObject":
                resp.stream = False  # small XML listing: rewrite it in the response hook
                flow.metadata["faults.rewrite_body"] = True
        elif kind == "set_header":
            resp.headers[fault["name"]] = fault["value"]

    def response(self, flow):
        if flow.metadata.get("faults.control"):
            return
        if flow.metadata.pop("faults.rewrite_body", False) and flow.response.raw_content:
            flow.response.content = ETAG_ELEMENT.sub(
                lambda m: b"<ETag>" + new_etag(m.group(1).decode("utf-8", "replace")).encode()
                + b"</ETag>",
                flow.response.content,
            )
        call = flow.metadata.get("faults.call")
        if call is not None:
            call["status"] = flow.response.status_code


def world_addons():
    """The world's other addons, after Faults in mitmproxy's chain: each sees a call once the
    fault rules have (a rule's answer comes first), by the name Faults gave it
    (flow.metadata["faults.call"]). limits.py: AWS's rate limits and a call meter; prices.py:
    the Price List API and spot price history. (mitmproxy puts this directory on sys.path
    while it loads this file.)"""
    import limits
    import prices

    return [limits.Limits(error_response), prices.Prices(error_response)]


addons = [Faults(), *world_addons()]
