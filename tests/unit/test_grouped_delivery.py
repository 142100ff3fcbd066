"""Grouped status writes: the claim rule of one device's entry, a recipient's deliveries claimed and recorded
together (one write each), partial failures per device, and the consumer's units of a batch."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald.adapters.consumer import Consumer, Done, QueueRecord, Verdict
from herald.adapters.status import _entry_item, entry_of
from herald.logic.delivery import Outcome, Received, RetryPolicy, deliver_together
from herald.logic.failures import failure_from
from herald.models.domain import Channel, DeliveryJob, DeliveryState, now
from herald.models.status import ClaimRequest, DeliveryEntry, claim_entry, millis
from tests.fakes import FakeDeviceRegistry, FakeSender, FakeSqs, FakeStatusStore

POLICY = RetryPolicy(max_attempts=5, base=2, cap=60, draw=lambda: 0.5)


def email_job(device: str, user: str = "ada", notification: str = "n-1") -> DeliveryJob:
    return DeliveryJob(
        notification_id=notification,
        user_id=user,
        device_id=device,
        channel=Channel.EMAIL,
        address=f"{user}-{device}@example.com",
        title="t",
        body="b",
        priority="high",
        accepted_at="2026-11-30T08:00:00+00:00",
    )


def deadline(seconds: int = 30) -> datetime:
    return now() + timedelta(seconds=seconds)


class SenderFailingFor(FakeSender):
    """Sends, but raises `errors[device]` for the devices named."""

    def __init__(self, errors: dict[str, Exception]):
        super().__init__()
        self.errors = errors

    def send(self, job: DeliveryJob) -> str:
        if job.device_id in self.errors:
            self.tried.append(job)
            raise self.errors[job.device_id]
        return super().send(job)


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "SendEmail")


def rejected() -> ClientError:
    return ClientError({"Error": {"Code": "MessageRejected", "Message": "no mailbox"}}, "SendEmail")


# ---------------------------------------------------------------- one device's claim rule


def test_a_new_delivery_is_claimed_with_its_first_attempt_and_version():
    # Given a delivery never claimed
    request = ClaimRequest(email_job("mail-1"))
    at, until = now(), deadline()

    # When it is claimed
    claim, entry = claim_entry(None, request, at, until)

    # Then the claim is granted, first attempt, and the entry says sending until the deadline
    assert (claim.granted, claim.attempt, claim.version, claim.taken_over) == (True, 1, 1, False)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.round_attempts, entry.claimed_until) == (
        DeliveryState.SENDING,
        1,
        1,
        millis(until),
    )
    assert entry.queued_at == millis(request.job.accepted_at)


@pytest.mark.parametrize("status", [DeliveryState.SENT, DeliveryState.FAILED])
def test_a_finished_delivery_is_refused_as_done(status):
    # Given a delivery sent (or failed) at version 2
    old = DeliveryEntry(status=status, channel=Channel.EMAIL, attempts=1, version=2)

    # When a copy asks to claim it
    claim, entry = claim_entry(old, ClaimRequest(email_job("mail-1")), now(), deadline())

    # Then it is done, and nothing is written
    assert (claim.granted, claim.done, claim.dead_lettered, entry) == (False, True, False, None)


def test_a_live_claim_makes_a_copy_wait_until_it_expires_and_an_expired_one_is_taken_over():
    # Given a delivery held by another invocation for 20 more seconds
    held_until = deadline(20)
    old = DeliveryEntry(status=DeliveryState.SENDING, attempts=1, round_attempts=1, version=1)
    live = DeliveryEntry(**{**old.__dict__, "claimed_until": millis(held_until)})
    expired = DeliveryEntry(**{**old.__dict__, "claimed_until": millis(now()) - 1})

    # When a copy asks while it is held, and after it expired
    busy, nothing = claim_entry(live, ClaimRequest(email_job("mail-1")), now(), deadline())
    taken, entry = claim_entry(expired, ClaimRequest(email_job("mail-1")), now(), deadline())

    # Then the first waits for the holder, the second takes the claim over (its second attempt)
    assert (busy.granted, busy.done, nothing) == (False, False, None)
    assert 20 <= busy.busy_for() <= 21
    assert (taken.granted, taken.taken_over, taken.attempt, taken.version) == (True, True, 2, 2)
    assert entry is not None and entry.attempts == 2


def test_only_a_parked_copy_no_older_than_the_dead_lettering_revives_a_dead_letter():
    # Given a delivery dead-lettered at a known moment
    dead_at = now() - timedelta(seconds=10)
    old = DeliveryEntry(status=DeliveryState.DEAD_LETTERED, attempts=5, round_attempts=0, version=6,
                        dead_lettered_at=millis(dead_at))  # fmt: skip
    job = email_job("mail-1")

    # When a stray copy (no mark), a copy parked in an earlier round, and the operator's redrive ask
    stray, _ = claim_entry(old, ClaimRequest(job), now(), deadline())
    earlier, _ = claim_entry(old, ClaimRequest(job, parked_at=dead_at - timedelta(seconds=60)), now(), deadline())
    redrive, entry = claim_entry(old, ClaimRequest(job, parked_at=dead_at + timedelta(seconds=1)), now(), deadline())

    # Then only the redrive is granted, as a redrive with a fresh round of attempts
    assert (stray.done, stray.dead_lettered, earlier.done, earlier.dead_lettered) == (True, True, True, True)
    assert (redrive.granted, redrive.redriven, redrive.attempt) == (True, True, 1)
    assert entry is not None and entry.attempts == 6


def test_a_claim_for_a_tally_marks_the_entry_and_finds_a_dead_invocations_change():
    # Given a delivery whose claim by invocation "dead" (over since a second) moved it to retrying uncounted
    gone = millis(now()) - 1000
    old = DeliveryEntry(status=DeliveryState.RETRYING, version=2, tally_by="dead", tally_until=gone, tally_from="-")

    # When invocation "alive" claims it for its tally
    claim, entry = claim_entry(old, ClaimRequest(email_job("mail-1"), invocation="alive"), now(), deadline())

    # Then the lost change is reported, and the entry now names "alive", from retrying
    assert claim.unsettled is not None
    assert (claim.unsettled.by, claim.unsettled.from_state, claim.unsettled.to_state) == (
        "dead",
        None,
        DeliveryState.RETRYING,
    )
    assert entry is not None and (entry.tally_by, entry.tally_from) == ("alive", "retrying")


def test_an_entry_reads_back_as_it_was_written_in_few_bytes():
    # Given a sent delivery's entry, with every field a delivery can carry
    entry = DeliveryEntry(
        status=DeliveryState.SENT, channel=Channel.PUSH, attempts=3, round_attempts=1, version=7, queued_at=1,
        updated_at=2, provider_message_id="m" * 36, last_error="e", dead_lettered_at=3, redrives=1, redriven_at=4,
        tally_by="inv", tally_until=5, tally_from="-",
    )  # fmt: skip

    # When it is written as a DynamoDB map and read back
    item = _entry_item(entry)

    # Then it is the same entry, under one- or two-letter names
    assert entry_of(item) == entry
    assert all(len(name) <= 2 for name in item)


# ---------------------------------------------------------------- a recipient's deliveries together


def test_a_recipients_three_deliveries_take_one_claim_and_one_outcome_write():
    # Given three email deliveries of one notification to ada
    status, sender = FakeStatusStore(), FakeSender()
    jobs = [email_job(device) for device in ("mail-1", "mail-2", "mail-3")]

    # When they are delivered together
    results = deliver_together(
        [Received(job) for job in jobs], deadline(), {Channel.EMAIL: sender}, status, FakeDeviceRegistry(), POLICY
    )

    # Then each is sent once, with one claim and one outcome write for the three
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert sorted(j.device_id for j in sender.sent) == ["mail-1", "mail-2", "mail-3"]
    assert status.delivery_writes == [("claim", "n-1", "ada"), ("record", "n-1", "ada")]


def test_a_partial_failure_is_recorded_per_device_and_only_the_failed_one_is_retried():
    # Given ada's three deliveries: the second throttled, the third rejected for good
    status = FakeStatusStore()
    sender = SenderFailingFor({"mail-2": throttled(), "mail-3": rejected()})
    jobs = [email_job(device) for device in ("mail-1", "mail-2", "mail-3")]

    # When they are delivered together
    results = deliver_together(
        [Received(job) for job in jobs], deadline(), {Channel.EMAIL: sender}, status, FakeDeviceRegistry(), POLICY
    )

    # Then the first is sent, the second comes back after a backoff, the third failed for good
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.RETRY, Outcome.FAILED]
    assert results[1].retry_in > 0
    assert [status.delivery("n-1", f"ada#{d}").status for d in ("mail-1", "mail-2", "mail-3")] == [
        DeliveryState.SENT,
        DeliveryState.RETRYING,
        DeliveryState.FAILED,
    ]

    # When the second returns with a stray copy of the first, the provider now taking it
    fine = FakeSender()
    again = deliver_together(
        [Received(jobs[1], attempt=2), Received(jobs[0], attempt=1)],
        deadline(),
        {Channel.EMAIL: fine},
        status,
        FakeDeviceRegistry(),
        POLICY,
    )

    # Then only the second reaches the provider again
    assert [r.outcome for r in again] == [Outcome.SENT, Outcome.ALREADY_DONE]
    assert [j.device_id for j in fine.tried] == ["mail-2"]


def test_a_second_copy_in_the_same_group_waits_for_the_first():
    # Given two copies of one delivery and a second delivery, together
    status, sender = FakeStatusStore(), FakeSender()
    one, two = email_job("mail-1"), email_job("mail-2")

    # When they are delivered together
    results = deliver_together(
        [Received(one), Received(one), Received(two)],
        deadline(),
        {Channel.EMAIL: sender},
        status,
        FakeDeviceRegistry(),
        POLICY,
    )

    # Then the copy comes back (the delivery was claimed by the first), and each device got one send
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.RETRY, Outcome.SENT]
    assert sorted(j.device_id for j in sender.sent) == ["mail-1", "mail-2"]


def test_a_crash_during_a_groups_sends_records_nothing_and_the_returning_copies_do_not_send_again():
    # Given ada's three deliveries, and a provider call that ends the process on the second
    class Crash(BaseException):
        pass

    status = FakeStatusStore()
    crashing = SenderFailingFor({"mail-2": Crash()})  # type: ignore[dict-item]
    jobs = [email_job(device) for device in ("mail-1", "mail-2", "mail-3")]
    with pytest.raises(Crash):
        deliver_together(
            [Received(job) for job in jobs], deadline(-1), {Channel.EMAIL: crashing}, status, FakeDeviceRegistry(),
            POLICY,
        )  # fmt: skip
    assert status.delivery_writes == [("claim", "n-1", "ada")]  # no outcome written

    # When the messages return after the claims expired
    fine = FakeSender()
    results = deliver_together(
        [Received(job, attempt=2) for job in jobs], deadline(), {Channel.EMAIL: fine}, status, FakeDeviceRegistry(),
        POLICY,
    )  # fmt: skip

    # Then none is sent again: each is failed, "outcome unknown" (email may have reached its provider)
    assert fine.tried == []
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert all((r.reason or "").startswith("outcome unknown") for r in results)


# ---------------------------------------------------------------- the consumer's units


def record(n: int) -> QueueRecord:
    return QueueRecord(f"m-{n}", f"r-{n}", f"{n}", {}, 1)


def test_a_batchs_records_are_handled_by_group_and_a_group_is_cut_at_its_lanes_limit():
    # Given a batch of five records: three of group "a" (lane "sms", limit 2), two of group "b" (lane "push")
    groups = {"1": "a", "2": "b", "3": "a", "4": "a", "5": "b"}
    lanes = {"a": "sms", "b": "push"}
    units: list[list[str]] = []
    lock = threading.Lock()
    running = {"sms": 0, "push": 0}
    most = {"sms": 0, "push": 0}

    def handle_group(unit: list[tuple[QueueRecord, str]]) -> list[Verdict]:
        lane = lanes[groups[unit[0][1]]]
        with lock:
            units.append([item for _, item in unit])
            running[lane] += len(unit)
            most[lane] = max(most[lane], running[lane])
        time.sleep(0.05)
        with lock:
            running[lane] -= len(unit)
        return [Done() for _ in unit]

    consumer = consumer_of(
        parallel=4,
        lane_of=lambda item: lanes[groups[item]],
        lane_limits={"sms": 2, "push": 4},
        group_of=lambda item: groups[item],
        handle_group=handle_group,
    )

    # When it processes the batch
    outcome = consumer.process({"Records": [{"messageId": f"m-{n}", "body": str(n)} for n in range(1, 6)]})

    # Then group "a" is two units (2, then 1), "b" one unit of 2, and no lane ever exceeded its limit
    assert outcome.failed == []
    assert sorted(units) == [["1", "3"], ["2", "5"], ["4"]]
    assert most["sms"] <= 2 and most["push"] <= 4


def test_a_group_whose_handling_raised_settles_each_of_its_records():
    # Given a group whose status write raised a transient error
    def handle_group(unit: list[tuple[QueueRecord, str]]) -> list[Verdict]:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "UpdateItem")

    consumer = consumer_of(
        parallel=4,
        group_of=lambda item: "a",
        handle_group=handle_group,
    )

    # When it processes a batch of two of that group
    outcome = consumer.process({"Records": [{"messageId": f"m-{n}", "body": str(n)} for n in (1, 2)]})

    # Then both records come back
    assert sorted(outcome.failed) == ["m-1", "m-2"]


def test_a_group_of_several_channels_is_one_unit_cut_only_where_a_lane_would_overflow():
    # Given one recipient's four records on two lanes: sms (limit 1) and push (limit 4), in the order s, p, s, p
    lanes = {"1": "sms", "2": "push", "3": "sms", "4": "push"}
    units: list[list[str]] = []

    def handle_group(unit: list[tuple[QueueRecord, str]]) -> list[Verdict]:
        units.append([item for _, item in unit])
        return [Done() for _ in unit]

    consumer = consumer_of(
        parallel=10,
        lane_of=lambda item: lanes[item],
        lane_limits={"sms": 1, "push": 4},
        group_of=lambda item: "ada",
        handle_group=handle_group,
    )

    # When it processes the batch
    consumer.process({"Records": [{"messageId": f"m-{n}", "body": str(n)} for n in range(1, 5)]})

    # Then the group is cut where a second sms would join: two units of an sms and a push each
    assert sorted(units) == [["1", "2"], ["3", "4"]]


@pytest.mark.parametrize(
    ("ways", "named"),
    [
        ({"parse": None}, "parse and parse_all"),
        ({"parse": str, "parse_all": lambda body: [body]}, "parse and parse_all"),
        ({"handle": None}, "handle and handle_group"),
        ({"handle": lambda r, item: Done(), "handle_group": lambda unit: []}, "handle and handle_group"),
    ],
    ids=["no reader", "two readers", "no handler", "two handlers"],
)
def test_a_consumer_is_told_how_to_read_and_handle_its_records_exactly_once(ways: dict[str, Any], named: str) -> None:
    # Given a consumer given neither way to read a record's body (or to handle its items), or both
    # When it is made
    # Then it refuses, naming the two
    with pytest.raises(TypeError, match=named):
        consumer_of(**ways)


def consumer_of(**settings: Any) -> Consumer[str]:
    """A consumer of string records (read with `str` unless told otherwise) on a fake queue, set as `settings` say."""
    if "parse_all" not in settings:
        settings.setdefault("parse", str)
    if "handle_group" not in settings:
        settings.setdefault("handle", lambda r, item: Done())
    return Consumer(
        dead_letters=None,  # type: ignore[arg-type]
        sqs=FakeSqs(),
        queue_url="q",
        max_receive_count=5,
        classify=failure_from,
        **settings,
    )
