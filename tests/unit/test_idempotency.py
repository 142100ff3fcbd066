"""Idempotency keys: the first answer is replayed, a conflicting reuse refused, an abandoned claim taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.logic.idempotency import IdempotentRequests, KeyReusedWithAnotherRequest, RequestInProgress, request_hash
from herald.logic.sending import accept_notification, accept_once
from herald.models.api import NotificationRequest
from herald.models.idempotency import IdempotencyRecord, RecordState, StoredResponse
from tests.fakes import FakeIdempotencyStore, FakeIntakeQueue, FakeStatusStore

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = "caller-1#order-1042-shipped"
LEASE = 10.0


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class Work:
    """The work behind a key: answers 202 with the resource id it was given, and counts its runs."""

    def __init__(self, error: Exception | None = None):
        self.runs: list[str] = []
        self.error = error

    def __call__(self, resource_id: str) -> StoredResponse:
        self.runs.append(resource_id)
        if self.error is not None:
            raise self.error
        return StoredResponse(status_code=202, body=f'{{"notification_id":"{resource_id}"}}')


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeIdempotencyStore:
    return FakeIdempotencyStore()


@pytest.fixture
def idempotent(store: FakeIdempotencyStore, clock: Clock) -> IdempotentRequests:
    ids = iter(f"id-{n}" for n in range(1, 100))
    return IdempotentRequests(store, clock=clock, new_id=lambda: next(ids))


def test_a_repeat_gets_the_first_answer_and_the_work_runs_once(idempotent: IdempotentRequests) -> None:
    # Given a request done once with a key
    work = Work()
    first = idempotent.run(KEY, "hash-a", LEASE, work)

    # When the same request comes again with the same key
    again = idempotent.run(KEY, "hash-a", LEASE, work)

    # Then it gets the very same answer, and the work ran only the first time
    assert again == first == StoredResponse(status_code=202, body='{"notification_id":"id-1"}')
    assert work.runs == ["id-1"]


def test_the_same_key_with_another_request_is_refused_and_does_nothing(idempotent: IdempotentRequests) -> None:
    # Given a key used for one request
    work = Work()
    idempotent.run(KEY, "hash-a", LEASE, work)

    # When it comes with a different request
    with pytest.raises(KeyReusedWithAnotherRequest):
        idempotent.run(KEY, "hash-b", LEASE, work)

    # Then nothing more was done
    assert work.runs == ["id-1"]


def test_a_repeat_while_the_first_is_still_running_is_told_when_to_retry(
    idempotent: IdempotentRequests, store: FakeIdempotencyStore, clock: Clock
) -> None:
    # Given a first request that claimed its key 4 s ago with a 10 s lease and is still working
    def slow_first(resource_id: str) -> StoredResponse:
        clock.advance(seconds=4)
        with pytest.raises(RequestInProgress) as raised:
            idempotent.run(KEY, "hash-a", LEASE, repeat)
        retry_afters.append(raised.value.retry_after)
        return StoredResponse(status_code=202, body="{}")

    repeat, retry_afters = Work(), []

    # When a repeat arrives meanwhile
    idempotent.run(KEY, "hash-a", LEASE, slow_first)

    # Then the repeat did nothing and was told to come back when the lease ends
    assert repeat.runs == []
    assert retry_afters == [6]
    assert store.records[KEY].state is RecordState.COMPLETED


def test_a_claim_whose_lease_ran_out_is_taken_over_with_the_same_resource_id(
    idempotent: IdempotentRequests, store: FakeIdempotencyStore, clock: Clock
) -> None:
    # Given a claim left in progress by an attempt that crashed 11 s ago (its lease was 10 s)
    store.records[KEY] = IdempotencyRecord(
        key=KEY,
        request_hash="hash-a",
        state=RecordState.IN_PROGRESS,
        resource_id="id-of-the-crashed-attempt",
        expires_at=int(START.timestamp()) + 86_400,
        locked_until=int(START.timestamp()) - 1,
    )
    work = Work()

    # When the request is repeated
    answer = idempotent.run(KEY, "hash-a", LEASE, work)

    # Then the work is redone under the crashed attempt's id, so downstream sees one resource, not two
    assert work.runs == ["id-of-the-crashed-attempt"]
    assert answer.body == '{"notification_id":"id-of-the-crashed-attempt"}'
    assert store.records[KEY].state is RecordState.COMPLETED


def test_a_key_is_free_again_after_24_hours_even_if_its_record_was_not_removed_yet(
    idempotent: IdempotentRequests, store: FakeIdempotencyStore, clock: Clock
) -> None:
    # Given a key used once, and its record still in the store (TTL deletes lazily)
    work = Work()
    idempotent.run(KEY, "hash-a", LEASE, work)

    # When it is used 23 h 59 min later, then 24 h later
    clock.advance(hours=23, minutes=59)
    within = idempotent.run(KEY, "hash-a", LEASE, work)
    clock.advance(minutes=1)
    after = idempotent.run(KEY, "hash-b", LEASE, work)

    # Then within 24 h it replays; at 24 h it is a new request, even with another body
    assert within.body == '{"notification_id":"id-1"}'
    assert after.body == '{"notification_id":"id-3"}'
    assert work.runs == ["id-1", "id-3"]


def test_failed_work_frees_the_key_so_a_retry_can_proceed(
    idempotent: IdempotentRequests, store: FakeIdempotencyStore
) -> None:
    # Given work that fails (the intake queue is unreachable, say)
    with pytest.raises(ConnectionError):
        idempotent.run(KEY, "hash-a", LEASE, Work(error=ConnectionError("intake queue unreachable")))

    # When the caller retries at once
    answer = idempotent.run(KEY, "hash-a", LEASE, Work())

    # Then the retry is not blocked by the failed attempt
    assert answer.status_code == 202
    assert store.records[KEY].state is RecordState.COMPLETED


def test_when_the_answer_cannot_be_stored_the_work_still_answers_and_a_later_repeat_reuses_its_id(
    clock: Clock,
) -> None:
    # Given a store that fails to record the answer
    store = FakeIdempotencyStore(failing_complete=True)
    ids = iter(f"id-{n}" for n in range(1, 100))
    idempotent = IdempotentRequests(store, clock=clock, new_id=lambda: next(ids))
    work = Work()

    # When the request is made, then repeated within its lease, then after it
    first = idempotent.run(KEY, "hash-a", LEASE, work)
    with pytest.raises(RequestInProgress):
        idempotent.run(KEY, "hash-a", LEASE, work)
    clock.advance(seconds=LEASE + 1)
    store.failing_complete = False
    later = idempotent.run(KEY, "hash-a", LEASE, work)

    # Then the first still got its answer, and the later repeat redid the work under the same id
    assert first.body == later.body == '{"notification_id":"id-1"}'
    assert work.runs == ["id-1", "id-1"]


def test_the_request_hash_ignores_key_order_and_spacing_but_not_values() -> None:
    # Given the same request written two ways, and a different one
    one = request_hash({"title": "Hi", "recipients": ["ada"], "data": {"b": 1, "a": 2}})
    same = request_hash({"data": {"a": 2, "b": 1}, "recipients": ["ada"], "title": "Hi"})
    other = request_hash({"title": "Hi", "recipients": ["ada"], "data": {"b": 1, "a": 3}})

    # Then the first two hash alike and the third does not
    assert one == same != other


def test_a_plain_request_keeps_the_fingerprint_it_had_before_templates_categories_and_schedules():
    # Given a plain request, and the fingerprint such a request was stored with before those fields existed
    request = NotificationRequest.model_validate({"recipients": ["ada"], "title": "t", "body": "b"})
    before = {"recipients": ["ada"], "title": "t", "body": "b", "data": {}, "priority": "normal", "channels": None}
    store = FakeIdempotencyStore()

    # When it is accepted with a key
    accept_once(request, "caller#k", FakeStatusStore(), FakeIntakeQueue(), IdempotentRequests(store), 10)

    # Then its record carries that same fingerprint: a retry across the upgrade is a repeat, not a new request
    assert store.records["caller#k"].request_hash == request_hash(before)


def test_an_accept_redone_under_a_recorded_id_carries_the_first_accepted_time() -> None:
    # Given a notification recorded and queued by a first attempt under its id
    status, intake = FakeStatusStore(), FakeIntakeQueue()
    request = NotificationRequest.model_validate({"recipients": ["ada"], "title": "t", "body": "b"})
    first = accept_notification(request, status, intake, notification_id="n-1")

    # When an attempt that took its key over redoes the accept under the same id
    again = accept_notification(request, status, intake, notification_id="n-1")

    # Then the record stands, and the message queued again carries the first accepted time
    assert again.accepted_at == first.accepted_at == status.accepted["n-1"].accepted_at
    assert [queued.accepted_at for queued in intake.sent] == [first.accepted_at, first.accepted_at]
