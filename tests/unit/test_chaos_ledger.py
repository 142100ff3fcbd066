"""The chaos ledger's rules, on hand-made records: what counts as delivered once, lost, sent twice."""

from __future__ import annotations

import random

import pytest

from bench.chaos import DevicePlan, NotificationPlan, devices_for, is_inactive, notifications_for, outcomes_of
from bench.ledger import Category, DeliveryOutcome, build_ledger, categorize


def outcome(device: str = "d", status: str | None = "sent", copies: int = 1, **more: object) -> DeliveryOutcome:
    return DeliveryOutcome("n-1", "u", device, "email", status, provider_records=copies, **more)


@pytest.mark.parametrize(
    ("record", "category"),
    [
        (outcome(status="sent", copies=1), Category.DELIVERED_ONCE),
        (outcome(status="sent", copies=2), Category.SENT_TWICE),
        (outcome(status="failed", copies=3), Category.SENT_TWICE),  # copies outrank any status
        (outcome(status="sent", copies=0), Category.LOST),  # the status store says sent; the provider has nothing
        (outcome(status="queued", copies=0), Category.LOST),  # never reached a final status
        (outcome(status="retrying", copies=0), Category.LOST),
        (outcome(status=None, copies=0), Category.LOST),  # fan-out never recorded it
        (outcome(status=None, copies=0, device_inactive=True), Category.SKIPPED_INACTIVE),
        (outcome(status="failed", copies=0, last_error="MessageRejected: bad"), Category.FAILED_PERMANENTLY),
        (outcome(status="dead_lettered", copies=0, last_error="Throttling"), Category.DEAD_LETTERED),
        (outcome(status="failed", copies=1, last_error="claim expired: outcome unknown"), Category.OUTCOME_UNCONFIRMED),
        (outcome(status="failed", copies=0, last_error="outcome unknown, not resent"), Category.OUTCOME_UNCONFIRMED),
        (outcome(status="failed", copies=1, last_error="InvalidParameter"), Category.STATUS_DISAGREES),
        (outcome(status="retrying", copies=1), Category.STATUS_DISAGREES),
    ],
)
def test_each_delivery_lands_in_one_category(record: DeliveryOutcome, category: Category) -> None:
    assert categorize(record) is category


def test_the_ledger_counts_a_run_and_says_whether_the_promise_holds() -> None:
    # Given a run with one of everything: delivered, redriven then delivered, lost, sent twice, failed
    outcomes = [
        outcome("a"),
        outcome("b", redriven=True),
        outcome("c", status="queued", copies=0),
        outcome("d", copies=2),
        outcome("e", status="failed", copies=0, last_error="MessageRejected"),
        outcome("f", status="dead_lettered", copies=0, redriven=True),
    ]

    # When the ledger is built (8 provider calls, one copy at a provider matching no delivery)
    ledger = build_ledger(outcomes, unplanned_provider_records=1, provider_calls=8)

    # Then each figure is counted once, and the promise is broken by the lost and the duplicated one
    figures = ledger.as_dict()
    assert {k: figures[k] for k in ("accepted", "delivered_once", "lost", "sent_twice", "failed_permanently")} == {
        "accepted": 6,
        "delivered_once": 2,
        "lost": 1,
        "sent_twice": 1,
        "failed_permanently": 1,
    }
    assert (ledger.redriven, ledger.redriven_then_delivered, ledger[Category.DEAD_LETTERED]) == (2, 1, 1)
    assert ledger.delivered == 3 and ledger.provider_calls_per_delivery == pytest.approx(8 / 3, abs=0.001)
    assert ledger.holds is False
    assert [example.split(" ")[0] for example in figures["examples"]["lost"]] == ["n-1/u/c"]
    assert figures["unplanned_provider_records"] == 1


def test_a_clean_run_holds_and_every_delivery_is_counted_once() -> None:
    outcomes = [outcome(f"d{i}") for i in range(5)] + [outcome("x", status="failed", copies=0)]
    ledger = build_ledger(outcomes, unplanned_provider_records=0, provider_calls=5)
    assert ledger.holds is True
    assert sum(ledger.counts.values()) == ledger.accepted == 6
    assert ledger.provider_calls_per_delivery == 1.0
    with pytest.raises(ValueError, match="one outcome per delivery"):
        build_ledger([outcome("a"), outcome("a")], 0, 1)


def test_the_workload_plans_enough_deliveries_to_unique_addresses() -> None:
    # Given 10 users with their devices, When notifications are planned until 200 deliveries
    devices = devices_for(10, "t")
    plans = notifications_for(devices, 200, random.Random(1))

    # Then at least 200 deliveries are planned, each device has its own address, all priorities appear
    assert sum(len(p.deliveries) for p in plans) >= 200
    addresses = [d.address for ds in devices.values() for d in ds if d.address]
    assert len(addresses) == len(set(addresses))
    assert {d.channel for ds in devices.values() for d in ds} == {"email", "sms", "push", "in_app"}
    assert {p.priority for p in plans} == {"high", "normal", "low"}
    assert len({p.body for p in plans}) == len(plans)


def test_outcomes_join_the_plan_and_the_status_store() -> None:
    # Given a notification planned to two devices, one recorded sent and one missing from the status,
    # and a third delivery the status store has but the plan lacks
    plan = NotificationPlan(0, ["u"], "high", [DevicePlan("u", "a", "email"), DevicePlan("u", "b", "sms")], "n-1")
    statuses = {
        "n-1": {
            "deliveries": [
                {"user_id": "u", "device_id": "a", "channel": "email", "status": "sent", "redrives": 1},
                {"user_id": "u", "device_id": "z", "channel": "push", "status": "failed", "last_error": "x"},
            ]
        }
    }

    # Then there is one outcome per delivery either side knows of
    outcomes = {o.device_id: o for o in outcomes_of([plan], statuses)}
    assert (outcomes["a"].status, outcomes["a"].redriven) == ("sent", True)
    assert (outcomes["b"].status, outcomes["b"].channel) == (None, "sms")
    assert (outcomes["z"].status, outcomes["z"].last_error) == ("failed", "x")


def test_a_device_reported_disabled_counts_as_inactive() -> None:
    assert is_inactive({"active": False, "inactive_reason": "EndpointDisabled: Endpoint is disabled"})
    assert not is_inactive({"device_id": "d", "channel": "push"})
