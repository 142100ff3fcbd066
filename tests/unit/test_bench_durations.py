"""The Lambda duration model: CPU stretched by memory, waits by service, overlapping across parallel sends."""

from __future__ import annotations

import pytest

from bench.durations import DurationModel, Work, cpu_stretch, gb_seconds

MODEL = DurationModel(
    invocation_cpu_ms=2.0,
    record_cpu_ms=1.0,
    call_cpu_ms=1.0,
    wait_ms={("dynamodb", ""): 5.0, ("sqs", ""): 8.0, ("sns", ""): 15.0, ("sns", "endpoint"): 30.0},
)


def test_cpu_is_stretched_below_one_vcpu_and_never_shrunk_above():
    assert cpu_stretch(1769) == 1.0
    assert cpu_stretch(256) == pytest.approx(1769 / 256)
    assert cpu_stretch(128) == pytest.approx(2 * 1769 / 256)
    assert cpu_stretch(3538) == 1.0


def test_an_api_request_is_its_cpu_at_its_memory_plus_its_calls_waits():
    # Given an API invocation that writes one item and sends one message
    work = Work("ApiFunction", 0, {("dynamodb", "PutItem", "StatusTable"): 1, ("sqs", "SendMessage", "IntakeQueue"): 1})

    # Then (2 + 0 + 2 x 1) ms of CPU take 4 x 1769/256 ms at 256 MB, and it waits 5 + 8 ms
    assert MODEL.duration_ms(work, 256) == pytest.approx(4 * 1769 / 256 + 13)
    assert MODEL.billed_ms(work, 256) == 41  # 40.64 rounded up to the millisecond


def test_a_resource_without_its_own_wait_waits_as_its_service():
    assert MODEL.wait_of("sns", "NotificationsTopic") == 15.0
    assert MODEL.wait_of("sns", "endpoint") == 30.0
    assert MODEL.wait_of("ses", "") == 0.0  # not in this model's table


def test_a_deliver_batch_overlaps_its_records_waits_across_its_lanes_but_not_its_cpu():
    # Given 10 push deliveries (a claim, a provider call, an outcome each)
    calls = {("dynamodb", "UpdateItem", "StatusTable"): 20, ("sns", "Publish", "endpoint"): 10}
    one_lane = Work("DeliverNormalFunction", 10, calls, lanes=1)
    ten_lanes = Work("DeliverNormalFunction", 10, calls, lanes=10)

    # Then the waits (400 ms in all) are divided by the lanes; the CPU (2 + 10 + 30 ms) is not
    cpu = 42 * 1769 / 256
    assert MODEL.duration_ms(one_lane, 256) == pytest.approx(cpu + 400)
    assert MODEL.duration_ms(ten_lanes, 256) == pytest.approx(cpu + 40)


def test_more_lanes_than_records_overlap_only_the_records():
    work = Work("DeliverNormalFunction", 2, {("sns", "Publish", "endpoint"): 2}, lanes=10)
    assert MODEL.waits_ms(work) == pytest.approx(30.0)


def test_at_less_memory_cpu_costs_the_same_gb_seconds_and_waits_cost_less():
    # Given an invocation with 10 ms of CPU and 100 ms of waits
    model = DurationModel(invocation_cpu_ms=10.0, record_cpu_ms=0.0, call_cpu_ms=0.0, wait_ms={("sns", ""): 100.0})
    work = Work("FanoutFunction", 1, {("sns", "PublishBatch", "NotificationsTopic"): 1})

    # When it runs at 256 MB and at 128 MB
    at_256 = gb_seconds(model.duration_ms(work, 256), 256)
    at_128 = gb_seconds(model.duration_ms(work, 128), 128)

    # Then the CPU part is 10 ms x 1769/1024 GB-ms either way, the waits' part halves
    cpu_part = 10 * 1769 / 1024 / 1000
    assert at_256 == pytest.approx(cpu_part + 0.1 * 256 / 1024)
    assert at_128 == pytest.approx(cpu_part + 0.1 * 128 / 1024)


def test_gb_seconds_are_milliseconds_times_memory():
    assert gb_seconds(1000, 256) == pytest.approx(0.25)
