"""Unit tests of prices.py's answers: filters, windows, pages (no proxy, no AWS).

    .world/faults-venv/bin/python -m unittest discover -s tests/world -p 'test_*.py'
"""

import json
import unittest
from datetime import datetime, timezone

import prices
from prices import ApiError, check_data, get_products, spot_history

PUBLISHED = datetime(2026, 12, 4, 3, 30, 9, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 1, 18, 0, 0, tzinfo=timezone.utc)


def data():
    return check_data(
        {
            "on_demand": [
                {"instance_type": "m5.large", "region": "us-east-1", "usd_per_hour": "0.096"},
                {"instance_type": "m5.large", "region": "us-east-1", "usd_per_hour": "0.096",
                 "capacity_status": "UnusedCapacityReservation"},
                {"instance_type": "m5.large", "region": "us-east-1", "usd_per_hour": "0.188",
                 "operating_system": "Windows"},
                {"instance_type": "m5.large", "region": "eu-west-1", "usd_per_hour": 0.107},
                {"instance_type": "c5.xlarge", "region": "us-east-1", "usd_per_hour": "0.17",
                 "attributes": {"vcpu": "4", "memory": "8 GiB"}},
            ],
            "spot": [
                {"instance_type": "m5.large", "availability_zone": "us-east-1a", "usd_per_hour": "0.0354",
                 "timestamp": "2026-12-01T10:00:00Z"},
                {"instance_type": "m5.large", "availability_zone": "us-east-1a", "usd_per_hour": "0.0360",
                 "timestamp": "2026-12-01T12:00:00Z"},
                {"instance_type": "m5.large", "availability_zone": "us-east-1a", "usd_per_hour": "0.0390",
                 "timestamp": "2026-12-01T20:00:00Z"},
                {"instance_type": "m5.large", "availability_zone": "us-east-1b", "usd_per_hour": "0.0371",
                 "timestamp": "2026-12-01T11:00:00Z"},
                {"instance_type": "c5.xlarge", "availability_zone": "us-east-1b", "usd_per_hour": "0.0650",
                 "timestamp": "2026-12-01T11:30:00Z"},
                {"instance_type": "m5.large", "availability_zone": "us-east-1a", "usd_per_hour": "0.0800",
                 "timestamp": "2026-12-01T11:00:00Z", "product_description": "Windows"},
                {"instance_type": "m5.large", "availability_zone": "eu-west-1a", "usd_per_hour": "0.03",
                 "timestamp": "2026-12-01T11:00:00Z"},
            ],
        }
    )


def term(field, value, kind="TERM_MATCH"):
    return {"Type": kind, "Field": field, "Value": value}


LINUX_M5_US_EAST_1 = [
    term("instanceType", "m5.large"),
    term("location", "US East (N. Virginia)"),
    term("operatingSystem", "Linux"),
    term("tenancy", "Shared"),
    term("preInstalledSw", "NA"),
    term("capacitystatus", "Used"),
]


def products(body):
    return [json.loads(p) for p in get_products(data(), {"ServiceCode": "AmazonEC2", **body}, PUBLISHED)["PriceList"]]


def usd(doc):
    (offer,) = doc["terms"]["OnDemand"].values()
    (dim,) = offer["priceDimensions"].values()
    return dim["pricePerUnit"]["USD"]


class GetProducts(unittest.TestCase):
    def test_the_usual_filters_find_one_product(self):
        (doc,) = products({"Filters": LINUX_M5_US_EAST_1})
        self.assertEqual(usd(doc), "0.0960000000")
        a = doc["product"]["attributes"]
        self.assertEqual((a["instanceType"], a["location"], a["regionCode"]), ("m5.large", "US East (N. Virginia)", "us-east-1"))
        self.assertEqual(a["usagetype"], "BoxUsage:m5.large")

    def test_each_filter_counts(self):
        self.assertEqual(len(products({"Filters": LINUX_M5_US_EAST_1[:1]})), 4)
        self.assertEqual(len(products({"Filters": LINUX_M5_US_EAST_1[:2]})), 3)
        self.assertEqual(len(products({"Filters": LINUX_M5_US_EAST_1[:3]})), 2)
        self.assertEqual(len(products({"Filters": LINUX_M5_US_EAST_1[:5]})), 2)
        self.assertEqual(len(products({"Filters": LINUX_M5_US_EAST_1})), 1)

    def test_filter_kinds_and_service_code(self):
        self.assertEqual(len(products({"Filters": [term("ServiceCode", "AmazonEC2")]})), 5)
        self.assertEqual(len(products({"Filters": [term("instanceType", "m5", "CONTAINS")]})), 4)
        self.assertEqual(len(products({"Filters": [term("regionCode", "eu-west-1, us-west-2", "ANY_OF")]})), 1)
        self.assertEqual(len(products({"Filters": [term("operatingSystem", "Windows", "NONE_OF")]})), 4)
        self.assertEqual(len(products({"Filters": [term("capacityStatus", "Used")]})), 0)  # names are exact
        self.assertEqual(get_products(data(), {"ServiceCode": "AmazonS3"}, PUBLISHED)["PriceList"], [])

    def test_the_document_has_the_documented_structure(self):
        (doc,) = products({"Filters": [term("instanceType", "c5.xlarge")]})
        self.assertEqual(set(doc), {"product", "serviceCode", "terms", "version", "publicationDate"})
        self.assertEqual(set(doc["product"]), {"productFamily", "attributes", "sku"})
        sku = doc["product"]["sku"]
        offer = doc["terms"]["OnDemand"][f"{sku}.JRTCKXETXF"]
        self.assertEqual(set(offer), {"priceDimensions", "sku", "effectiveDate", "offerTermCode", "termAttributes"})
        dim = offer["priceDimensions"][f"{sku}.JRTCKXETXF.6YS6EN2CT7"]
        self.assertEqual(
            set(dim), {"unit", "endRange", "description", "appliesTo", "rateCode", "beginRange", "pricePerUnit"}
        )
        self.assertEqual(dim["description"], "$0.17 per On Demand Linux c5.xlarge Instance Hour")
        self.assertEqual(doc["product"]["attributes"]["vcpu"], "4")
        self.assertEqual((doc["version"], doc["publicationDate"]), ("20261204033009", "2026-12-04T03:30:09Z"))

    def test_pages(self):
        body = {"ServiceCode": "AmazonEC2", "MaxResults": 2}
        seen, token = [], None
        for _ in range(5):
            answer = get_products(data(), {**body, **({"NextToken": token} if token else {})}, PUBLISHED)
            seen += [json.loads(p)["product"]["sku"] for p in answer["PriceList"]]
            token = answer.get("NextToken")
            if not token:
                break
        self.assertEqual(len(seen), 5)
        self.assertEqual(len(set(seen)), 5)
        first = get_products(data(), body, PUBLISHED)
        with self.assertRaises(ApiError) as e:  # a token from another query
            get_products(data(), {**body, "Filters": LINUX_M5_US_EAST_1[:1], "NextToken": first["NextToken"]},
                         PUBLISHED)
        self.assertEqual(e.exception.code, "InvalidNextTokenException")

    def test_bad_requests(self):
        for body, code in (
            ({}, "InvalidParameterException"),
            ({"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v2"}, "InvalidParameterException"),
            ({"ServiceCode": "AmazonEC2", "MaxResults": 101}, "InvalidParameterException"),
            ({"ServiceCode": "AmazonEC2", "Filters": [{"Type": "LIKE", "Field": "a", "Value": "b"}]},
             "InvalidParameterException"),
            ({"ServiceCode": "AmazonEC2", "NextToken": "garbage"}, "InvalidNextTokenException"),
        ):
            with self.subTest(body=body), self.assertRaises(ApiError) as e:
                get_products(data(), body, PUBLISHED)
            self.assertEqual(e.exception.code, code)


def q(**params):
    out = {}
    for k, v in params.items():
        key = k.replace("__", ".")
        out[key] = [v]
    return out


def rows(params, region="us-east-1"):
    items, token = spot_history(data(), params, region, NOW)
    return [(e["availabilityZone"], e["instanceType"], str(e["usd"])) for e in items], token


class SpotHistory(unittest.TestCase):
    def test_only_the_signed_regions_zones_newest_first_up_to_now(self):
        got, token = rows(q(InstanceType__1="m5.large", ProductDescription__1="Linux/UNIX"))
        self.assertEqual(got, [("us-east-1a", "m5.large", "0.0360"), ("us-east-1b", "m5.large", "0.0371"),
                               ("us-east-1a", "m5.large", "0.0354")])
        self.assertEqual(token, "")
        got, _ = rows(q(InstanceType__1="m5.large"), region="eu-west-1")
        self.assertEqual(got, [("eu-west-1a", "m5.large", "0.03")])

    def test_a_window_brings_the_price_in_force_at_its_start(self):
        got, _ = rows(q(InstanceType__1="m5.large", ProductDescription__1="Linux/UNIX",
                        StartTime="2026-12-01T11:30:00Z", EndTime="2026-12-01T13:00:00Z"))
        self.assertEqual(got, [("us-east-1a", "m5.large", "0.0360"), ("us-east-1b", "m5.large", "0.0371"),
                               ("us-east-1a", "m5.large", "0.0354")])
        got, _ = rows(q(InstanceType__1="m5.large", AvailabilityZone="us-east-1a", ProductDescription__1="Linux/UNIX",
                        StartTime="2026-12-01T12:30:00Z", EndTime="2026-12-01T21:00:00Z"))
        self.assertEqual(got, [("us-east-1a", "m5.large", "0.0390"), ("us-east-1a", "m5.large", "0.0360")])

    def test_filters_with_wildcards(self):
        got, _ = rows(q(Filter__1__Name="instance-type", Filter__1__Value__1="c5.*"))
        self.assertEqual(got, [("us-east-1b", "c5.xlarge", "0.0650")])
        got, _ = rows(q(Filter__1__Name="product-description", Filter__1__Value__1="Windows",
                        Filter__2__Name="availability-zone", Filter__2__Value__1="us-east-1?"))
        self.assertEqual(got, [("us-east-1a", "m5.large", "0.0800")])
        with self.assertRaises(ApiError) as e:
            rows(q(Filter__1__Name="colour", Filter__1__Value__1="x"))
        self.assertEqual(e.exception.code, "InvalidParameterValue")

    def test_pages_end_with_an_empty_token(self):
        params = q(MaxResults="2")
        got, token = rows(params)
        self.assertEqual(len(got), 2)
        self.assertTrue(token)
        more, token2 = rows({**params, "NextToken": [token]})
        self.assertEqual(len(more), 2)
        last, token3 = rows({**params, "NextToken": [token2]})
        self.assertEqual((len(last), token3), (1, ""))
        self.assertEqual(len({*got, *more, *last}), 5)
        with self.assertRaises(ApiError) as e:
            rows({**q(MaxResults="3"), "NextToken": [token]})
        self.assertEqual(e.exception.code, "InvalidNextToken")

    def test_xml_shape(self):
        items, _ = spot_history(data(), q(InstanceType__1="c5.xlarge"), "us-east-1", NOW)
        xml = prices.spot_history_xml(items, "", "rid")
        self.assertIn("<spotPrice>0.065000</spotPrice>", xml)
        self.assertIn("<timestamp>2026-12-01T11:30:00.000Z</timestamp>", xml)
        self.assertTrue(xml.rstrip().endswith("<nextToken/>\n</DescribeSpotPriceHistoryResponse>"))


class Data(unittest.TestCase):
    def test_an_api_without_data_is_denied_unless_told(self):
        self.assertEqual(check_data({"on_demand": []})["answer"],
                         {"GetProducts": "data", "DescribeSpotPriceHistory": "denied"})
        self.assertEqual(check_data({"answer": "no_answer"})["answer"],
                         {"GetProducts": "no_answer", "DescribeSpotPriceHistory": "no_answer"})
        self.assertEqual(check_data({"spot": [], "answer": {"GetProducts": "emulator"}})["answer"],
                         {"GetProducts": "emulator", "DescribeSpotPriceHistory": "data"})

    def test_bad_data_is_refused(self):
        for bad in (
            {"on_demand": [{"instance_type": "m5.large", "region": "us-east-1"}]},
            {"on_demand": [{"instance_type": "m5.large", "region": "xx-mars-1", "usd_per_hour": 1}]},
            {"on_demand": [{"instance_type": "m5.large", "region": "us-east-1", "usd_per_hour": "cheap"}]},
            {"on_demand": [{"instance_type": "m5.large", "region": "us-east-1", "usd_per_hour": -1}]},
            {"spot": [{"instance_type": "m5.large", "availability_zone": "nowhere", "usd_per_hour": 1,
                       "timestamp": "2026-12-01T00:00:00Z"}]},
            {"spot": [{"instance_type": "m5.large", "availability_zone": "us-east-1a", "usd_per_hour": 1,
                       "timestamp": "yesterday"}]},
            {"answer": "maybe"},
            {"prices": []},
        ):
            with self.subTest(bad=bad), self.assertRaises(prices.PricesError):
                check_data(bad)


if __name__ == "__main__":
    unittest.main()
