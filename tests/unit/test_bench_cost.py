"""The cost model's arithmetic: bills per million notifications from usage, and usage from counted calls."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.cost import usage_of
from bench.floor import (
    DELIVER_PROVIDER,
    INTAKE_DELETE,
    INTAKE_RECEIVE,
    PRIORITY_DELETE,
    PRIORITY_RECEIVE,
    Batching,
    Shape,
)
from bench.prices import PRICES, ApiKind, Usage, bill_per_million, gb_seconds, push_alone_per_million
from bench.requests import Measurement
from bench.stack import Invocation

ONE_OF_EACH = Usage(
    api_requests=1,
    lambda_invocations=1,
    lambda_gb_seconds=0,
    sqs_requests=1,
    sns_publishes=1,
    push_deliveries=1,
    dynamodb_write_units=1,
    dynamodb_read_units=1,
)


def test_one_of_each_unit_per_notification_bills_each_list_price_per_million():
    # When a million notifications each use one unit of everything, through a REST API
    bill = bill_per_million(ONE_OF_EACH, ApiKind.REST)

    # Then each service's line is its price per million (a push is a publish plus a delivery)
    assert bill == pytest.approx(
        {
            "API Gateway": 3.50,
            "Lambda": 0.20,
            "SQS": 0.40,
            "SNS (topic)": 0.50,
            "SNS (mobile push)": 1.00,
            "DynamoDB": 0.625 + 0.125,
        }
    )


def test_an_http_api_costs_2_50_less_per_million_requests():
    rest = sum(bill_per_million(ONE_OF_EACH, ApiKind.REST).values())
    http = sum(bill_per_million(ONE_OF_EACH, ApiKind.HTTP).values())
    assert rest - http == pytest.approx(2.50)


def test_idempotency_records_add_two_write_units_per_notification():
    # Given the same usage with an idempotency record (a conditional PutItem and an UpdateItem)
    plain = bill_per_million(ONE_OF_EACH, ApiKind.HTTP)
    idempotent = bill_per_million(ONE_OF_EACH.with_idempotency_records(), ApiKind.HTTP)

    # Then only DynamoDB's line grows, by 2 x $0.625
    assert idempotent["DynamoDB"] - plain["DynamoDB"] == pytest.approx(1.25)
    assert {k: v for k, v in idempotent.items() if k != "DynamoDB"} == {
        k: v for k, v in plain.items() if k != "DynamoDB"
    }


def test_lambda_duration_is_billed_in_gb_seconds_at_the_arm64_price():
    # Given 1,000 ms per notification at 256 MB: a quarter GB-second
    usage = Usage(0, 0, gb_seconds(1000, 256), 0, 0, 0, 0, 0)

    # Then a million of them cost 250,000 GB-s at the arm64 price
    assert usage.lambda_gb_seconds == pytest.approx(0.25)
    assert bill_per_million(usage, ApiKind.HTTP)["Lambda"] == pytest.approx(250_000 * PRICES.lambda_per_gb_second_arm64)


def test_push_alone_is_a_publish_and_a_delivery_per_device():
    assert push_alone_per_million(3) == pytest.approx(3.00)


def test_usage_is_read_from_counted_calls_and_timed_invocations():
    # Given 2 notifications to a user with 3 push devices, as the requests benchmark counts them
    m = Measurement(Shape(1, 3), notifications=2, batching=Batching(10, 10))
    m.herald_calls = Counter(
        {
            ("api", "sqs", "SendMessage", "IntakeQueue"): 2,
            ("api", "dynamodb", "PutItem", "StatusTable"): 2,
            ("fanout", "dynamodb", "Query", "DevicesTable"): 2,
            ("fanout", "dynamodb", "BatchWriteItem", "StatusTable"): 2,
            ("fanout", "sns", "PublishBatch", "NotificationsTopic"): 2,
            ("fanout", "dynamodb", "UpdateItem", "StatusTable"): 2,
            ("deliver", "sns", "Publish", "endpoint"): 6,
            ("deliver", "dynamodb", "UpdateItem", "StatusTable"): 12,
        }
    )
    m.herald_entries = Counter(m.herald_calls)
    m.herald_entries[("fanout", "dynamodb", "BatchWriteItem", "StatusTable")] = 6  # 3 items per call
    m.lines = Counter(
        {INTAKE_RECEIVE: 1, INTAKE_DELETE: 1, PRIORITY_RECEIVE: 1, PRIORITY_DELETE: 1, DELIVER_PROVIDER: 6}
    )
    m.invocations = {
        "Api": [Invocation("Api", 0.0101, 0), Invocation("Api", 0.010, 0)],
        "Fanout": [Invocation("Fanout", 0.020, 2)],
        "Deliver": [Invocation("Deliver", 0.030, 6)],
    }

    # When it is turned into usage per notification at 256 MB
    usage = usage_of(m, 256)

    # Then
    assert usage.api_requests == 1
    assert usage.lambda_invocations == pytest.approx(2.0)
    # 11 + 10 + 20 + 30 = 71 billed ms (10.1 rounds up), halved, at a quarter GB
    assert usage.lambda_gb_seconds == pytest.approx(71 / 2 / 1000 / 4)
    # 1 intake send + 2 receives and 2 deletes over 2 notifications + 3 deliveries from SNS into the queue
    assert usage.sqs_requests == pytest.approx(1 + 2 + 3)
    assert usage.sns_publishes == pytest.approx(1)
    assert usage.push_deliveries == pytest.approx(3)
    # accepted 1 + queued 3 + fanned out 1 + outcomes 6 per notification
    assert usage.dynamodb_write_units == pytest.approx(1 + 3 + 1 + 6)
    assert usage.dynamodb_read_units == pytest.approx(0.5)
