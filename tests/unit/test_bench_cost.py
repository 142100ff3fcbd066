"""The cost model: a recording of counted calls -> USD per million notifications, hand-checked, and the
same figures every time the same recording is priced."""

from __future__ import annotations

import pytest

from bench.cost import bill_of, money_by_call, usage_of
from bench.durations import DurationModel
from bench.lockstep import CallCount, Invocation, Recording
from bench.prices import (
    DYNAMODB,
    EMAIL,
    HTTP_API,
    LAMBDA_COMPUTE,
    LAMBDA_REQUESTS,
    MOBILE_PUSH,
    PRICES,
    REST_API,
    SMS,
    SNS_PUBLISH,
    SQS,
)

MEMORY = {"ApiFunction": 256, "FanoutFunction": 256, "DeliverNormalFunction": 256}
ARM = {name: "arm64" for name in MEMORY}
MODEL = DurationModel(
    invocation_cpu_ms=2.0,
    record_cpu_ms=1.0,
    call_cpu_ms=1.0,
    wait_ms={("dynamodb", ""): 5.0, ("sqs", ""): 8.0, ("sns", ""): 15.0, ("sns", "endpoint"): 30.0},
)


def three_push_devices(notifications: int = 10) -> Recording:
    """What the current design does for `notifications` notifications to a user with 3 push devices,
    intake batches of 1 and deliver batches of 10 (notifications a multiple of 10)."""
    api = Invocation(
        "ApiFunction",
        "api",
        0,
        1,
        1,
        (CallCount("dynamodb", "PutItem", "StatusTable", 1, 1), CallCount("sqs", "SendMessage", "IntakeQueue", 1, 1)),
    )
    fanout = Invocation(
        "FanoutFunction",
        "fanout",
        1,
        1,
        1,
        (
            CallCount("dynamodb", "Query", "DevicesTable", 1, 0.5),
            CallCount("dynamodb", "UpdateItem", "StatusTable", 2, 2),
            CallCount("sns", "PublishBatch", "NotificationsTopic", 1, 1),
        ),
    )
    deliver = Invocation(
        "DeliverNormalFunction",
        "deliver",
        10,
        4,  # ten consecutive deliveries of 3-device notifications span 4 of them
        10,
        (CallCount("dynamodb", "UpdateItem", "StatusTable", 20, 20), CallCount("sns", "Publish", "endpoint", 10, 10)),
    )
    n = notifications
    batches = 3 * n // 10
    return Recording(
        case="3 push devices each",
        notifications=n,
        deliveries=3 * n,
        invocations=(*[api] * n, *[fanout] * n, *[deliver] * batches),
        mapping=(
            CallCount("sqs", "DeleteMessageBatch", "IntakeQueue", n, n),
            CallCount("sqs", "ReceiveMessage", "IntakeQueue", n, n),
            CallCount("sqs", "DeleteMessageBatch", "NormalQueue", batches, batches),
            CallCount("sqs", "ReceiveMessage", "NormalQueue", batches, batches),
        ),
        memory_mb=MEMORY,
        architecture=ARM,
    )


def test_a_recording_reads_as_billing_units_per_notification():
    usage = usage_of(three_push_devices(), MODEL)

    # Then: accepted 1 + claim 1 + fanned out 1 + (claim + outcome) x 3 = 9 write units; one device query
    assert usage.dynamodb_write_units == pytest.approx(9)
    assert usage.dynamodb_read_units == pytest.approx(0.5)
    # 1 send + 1 intake receive + 1 intake delete + 0.3 priority receives + 0.3 deletes
    assert usage.sqs_requests == pytest.approx(3.6)
    assert usage.sns_requests == pytest.approx(1)
    assert usage.lambda_invocations == pytest.approx(2.3)
    assert usage.push_publishes == pytest.approx(3)
    assert usage.api_requests == pytest.approx(1)


def test_three_push_devices_cost_what_the_hand_computation_says():
    # Given the model's durations worked by hand at 256 MB (CPU stretched 1769/256 = 6.91015625x):
    #   api     (2 + 2 calls) x 6.91 = 27.64 + waits 5 + 8        =  40.64 -> 41 ms
    #   fanout  (2 + 1 + 4)   x 6.91 = 48.37 + waits 5 + 5 + 15 + 5 =  78.37 -> 79 ms
    #   deliver (2 + 10 + 30) x 6.91 = 290.23 + waits (20x5 + 10x30)/10 lanes = 330.23 -> 331 ms
    # per notification: (41 + 79 + 0.3 x 331) ms x 0.25 GB = 0.054825 GB-s
    bill = bill_of(three_push_devices(), PRICES, MODEL)

    # Then, per million notifications
    assert bill.own == pytest.approx(
        {
            DYNAMODB: 9 * 0.625 + 0.5 * 0.125,  # 5.6875
            SQS: 3.6 * 0.40,  # 1.44
            SNS_PUBLISH: 1 * 0.50,
            LAMBDA_REQUESTS: 2.3 * 0.20,  # 0.46
            LAMBDA_COMPUTE: 0.054825 * 0.0000133334 * 1_000_000,  # 0.7310
        }
    )
    assert bill.total == pytest.approx(8.8185, abs=1e-4)
    # And apart: the front door and the providers' fees
    assert bill.api == pytest.approx({REST_API: 3.50, HTTP_API: 1.00})
    assert bill.providers == pytest.approx({MOBILE_PUSH: 3 * (0.50 + 0.50), SMS: 0, EMAIL: 0})


def test_where_the_money_goes_adds_up_to_the_own_overhead():
    recording = three_push_devices()
    by_call = dict(money_by_call(recording, PRICES, MODEL))

    # The deliveries' claims and outcomes are the largest item: 6 write units
    assert next(iter(by_call)) == "deliver: dynamodb UpdateItem StatusTable"
    assert by_call["deliver: dynamodb UpdateItem StatusTable"] == pytest.approx(6 * 0.625)
    assert by_call["mapping: sqs ReceiveMessage IntakeQueue"] == pytest.approx(0.40)
    assert "deliver: sns Publish endpoint" not in by_call  # a provider fee, shown apart
    assert sum(by_call.values()) == pytest.approx(bill_of(recording, PRICES, MODEL).total)


def test_lambda_is_billed_at_each_functions_own_memory():
    # Given the same work with the fan-out at 512 MB
    base = three_push_devices()
    bigger = Recording(**{**base.__dict__, "memory_mb": {**MEMORY, "FanoutFunction": 512}})

    # Then only the fan-out's compute changes: 7 ms of CPU x 1769/512 = 24.19 + 30 ms of waits = 55 ms at
    # half a GB, against 79 ms at a quarter GB (one fan-out per notification)
    difference = bill_of(bigger, PRICES, MODEL).own[LAMBDA_COMPUTE] - bill_of(base, PRICES, MODEL).own[LAMBDA_COMPUTE]
    assert difference == pytest.approx((55 * 0.5 - 79 * 0.25) / 1000 * 0.0000133334 * 1_000_000)


def test_the_same_recording_always_gives_the_same_figures():
    # Given one recording, priced twice, and priced again after a round trip through its JSON form
    recording = three_push_devices()
    first = bill_of(recording)
    second = bill_of(recording)
    reread = bill_of(Recording.from_json(recording.as_json()))

    # Then every figure is identical, to the last bit
    assert first == second == reread
    assert money_by_call(recording) == money_by_call(Recording.from_json(recording.as_json()))
    assert Recording.from_json(recording.as_json()).dumps() == recording.dumps()
