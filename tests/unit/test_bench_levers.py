"""The levers: each rewrites a recording as the changed design would have made it; hand-checked."""

from __future__ import annotations

import pytest

from bench.cost import bill_of
from bench.levers import (
    LEVERS,
    fan_out_in_the_api,
    group_jobs,
    grouped_status_writes,
    idempotency_in_accepted_record,
    intake_window,
    no_accepted_record,
    no_fan_out_write,
    one_accept_write,
    outcome_without_claim,
    packed_publishes,
    path_of,
    smallest_memory,
)
from bench.lockstep import CallCount, Invocation, Recording
from bench.prices import DYNAMODB, SNS_PUBLISH, SQS
from tests.unit.test_bench_cost import ARM, MEMORY, three_push_devices


def calls(recording: Recording, handler: str, service: str, operation: str) -> int:
    return sum(i.count(service, operation) for i in recording.invocations if i.handler == handler)


def test_grouped_status_writes_make_two_writes_per_notification_per_batch():
    # Given deliver batches of 10 deliveries spanning 4 notifications each (3 batches for 10 notifications)
    rewritten = grouped_status_writes(three_push_devices())

    # Then each batch writes 2 x 4 instead of 2 x 10: 24 writes instead of 60, a unit each
    # (a group of 2.5 deliveries is 60 + 2.5 x 110 bytes, under 1 KB)
    assert calls(rewritten, "deliver", "dynamodb", "UpdateItem") == 24
    assert bill_of(rewritten).usage.dynamodb_write_units == pytest.approx(3 + 2.4)


def test_one_accept_write_drops_one_fan_out_status_write_per_notification():
    rewritten = one_accept_write(three_push_devices())
    assert calls(rewritten, "fanout", "dynamodb", "UpdateItem") == 10
    assert bill_of(rewritten).usage.dynamodb_write_units == pytest.approx(8)


def test_an_intake_window_merges_fan_outs_into_full_batches_and_their_receives():
    # Given 10 notifications each fanned out alone (10 receives, 10 deletes on the intake)
    rewritten = intake_window(three_push_devices())

    # Then one fan-out batch of 10, one receive and one delete; the fan-out's own calls unchanged so far
    fanouts = [i for i in rewritten.invocations if i.handler == "fanout"]
    assert [(i.records, i.notifications) for i in fanouts] == [(10, 10)]
    assert {c.operation: c.calls for c in rewritten.mapping if c.resource == "IntakeQueue"} == {
        "ReceiveMessage": 1,
        "DeleteMessageBatch": 1,
    }
    assert calls(rewritten, "fanout", "sns", "PublishBatch") == 10
    # 1 send + 0.2 intake + 0.6 normal queue per notification
    assert bill_of(rewritten).usage.sqs_requests == pytest.approx(1.8)


def test_packed_publishes_save_only_where_a_batch_holds_several_notifications():
    alone = packed_publishes(three_push_devices())
    batched = packed_publishes(intake_window(three_push_devices()))

    # A fan-out of one 3-device notification still makes one PublishBatch; ten of them make 3 (30 entries)
    assert calls(alone, "fanout", "sns", "PublishBatch") == 10
    assert calls(batched, "fanout", "sns", "PublishBatch") == 3
    assert bill_of(batched).own[SNS_PUBLISH] == pytest.approx(0.3 * 0.50)


def test_the_smallest_memory_bills_waits_at_half_the_gb_seconds():
    before, after = three_push_devices(), smallest_memory(three_push_devices())
    assert set(after.memory_mb.values()) == {128}
    assert bill_of(after).own[SQS] == bill_of(before).own[SQS]
    assert sum(bill_of(after).usage.lambda_gb_seconds.values()) < sum(bill_of(before).usage.lambda_gb_seconds.values())


def test_a_keyed_requests_idempotency_writes_go_when_merged_with_the_accepted_record():
    # Given API requests that also claim and complete an idempotency record
    base = three_push_devices()
    keyed_calls = (
        CallCount("dynamodb", "PutItem", "IdempotencyTable", 1, 1),
        CallCount("dynamodb", "UpdateItem", "IdempotencyTable", 1, 1),
    )
    keyed = Recording(
        **{
            **base.__dict__,
            "invocations": tuple(
                i if i.handler != "api" else type(i)(**{**i.__dict__, "calls": i.calls + keyed_calls})
                for i in base.invocations
            ),
        }
    )

    # Then the lever takes their 2 write units per notification off, and nothing else
    assert bill_of(keyed).usage.dynamodb_write_units == pytest.approx(11)
    assert bill_of(idempotency_in_accepted_record(keyed)).usage.dynamodb_write_units == pytest.approx(9)
    assert idempotency_in_accepted_record(base) == base


def test_beyond_the_list_the_accepted_record_the_claims_and_the_intake_can_go():
    base = three_push_devices()
    assert bill_of(no_accepted_record(base)).usage.dynamodb_write_units == pytest.approx(8)
    assert bill_of(outcome_without_claim(base)).usage.dynamodb_write_units == pytest.approx(6)
    assert bill_of(no_fan_out_write(base)).usage.dynamodb_write_units == pytest.approx(7)

    # Fan-out in the API: no fan-out invocation, no intake send, receive or delete
    inline = fan_out_in_the_api(base)
    assert not [i for i in inline.invocations if i.handler == "fanout"]
    assert not [c for c in inline.mapping if c.resource == "IntakeQueue"]
    assert calls(inline, "api", "sns", "PublishBatch") == 10
    assert bill_of(inline).usage.sqs_requests == pytest.approx(0.6)
    assert bill_of(inline).own[DYNAMODB] == pytest.approx(bill_of(base).own[DYNAMODB])


def test_a_path_applies_each_lever_on_top_of_the_ones_before():
    steps = path_of(three_push_devices(), LEVERS, bill_of)

    # Then each step's saving is the difference of the totals around it, and they add up
    start = bill_of(three_push_devices()).total
    assert sum(step.saves for step in steps) == pytest.approx(start - steps[-1].total)
    assert all(step.saves >= 0 for step in steps)
    # And the same path twice gives the same figures
    assert [(s.saves, s.total) for s in steps] == [
        (s.saves, s.total) for s in path_of(three_push_devices(), LEVERS, bill_of)
    ]


def as_built(devices: int = 3) -> Recording:
    """What the design as built does for 10 notifications to a user with `devices` push devices: one
    intake batch of 10, one deliver batch holding all their deliveries (the normal lane's window), a
    claim and an outcome per notification, each page's record in the recipient's history."""
    n = 10
    api = Invocation(
        "ApiFunction",
        "api",
        0,
        1,
        1,
        (CallCount("dynamodb", "PutItem", "StatusTable", 1, 1), CallCount("sqs", "SendMessage", "IntakeQueue", 1, 1)),
    )
    publishes = -(-n * devices // 10)
    fanout = Invocation(
        "FanoutFunction",
        "fanout",
        n,
        n,
        1,
        (
            CallCount("dynamodb", "Query", "DevicesTable", n, n / 2),
            CallCount("dynamodb", "UpdateItem", "HistoryTable", n, n),  # the page record, the history entry too
            CallCount("sns", "PublishBatch", "NotificationsTopic", publishes, publishes),
        ),
    )
    deliver = Invocation(
        "DeliverNormalFunction",
        "deliver",
        n * devices,
        n,
        10,
        (
            CallCount("dynamodb", "UpdateItem", "StatusTable", 2 * n, 2 * n),
            CallCount("sns", "Publish", "endpoint", n * devices, n * devices),
        ),
    )
    receives = -(-n * devices // 10)
    return Recording(
        case=f"{devices} push devices each",
        notifications=n,
        deliveries=n * devices,
        invocations=(*[api] * n, fanout, deliver),
        mapping=(
            CallCount("sqs", "ReceiveMessage", "IntakeQueue", 1, 1),
            CallCount("sqs", "DeleteMessageBatch", "IntakeQueue", 1, 1),
            CallCount("sqs", "ReceiveMessage", "NormalQueue", receives, receives),
            CallCount("sqs", "DeleteMessageBatch", "NormalQueue", receives, receives),
        ),
        memory_mb=MEMORY,
        architecture=ARM,
        fills={"FanoutFunctionIntakeQueue": n, "DeliverNormalFunctionNormalQueue": n * devices},
    )


def test_group_jobs_make_one_message_per_notification_and_keep_its_status_writes():
    # Given the design as built: 30 jobs for 10 notifications of 3 push devices, 3 receives and 3 deletes
    before = as_built()

    # When each recipient's devices of a channel travel as one job
    after = group_jobs(before)

    # Then the fan-out publishes 10 entries (1 PublishBatch, not 3), the deliver batch holds 10 records,
    # the normal queue takes 1 receive and 1 delete; the status writes and provider calls are the same
    assert calls(after, "fanout", "sns", "PublishBatch") == 1
    assert [i.records for i in after.invocations if i.handler == "deliver"] == [10]
    assert {c.operation: c.calls for c in after.mapping if c.resource == "NormalQueue"} == {
        "ReceiveMessage": 1,
        "DeleteMessageBatch": 1,
    }
    assert after.fills["DeliverNormalFunctionNormalQueue"] == 10
    assert bill_of(after).usage.sqs_requests == pytest.approx(1 + 0.2 + 0.2)
    assert bill_of(after).usage.sns_requests == pytest.approx(0.1)
    assert bill_of(after).usage.dynamodb_write_units == bill_of(before).usage.dynamodb_write_units
    assert calls(after, "deliver", "sns", "Publish") == 30
    # And less CPU: 20 records fewer in the deliver batch
    assert bill_of(after).own[SQS] < bill_of(before).own[SQS]
    assert sum(bill_of(after).usage.lambda_gb_seconds.values()) < sum(bill_of(before).usage.lambda_gb_seconds.values())


def test_group_jobs_change_nothing_with_one_device_each():
    one = as_built(devices=1)
    assert group_jobs(one) == one
