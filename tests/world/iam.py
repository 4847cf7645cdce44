"""IAM enforcement between the SDK and the emulators: a mitmproxy addon, loaded before
faults.py in the same mitmdump (`-s iam.py -s faults.py`).

    mitmdump -q --mode reverse:http://127.0.0.1:MINISTACK_PORT --listen-host 127.0.0.1 \
        --listen-port P -s tests/world/iam.py -s tests/world/faults.py

setup.sh starts one such proxy per world in front of MiniStack (RTB_WORLD_PORT+2) and one in
front of moto (RTB_WORLD_PORT+3); instances reach AWS through it. Tests register *scopes*
(crates/rtb-testkit's IamScope) through the control API on the same port:

    PUT    /_iam/scopes/ID            {"account", "values": {placeholder: value(s)},
                                       "principals": {NAME: {"keys": [...], "policies": [...]}}}
    GET    /_iam/scopes/ID            the scope, its bound instances and keys, calls evaluated
    DELETE /_iam/scopes/ID            forget it (its keys are then forwarded unevaluated)
    GET    /_iam/scopes/ID/denials    every call of the scope's principals that was refused
    DELETE /_iam/scopes/ID/denials    forget them
    GET    /_iam/ping

A principal's policies are file names: in ami/iam/ of this checkout (read at registration, the
placeholders filled from "values"), or `managed/NAME.json` in tests/world/iam-managed/ (AWS
managed policies, written down as data). Principal "instance" has no keys of its own: an
instance launched by one of the scope's keys (RunInstances' answer names it) is bound to the
scope, and the credentials the instance metadata service hands it become instance keys. The
instances reach IMDS as http://PROXY/_imds/INSTANCE_ID/ (the test AMI's docker wrapper gives
each peer container that endpoint), so the proxy knows which instance asks.

For every call signed with a registered key (SigV4 `Authorization` or `X-Amz-Credential`), the
proxy builds the request context (iam_context.py, with the target's current tags read back
from the emulator) and evaluates it (iam_policy.py). A denied call is answered here in the
service's own error shape and never forwarded: EC2 403 UnauthorizedOperation (with an encoded
message), S3 403 AccessDenied, IAM/STS 403 AccessDenied, SSM 400 and Batch 403
AccessDeniedException. It is recorded in the scope's denials and marked `denied` in
faults.py's call log. Calls with unregistered keys (the world's own `test` key) are forwarded
unevaluated.
"""

import asyncio
import base64
import json
import os
import re
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, unquote, urlsplit

from mitmproxy import ctx, http

import faults as wire  # the sibling addon's request naming and error shapes
import iam_context
import iam_policy

HERE = os.path.dirname(os.path.abspath(__file__))
CONTROL_PREFIX = "/_iam/"
IMDS_PREFIX = "/_imds/"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
MANAGED_DIR = os.path.join(HERE, "iam-managed")
# Denials kept per scope (a runaway loop of refused calls must not eat the proxy's memory).
MAX_DENIALS = 1000
LOOKUP_TIMEOUT = 10
CREDENTIALS_PATH = re.compile(r"^/latest/meta-data/iam/security-credentials/[^/]+$")
INSTANCE_ID = re.compile(rb"<instanceId>(i-[0-9a-zA-Z]+)</instanceId>")


def policy_dir():
    return os.environ.get("RTB_IAM_POLICY_DIR") or os.path.join(HERE, "..", "..", "ami", "iam")


def access_key(req):
    auth = req.headers.get("authorization", "")
    m = re.search(r"Credential=([^/,\s]+)/", auth)
    if m:
        return m.group(1)
    cred = unquote(req.query.get("X-Amz-Credential", ""))
    return cred.split("/", 1)[0] if cred else ""


def plain(tag):
    return tag.rsplit("}", 1)[-1]


class Scope:
    def __init__(self, sid, config, principals):
        self.id = sid
        self.account = config.get("account") or "000000000000"
        self.values = config.get("values") or {}
        # name -> {"keys": [...], "policies": [docs], "files": [...]}
        self.principals = principals
        self.instances = set()
        self.instance_keys = {}
        self.denials = []
        self.evaluated = {}

    def arn(self, principal, detail=""):
        if principal == "client":
            return f"arn:aws:iam::{self.account}:user/run-render-client"
        role = self.values.get("INSTANCE_ROLE_NAME") or "run-render-instance"
        if principal == "batch-job":
            role = f"{self.values.get('QUEUE_NAME') or 'run-render'}-instance"
        return f"arn:aws:sts::{self.account}:assumed-role/{role}/{detail or principal}"

    def summary(self):
        return {
            "scope": self.id,
            "account": self.account,
            "values": self.values,
            "principals": {
                n: {"keys": p["keys"], "policies": p["files"],
                    "statements": sum(len(d["Statement"]) for d in p["policies"])}
                for n, p in self.principals.items()
            },
            "instances": sorted(self.instances),
            "instance_keys": self.instance_keys,
            "evaluated": self.evaluated,
            "denials": len(self.denials),
        }


def load_policy(name, values):
    if ".." in name.split("/"):
        raise iam_policy.PolicyError(f"no policy file {name} (a name, not a path)")
    if name.startswith("managed/"):
        path = os.path.join(MANAGED_DIR, name[len("managed/"):])
    else:
        path = os.path.join(policy_dir(), name)
    path = os.path.normpath(path)
    if not os.path.isfile(path):
        raise iam_policy.PolicyError(f"no policy file {name} ({path})")
    with open(path) as f:
        doc = json.load(f)
    return iam_policy.fill(doc, values)


class Iam:
    def __init__(self):
        self.scopes = {}
        self.keys = {}  # access key id -> (scope id, principal name)
        self.instances = {}  # instance id -> scope id

    # ── control API ────────────────────────────────────────────────────────────────────────
    def control(self, flow):
        req = flow.request
        path = urlsplit(req.path).path
        parts = [p for p in path[len(CONTROL_PREFIX):].split("/") if p]
        status, body = 404, {"error": f"no control endpoint {req.method} {path}"}
        if parts == ["ping"]:
            status, body = 200, {"ok": True}
        elif len(parts) == 2 and parts[0] == "scopes":
            sid = parts[1]
            if req.method == "PUT":
                status, body = self.register(sid, req.get_text(strict=False))
            elif req.method == "GET" and sid in self.scopes:
                status, body = 200, self.scopes[sid].summary()
            elif req.method == "DELETE":
                self.forget(sid)
                status, body = 200, {"scope": sid, "removed": True}
        elif len(parts) == 3 and parts[0] == "scopes" and parts[2] == "denials":
            scope = self.scopes.get(parts[1])
            if scope is None:
                status, body = 404, {"error": f"no scope {parts[1]}"}
            elif req.method == "GET":
                status, body = 200, scope.denials
            elif req.method == "DELETE":
                scope.denials.clear()
                status, body = 200, {"denials": 0}
        flow.response = http.Response.make(
            status, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    def register(self, sid, text):
        try:
            config = json.loads(text or "{}")
            if not isinstance(config, dict):
                raise ValueError("the scope must be a JSON object")
            values = config.get("values") or {}
            if "ACCOUNT_ID" not in values:
                values["ACCOUNT_ID"] = config.get("account") or "000000000000"
            config["values"] = values
            principals = {}
            for name, p in (config.get("principals") or {}).items():
                keys = [k for k in p.get("keys") or [] if isinstance(k, str) and k]
                for k in keys:
                    owner = self.keys.get(k)
                    if owner and owner[0] != sid:
                        return 409, {"error": f"key {k} belongs to scope {owner[0]}"}
                files = list(p.get("policies") or [])
                docs = [load_policy(f, values) for f in files]
                principals[name] = {"keys": keys, "policies": docs, "files": files}
        except (ValueError, iam_policy.PolicyError, OSError) as e:
            return 400, {"error": str(e)}
        old = self.scopes.get(sid)
        scope = Scope(sid, config, principals)
        if old is not None:
            # Re-registration (more buckets, say) keeps what the scope learnt and recorded.
            for k, (s, n) in list(self.keys.items()):
                if s == sid and n != "instance":
                    del self.keys[k]
            scope.instances, scope.instance_keys = old.instances, old.instance_keys
            scope.denials, scope.evaluated = old.denials, old.evaluated
        for name, p in principals.items():
            for k in p["keys"]:
                self.keys[k] = (sid, name)
        self.scopes[sid] = scope
        return 200, scope.summary()

    def forget(self, sid):
        self.scopes.pop(sid, None)
        for k, (s, _) in list(self.keys.items()):
            if s == sid:
                del self.keys[k]
        for i, s in list(self.instances.items()):
            if s == sid:
                del self.instances[i]

    # ── hooks ──────────────────────────────────────────────────────────────────────────────
    async def requestheaders(self, flow):
        req = flow.request
        if req.path.startswith(CONTROL_PREFIX):
            flow.metadata["iam.control"] = True
            req.stream = False
            return
        if req.path.startswith(IMDS_PREFIX):
            # /_imds/INSTANCE/latest/... -> /latest/... for the emulator, remembering who asks.
            rest = req.path[len(IMDS_PREFIX):]
            instance, _, tail = rest.partition("/")
            flow.metadata["iam.imds_instance"] = instance
            # faults.py matches rules against the path as sent, the instance id in it.
            flow.metadata["iam.sent_path"] = req.path
            req.path = "/" + tail
            if urlsplit(req.path).path == INSTANCE_ID_PATH and re.fullmatch(r"i-[0-9a-zA-Z]+", instance):
                # The emulator serves one metadata service for all instances and names one
                # instance to all of them; each instance's own id is what AWS answers.
                flow.response = http.Response.make(200, instance, {"Content-Type": "text/plain"})
            return
        reg = self.keys.get(access_key(req))
        if reg is None:
            return
        flow.metadata["iam.principal"] = reg
        _, service = wire.credential_scope(req)
        if service == "s3" and wire.s3_action(req) != "DeleteObjects":
            await self.decide(flow, reg, with_body=False)  # the path says it all
        else:
            req.stream = False  # small bodies (forms, JSON): read them, decide in `request`
            flow.metadata["iam.deferred"] = True

    async def request(self, flow):
        if flow.metadata.get("iam.control"):
            self.control(flow)
            return
        if flow.metadata.pop("iam.deferred", False):
            await self.decide(flow, flow.metadata["iam.principal"], with_body=True)

    def response(self, flow):
        if flow.metadata.get("iam.control") or flow.response is None:
            return
        instance = flow.metadata.get("iam.imds_instance")
        if instance is not None:
            self.learn_instance_key(flow, instance)
            return
        reg = flow.metadata.get("iam.principal")
        op = flow.metadata.get("iam.op")
        if reg and op == "RunInstances" and flow.response.status_code == 200:
            scope = self.scopes.get(reg[0])
            if scope is not None:
                for iid in INSTANCE_ID.findall(flow.response.content or b""):
                    iid = iid.decode()
                    scope.instances.add(iid)
                    self.instances[iid] = scope.id

    def learn_instance_key(self, flow, instance):
        path = urlsplit(flow.request.path).path
        if flow.response.status_code != 200 or not CREDENTIALS_PATH.match(path):
            return
        sid = self.instances.get(instance)
        scope = self.scopes.get(sid) if sid else None
        if scope is None or "instance" not in scope.principals:
            return
        try:
            key = json.loads(flow.response.get_text(strict=False) or "{}").get("AccessKeyId")
        except ValueError:
            return
        if key:
            self.keys[key] = (scope.id, "instance")
            scope.instance_keys[key] = instance

    # ── the decision ───────────────────────────────────────────────────────────────────────
    async def decide(self, flow, reg, with_body):
        if flow.response is not None or not flow.live:
            return  # answered already (a fault), or gone
        sid, principal = reg
        scope = self.scopes.get(sid)
        if scope is None or principal not in scope.principals:
            return
        req = flow.request
        service, op, protocol = wire.classify(req, with_body)
        flow.metadata["iam.op"] = op
        call = self.parse(req, service, op, scope, with_body)
        facts = await self.facts(call, access_key(req))
        policies = scope.principals[principal]["policies"]
        results = []
        for c in iam_context.checks(call, facts):
            if self.unknown_target(c, facts):
                continue  # the emulator's NotFound answers it, as AWS would
            results.append((c, iam_policy.evaluate(policies, c.action, c.resource, c.context)))
        counts = scope.evaluated.setdefault(principal, {})
        counts[op] = counts.get(op, 0) + 1
        refused = [(c, d) for c, d in results if not d.allowed]
        if not refused:
            return
        if service == "s3" and call.bucket and not await self.bucket_exists(call, access_key(req)):
            return  # S3 answers NoSuchBucket to anyone: let the emulator say it
        self.refuse(flow, scope, principal, call, protocol, refused)

    def unknown_target(self, check, facts):
        """A check on an instance or Batch job the emulator does not know."""
        m = re.search(r":instance/(i-[0-9a-zA-Z]+)$", check.resource)
        if m and m.group(1) in (facts.get("instance_tags") or {}):
            return facts["instance_tags"][m.group(1)] is None
        m = re.search(r":job/([^/]+)$", check.resource)
        if m and m.group(1) in (facts.get("batch_job_tags") or {}):
            return facts["batch_job_tags"][m.group(1)] is None
        return False

    def refuse(self, flow, scope, principal, call, protocol, refused):
        req = flow.request
        key = access_key(req)
        detail = scope.instance_keys.get(key, "")
        arn = scope.arn(principal, detail)
        first_check, first = refused[0]
        how = (
            "with an explicit deny in an identity-based policy"
            if first.effect == "explicit_deny"
            else f"because no identity-based policy allows the {first_check.action} action"
        )
        message = (
            f"User: {arn} is not authorized to perform: {first_check.action} on resource: "
            f"{first_check.resource} {how}"
        )
        record = {
            "scope": scope.id,
            "principal": principal,
            "key": key,
            "arn": arn,
            "service": call.service,
            "call": call.op,
            "method": req.method,
            "path": req.path,
            "action": first_check.action,
            "resource": first_check.resource,
            "reason": first.reason(first_check.action, first_check.resource),
            "checks": [
                {"action": c.action, "resource": c.resource, "decision": d.effect,
                 "reason": d.reason(c.action, c.resource), "context": c.context}
                for c, d in refused
            ],
            "time": time.time(),
        }
        if len(scope.denials) < MAX_DENIALS:
            scope.denials.append(record)
        flow.metadata["iam.denial"] = record
        logged = flow.metadata.get("faults.call")
        if logged is not None:
            logged["denied"] = record
        ctx.log.info(f"iam: DENIED {principal} {call.service}:{call.op}: {record['reason']}")
        if protocol == "ec2":
            encoded = base64.b64encode(json.dumps(record, default=str).encode()).decode()
            flow.response = wire.error_response(
                req, "ec2", 403, "UnauthorizedOperation",
                "You are not authorized to perform this operation. " + message
                + f". Encoded authorization failure message: {encoded}",
            )
        elif protocol == "s3":
            flow.response = wire.error_response(req, "s3", 403, "AccessDenied", message)
        elif protocol == "query":
            flow.response = wire.error_response(req, "query", 403, "AccessDenied", message)
        elif protocol == "json":
            flow.response = wire.error_response(req, "json", 400, "AccessDeniedException", message)
        else:
            flow.response = wire.error_response(
                req, "rest-json", 403, "AccessDeniedException", message
            )

    # ── parsing ────────────────────────────────────────────────────────────────────────────
    def parse(self, req, service, op, scope, with_body):
        region, _ = wire.credential_scope(req)
        params = {}
        bucket = key = ""
        if service == "s3":
            bucket, key = wire.split_path(req.path)
            key = unquote(key)
            if op == "DeleteObjects" and with_body:
                text = req.get_text(strict=False) or ""
                params["keys"] = [unquote(k) for k in re.findall(r"<Key>(.*?)</Key>", text, re.S)]
        elif "x-amz-target" in req.headers or service == "batch" or urlsplit(
                req.path).path.startswith("/v1/"):
            params = iam_context.parse_json(req.get_text(strict=False) if with_body else "")
        else:
            form = {}
            if with_body and wire.is_form(req):
                form = parse_qs(req.get_text(strict=False) or "", keep_blank_values=True)
            for k, v in req.query.items(multi=True):
                form.setdefault(k, [v])
            params = {k: v[0] for k, v in form.items() if v}
        query = {k: v for k, v in req.query.items()}
        headers = {k.lower(): v for k, v in req.headers.items()}
        return iam_context.Call(
            service, op, region=region, account=scope.account, params=params, bucket=bucket,
            key=key, query=query, headers=headers, path=urlsplit(req.path).path,
        )

    # ── what the emulator knows ────────────────────────────────────────────────────────────
    def upstream(self):
        for m in ctx.options.mode:
            if m.startswith("reverse:"):
                return m[len("reverse:"):].rstrip("/")
        raise RuntimeError("iam.py runs only in reverse mode (in front of an emulator)")

    async def fetch(self, method, path, body, service, key, region, headers=None):
        """(status, bytes) of one call made directly to the emulator (not through this proxy)."""
        auth = (f"AWS4-HMAC-SHA256 Credential={key or 'test'}/20260101/{region}/{service}/"
                "aws4_request, SignedHeaders=host, Signature=0")
        hdrs = {"Authorization": auth, **(headers or {})}
        url = self.upstream() + path

        def go():
            r = urllib.request.Request(url, data=body, method=method, headers=hdrs)
            try:
                with urllib.request.urlopen(r, timeout=LOOKUP_TIMEOUT) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        return await asyncio.to_thread(go)

    async def facts(self, call, key):
        want = iam_context.wanted_facts(call)
        facts = {}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        if want.get("instances"):
            body = "Action=DescribeInstances&Version=2016-11-15" + "".join(
                f"&InstanceId.{n}={i}" for n, i in enumerate(want["instances"], 1)
            )
            status, raw = await self.fetch("POST", "/", body.encode(), "ec2", key, call.region, form)
            tags = {i: None for i in want["instances"]}
            if status == 200:
                tags.update(instance_tags(raw))
            facts["instance_tags"] = tags
        if want.get("profiles"):
            roles = {}
            for name in want["profiles"]:
                body = f"Action=GetInstanceProfile&Version=2010-05-08&InstanceProfileName={name}"
                status, raw = await self.fetch("POST", "/", body.encode(), "iam", key,
                                               call.region, form)
                roles[name] = profile_roles(raw) if status == 200 else []
            facts["profile_roles"] = roles
        if want.get("batch_jobs"):
            status, raw = await self.fetch(
                "POST", "/v1/describejobs", json.dumps({"jobs": want["batch_jobs"]}).encode(),
                "batch", key, call.region, {"Content-Type": "application/json"},
            )
            tags = {j: None for j in want["batch_jobs"]}
            if status == 200:
                for job in iam_context.parse_json(raw.decode("utf-8", "replace")).get("jobs", []):
                    tags[job.get("jobId")] = job.get("tags") or {}
            facts["batch_job_tags"] = tags
        return facts

    async def bucket_exists(self, call, key):
        status, _ = await self.fetch("HEAD", "/" + call.bucket, None, "s3", key, call.region)
        return status != 404


def instance_tags(raw):
    """{instance id: {key: value}} from a DescribeInstances answer."""
    out = {}
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return out
    for inst in root.iter():
        if plain(inst.tag) != "item":
            continue
        iid = next((c.text for c in inst if plain(c.tag) == "instanceId"), None)
        if not iid:
            continue
        tags = {}
        for c in inst:
            if plain(c.tag) == "tagSet":
                for item in c:
                    kv = {plain(x.tag): x.text or "" for x in item}
                    if "key" in kv:
                        tags[kv["key"]] = kv.get("value", "")
        out[iid] = tags
    return out


def profile_roles(raw):
    """Role ARNs in a GetInstanceProfile answer."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return []
    arns = []
    for el in root.iter():
        if plain(el.tag) == "Roles":
            for member in el:
                arn = next((c.text for c in member if plain(c.tag) == "Arn"), None)
                if arn:
                    arns.append(arn)
    return arns


addons = [Iam()]
