"""A broadcast's counts: each deliver invocation's tally of what it changed, and changes a dead invocation lost."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from herald.adapters.status_views import tally_counts
from herald.logic.delivery import UNPARKED_COPY, Outcome, RetryPolicy, deliver
from herald.logic.tallies import TallySheet
from herald.models.domain import DeliveryJob, now
from herald.models.failures import DeliveryFailed
from tests.fakes import FakeDeviceRegistry, FakeSender, FakeStatusStore

POLICY = RetryPolicy(max_attempts=5, base=1, cap=1, draw=lambda: 0.0)
PAGE = "03.000007"


def deadline(seconds: int = 30) -> datetime:
    return now() + timedelta(seconds=seconds)


@pytest.fixture
def paged(job: DeliveryJob) -> DeliveryJob:
    """The sample in-app job, as a broadcast's page publishes it."""
    return job.model_copy(update={"page": PAGE})


def run(job, status, tally, sender=None, attempt=1, until=None, record="message-1", parked_at=None):
    senders = {job.channel: sender or FakeSender()}
    return deliver(
        job,
        attempt,
        until or deadline(),
        senders,
        status,
        FakeDeviceRegistry(),
        POLICY,
        parked_at,
        tally,
        record,
    )


def written(status: FakeStatusStore, tally: TallySheet) -> None:
    """What the deliver handler does once its batch is handled."""
    for page in tally.tallies():
        status.record_tally(page.notification_id, page.page, tally.invocation, page.counts, page.recovered)


def counts(status: FakeStatusStore, planned: int = 1) -> dict[str, int]:
    return tally_counts(status.tallies.values(), planned)


def test_a_broadcast_delivery_sent_is_counted_in_its_invocations_tally_for_its_page(paged):
    # Given a delivery of a broadcast's page, and an invocation's tally sheet
    status, tally = FakeStatusStore(), TallySheet("invocation-1")

    # When it is delivered and the invocation writes its tallies
    assert run(paged, status, tally).outcome is Outcome.SENT
    written(status, tally)

    # Then one tally of that page says one sent, and the delivery is marked with the invocation that changed it
    assert status.tallies == {(paged.notification_id, PAGE, "invocation-1"): {"counts": {"sent": 1}, "recovered": {}}}
    assert status.markers[(paged.notification_id, paged.delivery_id)].by == "invocation-1"
    assert counts(status) == {"sent": 1}


def test_a_delivery_of_a_notification_of_one_page_is_not_tallied(job):
    # Given a delivery whose job names no page (its notification had one)
    status, tally = FakeStatusStore(), TallySheet("invocation-1")

    # When it is delivered
    run(job, status, tally)

    # Then nothing is tallied or marked: its status is read from its own item
    assert tally.tallies() == [] and status.markers == {}


def test_a_retried_delivery_moves_from_retrying_to_sent_across_two_invocations(paged):
    # Given a delivery whose first attempt failed transiently in one invocation
    status = FakeStatusStore()
    first = TallySheet("invocation-1")
    assert run(paged, status, first, FakeSender(DeliveryFailed("throttled"))).outcome is Outcome.RETRY
    written(status, first)
    assert counts(status) == {"retrying": 1}

    # When a second invocation sends it
    second = TallySheet("invocation-2")
    run(paged, status, second, attempt=2, record="message-1")
    written(status, second)

    # Then the second tally moved it out of retrying into sent, with no lookup of the first (it wrote its tally)
    assert status.tallies[(paged.notification_id, PAGE, "invocation-2")]["counts"] == {"retrying": -1, "sent": 1}
    assert counts(status) == {"sent": 1}


def test_a_redriven_dead_letter_moves_from_dead_lettered_to_sent(paged):
    # Given a delivery dead-lettered by its last attempt
    status = FakeStatusStore()
    for attempt in range(1, 6):
        tally = TallySheet(f"invocation-{attempt}")
        run(paged, status, tally, FakeSender(DeliveryFailed("down")), attempt=attempt)
        written(status, tally)
    assert counts(status) == {"dead_lettered": 1}

    # When an operator redrives it (the parked message, marked when it was parked) and it is sent
    tally = TallySheet("invocation-redrive")
    assert run(paged, status, tally, attempt=1, parked_at=now()).outcome is Outcome.SENT
    written(status, tally)

    # Then it counts as sent only
    assert counts(status) == {"sent": 1}


def test_a_stray_copy_of_a_dead_lettered_broadcast_delivery_is_parked_and_counted_in_no_tally(paged):
    # Given a broadcast's delivery dead-lettered by its last attempt, its tallies written
    status = FakeStatusStore()
    for attempt in range(1, 6):
        tally = TallySheet(f"invocation-{attempt}")
        run(paged, status, tally, FakeSender(DeliveryFailed("down")), attempt=attempt)
        written(status, tally)

    # When a copy of its job that Herald never parked (no herald-dead-lettered-at) comes in
    tally, sender = TallySheet("invocation-stray"), FakeSender()
    result = run(paged, status, tally, sender, attempt=1)
    written(status, tally)

    # Then it is parked unsent, and the counts still hold the one dead letter, with no redrive counted
    assert (result.outcome, result.reason) == (Outcome.DEAD_LETTER, UNPARKED_COPY)
    assert sender.tried == []
    assert counts(status) == {"dead_lettered": 1}
    assert status.delivery(paged.notification_id, paged.delivery_id).redrives == 0


def test_a_change_whose_invocation_died_before_its_tally_is_made_up_once_by_whoever_finds_it(paged):
    # Given an invocation that sent the delivery, recorded it, and died before writing its tally
    status = FakeStatusStore()
    died = TallySheet("invocation-died")
    run(paged, status, died, until=deadline(-1))  # its deadline has passed by now

    # When two duplicates of the message come back to two invocations, each writing its tally
    for name in ("invocation-2", "invocation-3"):
        tally = TallySheet(name)
        assert run(paged, status, tally).outcome is Outcome.ALREADY_DONE
        written(status, tally)

    # Then both made the lost change up, under one key, and the reader counts it once
    recovered = [t["recovered"] for t in status.tallies.values()]
    assert recovered == [{f"invocation-died|{paged.delivery_id}": {"sent": 1}}] * 2
    assert counts(status) == {"sent": 1}
    assert "status.tally_exists" in status.journal


def test_nothing_is_made_up_for_an_invocation_that_wrote_its_tally_or_may_still_be_running(paged):
    # Given one invocation that sent a delivery and wrote its tally, and one still within its deadline
    status = FakeStatusStore()
    done = TallySheet("invocation-done")
    run(paged, status, done, until=deadline(-1))
    written(status, done)
    other = paged.model_copy(update={"device_id": "phone"})
    running = TallySheet("invocation-running")
    run(other, status, running, until=deadline(60))

    # When duplicates of both come back
    tally = TallySheet("invocation-2")
    run(paged, status, tally)
    run(other, status, tally, record="message-2")
    written(status, tally)

    # Then nothing is recovered: the first is in a tally, the second's invocation may still write its own
    assert all(not t["recovered"] for t in status.tallies.values())
    assert counts(status, planned=2) == {"sent": 1, "queued": 1}


def test_counts_of_a_broadcast_are_its_tallies_against_what_its_pages_planned():
    # Given tallies of two invocations, one of which made up a change a third one lost
    tallies = [
        {"counts": {"sent": 5, "retrying": 2}, "recovered": {}},
        {"counts": {"sent": 3, "retrying": -2, "failed": 1}, "recovered": {"dead|u#d": {"sent": 1}}},
        {"counts": {"dead_lettered": 1}, "recovered": {"dead|u#d": {"sent": 1}}},
    ]

    # When they are read against 20 planned deliveries
    result = tally_counts(tallies, planned=20)

    # Then each status is summed, the recovered change counted once, and the rest is queued
    assert result == {"sent": 9, "failed": 1, "dead_lettered": 1, "queued": 9}
