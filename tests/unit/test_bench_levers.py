"""The levers: each rewrites a recording as the changed design would have made it; hand-checked."""

from __future__ import annotations

import pytest

from bench.cost import bill_of
from bench.levers import (
    LEVERS,
    fan_out_in_the_api,
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
from bench.lockstep import CallCount, Recording
from bench.prices import DYNAMODB, SNS_PUBLISH, SQS
from tests.unit.test_bench_cost import three_push_devices


def calls(recording: Recording, handler: str, service: str, operation: str) -> int:
    return sum(i.count(service, operation) for i in recording.invocations if i.handler == handler)


def test_grouped_status_writes_make_two_writes_per_notification_per_batch():
    # Given deliver batches of 10 deliveries spanning 4 notifications each (3 batches for 10 notifications)
    rewritten = grouped_status_writes(three_push_devices())

    # Then each batch writes 2 x 4 instead of 2 x 10: 24 writes instead of 60, a unit each
    # (a group of 2.5 deliveries is 300 + 2.5 x 150 bytes, under 1 KB)
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
