"""The two price APIs no emulator has, answered in the fault proxy from data a test sets.

Loaded by faults.py (after it and limits.py). Answers, in AWS's own shapes:
- pricing:GetProducts (JSON 1.1, X-Amz-Target AWSPriceListService.GetProducts): PriceList is a
  list of JSON *strings*, one product each, built like the AWS documentation's example answer
  (product/attributes/sku, serviceCode, terms.OnDemand.<sku>.<term>.priceDimensions...
  pricePerUnit.USD, version, publicationDate); Filters (TERM_MATCH, EQUALS, CONTAINS,
  ANY_OF, NONE_OF on ServiceCode or any attribute), FormatVersion aws_v1, MaxResults,
  NextToken. Only the Price List endpoints' regions answer (us-east-1, eu-central-1,
  ap-south-1): a call signed for another region is cut, as its endpoint does not resolve.
- ec2:DescribeSpotPriceHistory (EC2 query protocol, XML): per availability zone, instance
  type and product description, newest first; InstanceType.N, ProductDescription.N,
  AvailabilityZone, Filter.N (availability-zone, instance-type, product-description,
  spot-price; * and ? wildcards), StartTime/EndTime (with the last change before StartTime,
  the price in force at StartTime, as AWS documents), MaxResults, NextToken (the last page
  carries an empty <nextToken/>, as AWS's example does), DryRun. Only the zones of the
  region the call is signed for.

Control API (same port):
    POST   /_prices   {"on_demand": [...], "spot": [...], "answer": ...}  replaces the data
    GET    /_prices   the data and how each API answers
    DELETE /_prices   no data again

How each API answers ("answer": one word for both, or {"GetProducts": .., "DescribeSpotPriceHistory": ..}):
- "data": from the data set here (an empty answer when nothing matches);
- "denied": as AWS answers a principal without the permission (pricing
  AccessDeniedException, EC2 UnauthorizedOperation). This is the answer when no data is set
  for that API: the shipped client policy does not allow these calls yet, and a lab's policy
  may never;
- "no_answer": the connection is cut (no route to the endpoint): the client's "cost unknown"
  path;
- "emulator": forwarded (MiniStack answers GetProducts with a bare 400 and
  DescribeSpotPriceHistory with InvalidAction).
Nothing here is a price: every figure comes from the test. See tests/world/README.md ("Prices").
"""

import base64
import fnmatch
import hashlib
import json
import re
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, unquote, urlsplit

CONTROL_PATH = "/_prices"
APIS = ("GetProducts", "DescribeSpotPriceHistory")
MODES = ("data", "denied", "no_answer", "emulator")
# The Price List Query API's endpoints (api.pricing.REGION.amazonaws.com).
PRICING_REGIONS = {"us-east-1", "eu-central-1", "ap-south-1"}
# The Price List's "location" attribute for each region (names, not prices).
LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "af-south-1": "Africa (Cape Town)",
    "ap-east-1": "Asia Pacific (Hong Kong)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-south-2": "Asia Pacific (Hyderabad)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-southeast-3": "Asia Pacific (Jakarta)",
    "ap-southeast-4": "Asia Pacific (Melbourne)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-northeast-3": "Asia Pacific (Osaka)",
    "ca-central-1": "Canada (Central)",
    "ca-west-1": "Canada West (Calgary)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-central-2": "EU (Zurich)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-north-1": "EU (Stockholm)",
    "eu-south-1": "EU (Milan)",
    "eu-south-2": "EU (Spain)",
    "il-central-1": "Israel (Tel Aviv)",
    "me-south-1": "Middle East (Bahrain)",
    "me-central-1": "Middle East (UAE)",
    "sa-east-1": "South America (Sao Paulo)",
}
# The Price List's usagetype prefix per region (us-east-1 has none).
USAGE_PREFIX = {
    "us-east-1": "",
    "us-east-2": "USE2-",
    "us-west-1": "USW1-",
    "us-west-2": "USW2-",
    "eu-west-1": "EU-",
    "eu-central-1": "EUC1-",
    "ap-south-1": "APS3-",
    "ap-southeast-1": "APS1-",
    "ap-southeast-2": "APS2-",
    "ap-northeast-1": "APN1-",
    "ca-central-1": "CAN1-",
}
# The On-Demand offer term and rate codes every EC2 on-demand product carries.
ON_DEMAND_TERM = "JRTCKXETXF"
ON_DEMAND_RATE = "6YS6EN2CT7"
FILTER_TYPES = ("TERM_MATCH", "EQUALS", "CONTAINS", "ANY_OF", "NONE_OF")
SPOT_FILTERS = {
    "availability-zone": "availabilityZone",
    "instance-type": "instanceType",
    "product-description": "productDescription",
    "spot-price": "spotPrice",
}
SPOT_MAX_RESULTS = 1000
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class PricesError(ValueError):
    pass


class ApiError(Exception):
    """An error answer: status, code, message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ── The data a test sets ───────────────────────────────────────────────────────────────────
def usd(value, what):
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PricesError(f"{what}: usd_per_hour must be a number, not {value!r}") from None
    if not d.is_finite() or d < 0:
        raise PricesError(f"{what}: usd_per_hour must be a number >= 0")
    return d


def parse_time(value, what):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    raise PricesError(f"{what}: a time is ISO 8601 (2026-12-01T10:00:00Z) or epoch seconds")


def region_of_zone(zone):
    m = re.match(r"[a-z]+(-[a-z]+)+-\d+", zone)
    return m.group(0) if m else ""


def check_on_demand(raw, i):
    what = f"on_demand[{i}]"
    if not isinstance(raw, dict):
        raise PricesError(f"{what} must be an object")
    known = {
        "instance_type",
        "region",
        "location",
        "usd_per_hour",
        "operating_system",
        "tenancy",
        "pre_installed_sw",
        "capacity_status",
        "effective_date",
        "attributes",
    }
    extra = set(raw) - known
    if extra:
        raise PricesError(f"{what}: unknown field(s) {', '.join(sorted(extra))}")
    for k in ("instance_type", "region", "usd_per_hour"):
        if k not in raw:
            raise PricesError(f"{what}: {k} is required")
    region = raw["region"]
    location = raw.get("location") or LOCATIONS.get(region)
    if not location:
        raise PricesError(f"{what}: no location name known for region {region!r}: give location")
    attrs = raw.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
        raise PricesError(f"{what}: attributes are an object of strings")
    return {
        "instance_type": str(raw["instance_type"]),
        "region": region,
        "location": location,
        "usd": usd(raw["usd_per_hour"], what),
        "operating_system": raw.get("operating_system", "Linux"),
        "tenancy": raw.get("tenancy", "Shared"),
        "pre_installed_sw": raw.get("pre_installed_sw", "NA"),
        "capacity_status": raw.get("capacity_status", "Used"),
        "effective_date": parse_time(raw["effective_date"], what)
        if "effective_date" in raw
        else None,
        "attributes": attrs,
    }


def check_spot(raw, i):
    what = f"spot[{i}]"
    if not isinstance(raw, dict):
        raise PricesError(f"{what} must be an object")
    known = {"instance_type", "availability_zone", "usd_per_hour", "timestamp", "product_description"}
    extra = set(raw) - known
    if extra:
        raise PricesError(f"{what}: unknown field(s) {', '.join(sorted(extra))}")
    for k in ("instance_type", "availability_zone", "usd_per_hour", "timestamp"):
        if k not in raw:
            raise PricesError(f"{what}: {k} is required")
    zone = str(raw["availability_zone"])
    if not region_of_zone(zone):
        raise PricesError(f"{what}: {zone!r} is not an availability zone name (us-east-1a)")
    return {
        "instanceType": str(raw["instance_type"]),
        "availabilityZone": zone,
        "region": region_of_zone(zone),
        "productDescription": raw.get("product_description", "Linux/UNIX"),
        "usd": usd(raw["usd_per_hour"], what),
        "timestamp": parse_time(raw["timestamp"], what),
    }


def check_data(raw):
    if not isinstance(raw, dict):
        raise PricesError("the price data must be a JSON object")
    extra = set(raw) - {"on_demand", "spot", "answer"}
    if extra:
        raise PricesError(f"unknown field(s): {', '.join(sorted(extra))}")
    on_demand, spot = raw.get("on_demand"), raw.get("spot")
    for name, v in (("on_demand", on_demand), ("spot", spot)):
        if v is not None and not isinstance(v, list):
            raise PricesError(f"{name} must be a list")
    answer = {
        "GetProducts": "data" if on_demand is not None else "denied",
        "DescribeSpotPriceHistory": "data" if spot is not None else "denied",
    }
    given = raw.get("answer")
    if isinstance(given, str):
        given = {api: given for api in APIS}
    if given is not None:
        if not isinstance(given, dict) or set(given) - set(APIS):
            raise PricesError(f"answer is one of {', '.join(MODES)}, or an object keyed by {', '.join(APIS)}")
        for api, mode in given.items():
            if mode not in MODES:
                raise PricesError(f"answer for {api} must be one of {', '.join(MODES)}")
            answer[api] = mode
    return {
        "on_demand": [check_on_demand(e, i) for i, e in enumerate(on_demand or [])],
        "spot": [check_spot(e, i) for i, e in enumerate(spot or [])],
        "answer": answer,
    }


EMPTY = {"on_demand": [], "spot": [], "answer": {api: "denied" for api in APIS}}


# ── GetProducts ────────────────────────────────────────────────────────────────────────────
def sku_of(entry):
    key = "|".join(
        [
            entry["instance_type"],
            entry["region"],
            entry["operating_system"],
            entry["tenancy"],
            entry["pre_installed_sw"],
            entry["capacity_status"],
        ]
    )
    digest = hashlib.sha256(key.encode()).digest()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:16])


def iso(t):
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def product(entry, published):
    """One Price List product for an on-demand entry, shaped like AWS's documented example."""
    sku = sku_of(entry)
    t = entry["instance_type"]
    osname = entry["operating_system"]
    attributes = {
        **entry["attributes"],
        "servicecode": "AmazonEC2",
        "servicename": "Amazon Elastic Compute Cloud",
        "locationType": "AWS Region",
        "location": entry["location"],
        "regionCode": entry["region"],
        "instanceType": t,
        "operatingSystem": osname,
        "tenancy": entry["tenancy"],
        "preInstalledSw": entry["pre_installed_sw"],
        "capacitystatus": entry["capacity_status"],
        "licenseModel": "No License required",
        "usagetype": f"{USAGE_PREFIX.get(entry['region'], entry['region'].upper() + '-')}BoxUsage:{t}",
        "operation": "RunInstances",
    }
    effective = entry["effective_date"] or published.replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    term = f"{sku}.{ON_DEMAND_TERM}"
    rate = f"{term}.{ON_DEMAND_RATE}"
    price = entry["usd"]
    return {
        "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                term: {
                    "priceDimensions": {
                        rate: {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${price.normalize():f} per On Demand {osname} {t} Instance Hour",
                            "appliesTo": [],
                            "rateCode": rate,
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{price:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": iso(effective),
                    "offerTermCode": ON_DEMAND_TERM,
                    "termAttributes": {},
                }
            }
        },
        "version": published.strftime("%Y%m%d%H%M%S"),
        "publicationDate": iso(published),
    }


def filter_matches(f, doc):
    kind, fieldname, value = f["Type"], f["Field"], f["Value"]
    have = doc["serviceCode"] if fieldname == "ServiceCode" else doc["product"]["attributes"].get(fieldname)
    if kind in ("TERM_MATCH", "EQUALS"):
        return have == value
    if kind == "CONTAINS":
        return have is not None and value in have
    options = [v.strip() for v in value.split(",")]
    if kind == "ANY_OF":
        return have in options
    return have not in options  # NONE_OF


def page_token(offset, request_key):
    raw = json.dumps({"o": offset, "k": request_key}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def read_token(token, request_key, code):
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        if raw["k"] == request_key and isinstance(raw["o"], int) and raw["o"] >= 0:
            return raw["o"]
    except (ValueError, KeyError, TypeError):
        pass
    raise ApiError(400, code, "The pagination token is invalid.")


def request_key(parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def get_products(data, body, published):
    """The GetProducts answer (a dict) for a request body (a dict), or ApiError."""
    if not isinstance(body, dict):
        raise ApiError(400, "SerializationException", "The request body is not a JSON object.")
    service = body.get("ServiceCode")
    if not isinstance(service, str) or not service:
        raise ApiError(400, "InvalidParameterException", "ServiceCode is required.")
    fmt = body.get("FormatVersion", "aws_v1")
    if fmt != "aws_v1":
        raise ApiError(400, "InvalidParameterException", f"Invalid FormatVersion: {fmt}")
    filters = body.get("Filters") or []
    if not isinstance(filters, list):
        raise ApiError(400, "InvalidParameterException", "Filters must be a list.")
    for f in filters:
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in ("Type", "Field", "Value")):
            raise ApiError(400, "InvalidParameterException", "A filter needs Type, Field and Value.")
        if f["Type"] not in FILTER_TYPES:
            raise ApiError(400, "InvalidParameterException", f"Invalid filter type: {f['Type']}")
    limit = body.get("MaxResults", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ApiError(400, "InvalidParameterException", "MaxResults must be between 1 and 100.")
    key = request_key([service, fmt, filters])
    offset = 0
    if body.get("NextToken"):
        offset = read_token(str(body["NextToken"]), key, "InvalidNextTokenException")
    docs = []
    if service == "AmazonEC2":
        docs = [product(e, published) for e in data["on_demand"]]
    docs = [d for d in docs if all(filter_matches(f, d) for f in filters)]
    docs.sort(key=lambda d: d["product"]["sku"])
    page = docs[offset : offset + limit]
    answer = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(d) for d in page]}
    if offset + limit < len(docs):
        answer["NextToken"] = page_token(offset + limit, key)
    return answer


# ── DescribeSpotPriceHistory ───────────────────────────────────────────────────────────────
def members(params, prefix):
    """Values of a query-protocol list (InstanceType.1, InstanceType.2...), in order."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)$")
    found = sorted((int(m.group(1)), v[0]) for k, v in params.items() if (m := pat.match(k)))
    return [v for _, v in found]


def spot_filters(params):
    out = []
    for i in sorted({int(m.group(1)) for k in params if (m := re.match(r"Filter\.(\d+)\.Name$", k))}):
        name = params[f"Filter.{i}.Name"][0]
        if name not in SPOT_FILTERS:
            raise ApiError(400, "InvalidParameterValue", f"The filter '{name}' is invalid")
        out.append((SPOT_FILTERS[name], members(params, f"Filter.{i}.Value")))
    return out


def spot_price_text(d):
    return f"{d:.6f}"


def spot_history(data, params, region, now):
    """(items, next token or "") for DescribeSpotPriceHistory's parameters, or ApiError."""

    def one(name):
        v = params.get(name)
        return v[0] if v else None

    try:
        start = parse_time(one("StartTime"), "StartTime") if one("StartTime") else None
        end = parse_time(one("EndTime"), "EndTime") if one("EndTime") else now
    except PricesError as e:
        raise ApiError(400, "InvalidParameterValue", str(e)) from None
    limit_text = one("MaxResults")
    limit = SPOT_MAX_RESULTS
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= SPOT_MAX_RESULTS:
            raise ApiError(
                400, "InvalidParameterValue", f"Value ({limit_text}) for parameter maxResults is invalid."
            )
        limit = int(limit_text)
    types = members(params, "InstanceType")
    products = members(params, "ProductDescription")
    zone = one("AvailabilityZone")
    filters = spot_filters(params)

    def wanted(e):
        if e["region"] != region or e["timestamp"] > end:
            return False
        if types and e["instanceType"] not in types:
            return False
        if products and e["productDescription"] not in products:
            return False
        if zone and e["availabilityZone"] != zone:
            return False
        text = {**e, "spotPrice": spot_price_text(e["usd"])}
        return all(any(fnmatch.fnmatchcase(text[f], v) for v in vs) for f, vs in filters)

    rows = [e for e in data["spot"] if wanted(e)]
    if start is not None:
        # The window, plus each series' last change before it: the price in force at start.
        latest_before = {}
        for e in rows:
            series = (e["availabilityZone"], e["instanceType"], e["productDescription"])
            if e["timestamp"] < start and (
                series not in latest_before or e["timestamp"] > latest_before[series]["timestamp"]
            ):
                latest_before[series] = e
        rows = [e for e in rows if e["timestamp"] >= start] + list(latest_before.values())
    rows.sort(
        key=lambda e: (-e["timestamp"].timestamp(), e["availabilityZone"], e["instanceType"], e["productDescription"])
    )
    key = request_key([region, types, products, zone, filters, one("StartTime"), one("EndTime"), limit])
    offset = read_token(one("NextToken"), key, "InvalidNextToken") if one("NextToken") else 0
    page = rows[offset : offset + limit]
    token = page_token(offset + limit, key) if offset + limit < len(rows) else ""
    return page, token


def xml_escape(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def spot_history_xml(items, token, request_id):
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<DescribeSpotPriceHistoryResponse xmlns="{EC2_XMLNS}">',
        f"    <requestId>{request_id}</requestId>",
        "    <spotPriceHistorySet>",
    ]
    for e in items:
        parts += [
            "        <item>",
            f"            <instanceType>{xml_escape(e['instanceType'])}</instanceType>",
            f"            <productDescription>{xml_escape(e['productDescription'])}</productDescription>",
            f"            <spotPrice>{spot_price_text(e['usd'])}</spotPrice>",
            f"            <timestamp>{e['timestamp'].strftime('%Y-%m-%dT%H:%M:%S.000Z')}</timestamp>",
            f"            <availabilityZone>{xml_escape(e['availabilityZone'])}</availabilityZone>",
            "        </item>",
        ]
    parts.append("    </spotPriceHistorySet>")
    parts.append(f"    <nextToken>{xml_escape(token)}</nextToken>" if token else "    <nextToken/>")
    parts.append("</DescribeSpotPriceHistoryResponse>")
    return "\n".join(parts)


# ── The addon ──────────────────────────────────────────────────────────────────────────────
def signed_region(req):
    auth = req.headers.get("authorization", "")
    m = re.search(r"Credential=([^,\s]+)", auth)
    parts = unquote(m.group(1) if m else req.query.get("X-Amz-Credential", "")).split("/")
    return parts[-3] if len(parts) >= 5 else ""


def form_params(req):
    params = {}
    for k, v in req.query.items(multi=True):
        params.setdefault(k, []).append(v)
    if req.method == "POST" and req.raw_content is not None:
        for k, vs in parse_qs(req.get_text(strict=False) or "", keep_blank_values=True).items():
            params.setdefault(k, []).extend(vs)
    return params


def principal(req):
    auth = req.headers.get("authorization", "")
    m = re.search(r"Credential=([^/,\s]+)", auth)
    return m.group(1) if m else "anonymous"


class Prices:
    def __init__(self, error_response, wall=time.time):
        self.error_response = error_response
        self.wall = wall
        self.data = EMPTY
        self.published = datetime.now(timezone.utc).replace(microsecond=0)

    # ── control API ────────────────────────────────────────────────────────────────────────
    def control(self, flow):
        from mitmproxy import http

        req = flow.request
        status, body = 404, {"error": f"no control endpoint {req.method} {urlsplit(req.path).path}"}
        if req.method == "POST":
            try:
                self.data = check_data(json.loads(req.get_text(strict=False) or "{}"))
            except (ValueError, PricesError) as e:
                status, body = 400, {"error": str(e)}
            else:
                self.published = datetime.fromtimestamp(int(self.wall()), timezone.utc)
                status, body = 200, self.describe()
        elif req.method == "GET":
            status, body = 200, self.describe()
        elif req.method == "DELETE":
            self.data = EMPTY
            status, body = 200, self.describe()
        flow.response = http.Response.make(
            status, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    def describe(self):
        return {
            "answer": self.data["answer"],
            "on_demand": [
                {**{k: v for k, v in e.items() if k not in ("usd", "effective_date")},
                 "usd_per_hour": str(e["usd"])}
                for e in self.data["on_demand"]
            ],
            "spot": [
                {
                    "instance_type": e["instanceType"],
                    "availability_zone": e["availabilityZone"],
                    "product_description": e["productDescription"],
                    "usd_per_hour": str(e["usd"]),
                    "timestamp": iso(e["timestamp"]),
                }
                for e in self.data["spot"]
            ],
        }

    # ── hooks (after Faults and Limits) ────────────────────────────────────────────────────
    async def request(self, flow):
        req = flow.request
        if urlsplit(req.path).path.rstrip("/") == CONTROL_PATH and flow.response is None:
            self.control(flow)
            return
        named = flow.metadata.get("faults.call")
        if named is None or flow.response is not None or flow.error is not None:
            return
        api = named["action"]
        if not (
            (api == "GetProducts" and named["service"] == "pricing")
            or (api == "DescribeSpotPriceHistory" and named["service"] == "ec2")
        ):
            return
        if api == "GetProducts" and signed_region(req) not in PRICING_REGIONS:
            self.cut(flow)  # api.pricing.<region>.amazonaws.com does not exist
            return
        mode = self.data["answer"][api]
        if mode == "emulator":
            return
        if mode == "no_answer":
            self.cut(flow)
            return
        protocol = "json" if api == "GetProducts" else "ec2"
        if mode == "denied":
            action = f"{named['service']}:{api}"
            message = (
                f"User: arn:aws:iam::000000000000:user/{principal(req)} is not authorized to "
                f"perform: {action} because no identity-based policy allows the {action} action"
            )
            if api == "GetProducts":
                self.answer_error(flow, protocol, ApiError(400, "AccessDeniedException", message))
            else:
                self.answer_error(flow, protocol, ApiError(403, "UnauthorizedOperation", message))
            return
        try:
            if api == "GetProducts":
                body = json.loads(req.get_text(strict=False) or "{}")
                answer = get_products(self.data, body, self.published)
                self.answer(flow, 200, json.dumps(answer), req.headers.get(
                    "content-type", "application/x-amz-json-1.1"))
            else:
                params = form_params(req)
                if params.get("DryRun", ["false"])[0].lower() == "true":
                    raise ApiError(
                        412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."
                    )
                now = datetime.fromtimestamp(self.wall(), timezone.utc)
                items, token = spot_history(self.data, params, signed_region(req), now)
                self.answer(flow, 200, spot_history_xml(items, token, str(uuid.uuid4())),
                            "text/xml;charset=UTF-8")
        except json.JSONDecodeError:
            self.answer_error(flow, protocol, ApiError(400, "SerializationException", "Malformed JSON."))
        except ApiError as e:
            self.answer_error(flow, protocol, e)

    def answer(self, flow, status, body, content_type):
        from mitmproxy import http

        flow.response = http.Response.make(
            status,
            body.encode(),
            {"Content-Type": content_type, "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def answer_error(self, flow, protocol, e):
        flow.response = self.error_response(flow.request, protocol, e.status, e.code, e.message)

    @staticmethod
    def cut(flow):
        if flow.killable:
            flow.kill()
