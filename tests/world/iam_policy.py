"""Identity-based IAM policy evaluation for the test world: exactly what ami/iam/*.json use.

Pure Python (no mitmproxy), so tests/world/test_iam.py table-tests it with plain unittest.

Why not a library: PMapper (principalmapper 1.1.5 on PyPI, the one that simulates conditions
locally) was tried. It leaves the request context to the caller (as this module does), but
matches Resource ARNs case-insensitively (AWS matches them case-sensitively), escapes only
`.`, `$` and `^` before turning a pattern into a regex (an S3 key with `+` or `(` breaks it),
answers `false` for StringNotLike on a missing key (AWS: true), says only *whether* a statement
matches (not which condition failed), is AGPL and unmaintained since 2022, and would put
botocore into the shared mitmproxy venv. What we need is small: this module.

What it implements (AWS's "policy evaluation logic" for one principal, identity policies
only; no resource policies, boundaries, SCPs or sessions policies):
- a request is (action, resource ARN, context keys); the decision is
  explicit Deny (a matching Deny statement) > Allow (a matching Allow) > implicit deny;
- a statement matches when its Action/NotAction, Resource/NotResource and every Condition
  match;
- Action: `service:Name` patterns with `*` and `?`, case-insensitive;
- Resource: ARN patterns with `*` and `?`, case-sensitive, compared segment by segment
  (`arn:partition:service:region:account:resource`; a wildcard does not cross the first five
  colons; the resource segment keeps its own colons); `*` alone matches everything;
- Condition: every operator block must hold, every key in a block must hold, any of a key's
  values may match. Keys are case-insensitive, values case-sensitive. Operators:
  StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
  StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool, Null; the
  `IfExists` suffix; the `ForAllValues:` / `ForAnyValue:` prefixes. A missing key makes a
  positive operator false and a negated one true (IfExists: true either way); ForAllValues
  over a missing or empty key is true, ForAnyValue false. A multi-valued context key under a
  plain operator matches when any of its values does (negated: when none does).
- Anything else (Numeric*, Date*, IpAddress, BinaryEquals, policy variables `${...}`) is
  refused when the policy is loaded: a policy that starts using one must extend this module
  (and its tests) instead of being evaluated wrongly.

Placeholders (ami/iam/README.md): ACCOUNT_ID, INSTANCE_ROLE_NAME, QUEUE_NAME, GITHUB_REPOSITORY
take one value; INPUT_BUCKET and OUTPUT_BUCKET take a list, and a resource naming one becomes one
resource per bucket (what "a statement per bucket" amounts to); a statement left with no
resource grants nothing and is dropped. A placeholder left unfilled is an error.
"""

import copy
import re

SINGLE_PLACEHOLDERS = ("ACCOUNT_ID", "INSTANCE_ROLE_NAME", "QUEUE_NAME", "GITHUB_REPOSITORY")
LIST_PLACEHOLDERS = ("INPUT_BUCKET", "OUTPUT_BUCKET")
ALL_PLACEHOLDERS = SINGLE_PLACEHOLDERS + LIST_PLACEHOLDERS
PLACEHOLDER_RE = re.compile(r"\b(" + "|".join(ALL_PLACEHOLDERS) + r")\b")

STRING_OPS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
}
ARN_OPS = {"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
OTHER_OPS = {"Bool", "Null"}
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class PolicyError(ValueError):
    """A policy this evaluator cannot evaluate faithfully (or a placeholder left unfilled)."""


# ── loading ──────────────────────────────────────────────────────────────────────────────────
def as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def fill(doc, values):
    """The policy with its placeholders replaced: `values` maps single placeholders to a string
    and INPUT_BUCKET / OUTPUT_BUCKET to a list of bucket names."""
    doc = copy.deepcopy(doc)

    def one(text, where):
        def sub(m):
            name = m.group(1)
            v = values.get(name)
            if name in LIST_PLACEHOLDERS or v is None or isinstance(v, list):
                raise PolicyError(f"{where}: placeholder {name} has no value")
            return str(v)

        return PLACEHOLDER_RE.sub(sub, text)

    def expand(text, where):
        """One resource per bucket when it names INPUT_BUCKET or OUTPUT_BUCKET."""
        for name in LIST_PLACEHOLDERS:
            if re.search(r"\b" + name + r"\b", text):
                out = []
                for b in as_list(values.get(name)):
                    out.extend(expand(re.sub(r"\b" + name + r"\b", b, text), where))
                return out
        return [one(text, where)]

    kept = []
    for i, s in enumerate(as_list(doc.get("Statement"))):
        where = f"statement {s.get('Sid') or i}"
        for key in ("Resource", "NotResource"):
            if key in s:
                s[key] = [r for text in as_list(s[key]) for r in expand(text, where)]
        if "Resource" in s and not s["Resource"]:
            continue  # granted nothing once its buckets were filled in: IAM would refuse it
        for op, block in (s.get("Condition") or {}).items():
            for k, v in block.items():
                block[k] = [one(x, where) if isinstance(x, str) else x for x in as_list(v)]
        for key in ("Action", "NotAction"):
            if key in s:
                s[key] = [one(a, where) for a in as_list(s[key])]
        kept.append(s)
    doc["Statement"] = kept
    check(doc)
    return doc


def check(doc):
    """Raise PolicyError for anything this evaluator does not implement."""
    for i, s in enumerate(as_list(doc.get("Statement"))):
        where = f"statement {s.get('Sid') or i}"
        if s.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"{where}: Effect must be Allow or Deny")
        if ("Action" in s) == ("NotAction" in s):
            raise PolicyError(f"{where}: needs exactly one of Action, NotAction")
        if ("Resource" in s) and ("NotResource" in s):
            raise PolicyError(f"{where}: has both Resource and NotResource")
        if "Principal" in s or "NotPrincipal" in s:
            raise PolicyError(f"{where}: a Principal belongs in a resource or trust policy")
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            for v in as_list(s.get(key)):
                if not isinstance(v, str):
                    raise PolicyError(f"{where}: {key} values must be strings")
                if "${" in v:
                    raise PolicyError(f"{where}: policy variables are not implemented ({v})")
        for op, block in (s.get("Condition") or {}).items():
            base = operator_parts(op)[1]
            if base not in STRING_OPS | ARN_OPS | OTHER_OPS:
                raise PolicyError(f"{where}: condition operator {op} is not implemented")
            if not isinstance(block, dict):
                raise PolicyError(f"{where}: condition {op} must map keys to values")
            for k, v in block.items():
                for x in as_list(v):
                    if isinstance(x, str) and "${" in x:
                        raise PolicyError(f"{where}: policy variables are not implemented ({x})")


def operator_parts(op):
    """'ForAnyValue:StringLikeIfExists' -> ('ForAnyValue', 'StringLike', True)."""
    qualifier, _, rest = op.rpartition(":")
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    base = rest[: -len("IfExists")] if if_exists else rest
    return qualifier, base, if_exists


# ── matching ─────────────────────────────────────────────────────────────────────────────────
_glob_cache = {}


def glob(pattern, text, ignore_case=False):
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else special."""
    key = (pattern, ignore_case)
    rx = _glob_cache.get(key)
    if rx is None:
        rx = re.compile(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
            re.S | (re.I if ignore_case else 0),
        )
        _glob_cache[key] = rx
    return rx.fullmatch(text) is not None


def action_matches(pattern, action):
    return glob(pattern, action, ignore_case=True)


def arn_matches(pattern, arn, wildcards=True):
    """Segment-wise ARN comparison (Resource elements, ArnLike, ArnEquals)."""
    if pattern == "*":
        return wildcards or arn == "*"
    p, a = pattern.split(":", 5), arn.split(":", 5)
    if len(p) != 6 or len(a) != 6:
        return glob(pattern, arn) if wildcards else pattern == arn
    if wildcards:
        return all(glob(x, y) for x, y in zip(p, a))
    return p == a


def lookup(context, key):
    """A context value by case-insensitive key name: a list of strings, or None when absent."""
    lk = key.lower()
    for k, v in context.items():
        if k.lower() == lk:
            return [str(x).lower() if isinstance(x, bool) else str(x) for x in as_list(v)]
    return None


def value_matches(base, wanted, got):
    if base in ("StringEquals", "StringNotEquals"):
        return wanted == got
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return wanted.lower() == got.lower()
    if base in ("StringLike", "StringNotLike"):
        return glob(wanted, got)
    if base in ("ArnEquals", "ArnNotEquals"):
        return arn_matches(wanted, got, wildcards=False)
    if base in ("ArnLike", "ArnNotLike"):
        return arn_matches(wanted, got)
    if base == "Bool":
        return wanted.lower() == got.lower()
    raise PolicyError(f"operator {base} is not implemented")


def key_holds(op, key, wanted, context):
    qualifier, base, if_exists = operator_parts(op)
    wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in as_list(wanted)]
    got = lookup(context, key)
    if base == "Null":
        # {"key": "true"}: the key is absent; "false": present.
        return any((got is None) == (w.lower() == "true") for w in wanted)
    if got is None:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or base in NEGATED
    negated = base in NEGATED
    hit = lambda g: any(value_matches(base, w, g) for w in wanted)  # noqa: E731
    if qualifier == "ForAllValues":
        # Every value in the request is one the policy names (negated: none is).
        return all((not hit(g)) if negated else hit(g) for g in got)
    if qualifier == "ForAnyValue":
        return any((not hit(g)) if negated else hit(g) for g in got)
    if negated:
        return not any(hit(g) for g in got)
    return any(hit(g) for g in got)


def failed_condition(statement, context):
    """The first condition of the statement that does not hold, as text; None when all hold."""
    for op, block in (statement.get("Condition") or {}).items():
        for key, wanted in block.items():
            if not key_holds(op, key, wanted, context):
                got = lookup(context, key)
                now = "absent" if got is None else (got[0] if len(got) == 1 else got)
                return f"{op} {key} = {as_list(wanted)} (request: {now})"
    return None


def statement_scope(statement, action, resource):
    """Whether the statement's Action and Resource parts cover the request."""
    if "Action" in statement:
        if not any(action_matches(p, action) for p in as_list(statement["Action"])):
            return False
    elif any(action_matches(p, action) for p in as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        return any(arn_matches(p, resource) for p in as_list(statement["Resource"]))
    if "NotResource" in statement:
        return not any(arn_matches(p, resource) for p in as_list(statement["NotResource"]))
    return True


class Decision:
    """The outcome for one (action, resource, context): 'allow', 'explicit_deny' or
    'implicit_deny', the statement that decided, and for an implicit deny the statements
    whose action and resource matched but whose condition did not (with the reason)."""

    def __init__(self, effect, sid=None, near=()):
        self.effect = effect
        self.sid = sid
        self.near = list(near)

    @property
    def allowed(self):
        return self.effect == "allow"

    def reason(self, action, resource):
        if self.effect == "allow":
            return f"allowed by {self.sid}"
        if self.effect == "explicit_deny":
            return f"explicitly denied by statement {self.sid}"
        if self.near:
            why = "; ".join(f"{sid}: condition {c} not met" for sid, c in self.near)
            return f"no statement allows {action} on {resource} ({why})"
        return f"no statement allows {action} on {resource}"

    def __repr__(self):
        return f"Decision({self.effect!r}, {self.sid!r}, {self.near!r})"


def evaluate(policies, action, resource, context):
    """Decide one request against a principal's identity policies (a list of documents)."""
    allow, near = None, []
    for doc in policies:
        for i, s in enumerate(as_list(doc.get("Statement"))):
            sid = s.get("Sid") or f"#{i}"
            if not statement_scope(s, action, resource):
                continue
            failed = failed_condition(s, context)
            if failed is not None:
                if s["Effect"] == "Allow":
                    near.append((sid, failed))
                continue
            if s["Effect"] == "Deny":
                return Decision("explicit_deny", sid)
            if allow is None:
                allow = sid
    if allow is not None:
        return Decision("allow", allow)
    return Decision("implicit_deny", near=near)
