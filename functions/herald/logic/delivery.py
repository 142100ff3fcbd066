"""Delivery: a recipient's jobs through their channels, claimed together first, their outcomes recorded together."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial

from herald.logic.failures import failure_from
from herald.logic.ports import DeviceRegistry, RenderedContent, Senders, StatusStore
from herald.logic.tallies import TallySheet
from herald.logic.templates import resolved
from herald.models.domain import Channel, DeliveryJob, DeliveryState
from herald.models.failures import AlreadyDelivered, DeliveryFailed
from herald.models.status import Claim, ClaimRequest, OutcomeRecord

SQS_MAX_VISIBILITY = 43200  # 12 hours
# Channels whose provider write is idempotent (the inbox item's key is fixed), so a delivery
# whose earlier attempt may or may not have reached the provider can safely be sent again.
IDEMPOTENT_CHANNELS = frozenset({Channel.IN_APP})
# Channels whose provider write is also the delivery's record: the inbox item (its key fixed, its time of
# delivery kept) says the delivery was sent, and the status reads it there. A first try of such a delivery
# makes no status write at all: no claim is needed to send it once (a copy finds the item and leaves it),
# and its outcome, sent, is the item. Only a try that did not send (or a retry, a redrive, a broadcast's
# tallied delivery) is claimed and recorded as any other. docs/reliability.md, "In-app deliveries".
SELF_RECORDING = frozenset({Channel.IN_APP})
OUTCOME_UNKNOWN_AFTER_CALL = (
    "outcome unknown: the provider's answer was lost (it may have accepted the delivery); not sent again,"
    " to avoid a duplicate"
)
UNPARKED_COPY = (
    "a copy of a dead-lettered delivery that Herald had not parked (an SQS duplicate, or moved by the queue's"
    " redrive policy): parked without a send; only an operator's redrive retries the delivery"
)
OUTCOME_UNKNOWN = (
    "outcome unknown: an earlier attempt stopped after calling the provider and before recording the result;"
    " not sent again, to avoid a duplicate"
)


def backoff_ceiling(attempt: int, base: int, cap: int) -> int:
    """The longest wait after failed attempt `attempt` (1-based): base, 2 base, 4 base ... up to cap and 12 h."""
    exponent = min(max(attempt - 1, 0), 32)
    return min(base * 2**exponent, cap, SQS_MAX_VISIBILITY)


def retry_delay(attempt: int, base: int, cap: int, draw: Callable[[], float] = random.random) -> int:
    """Seconds before the next attempt: exponential backoff with full jitter, uniform in [0, ceiling].

    `draw` returns a float in [0, 1); tests pass their own to read the table exactly.
    """
    return int(draw() * (backoff_ceiling(attempt, base, cap) + 1))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # the attempt that reaches this is the last; its failure is dead-lettered
    base: int
    cap: int
    draw: Callable[[], float] = random.random

    def delay(self, attempt: int) -> int:
        return retry_delay(attempt, self.base, self.cap, self.draw)


class Outcome(StrEnum):
    SENT = "sent"  # the provider took it
    FAILED = "failed"  # permanently undeliverable (or its outcome is unknown): recorded, not retried
    ALREADY_DONE = "already_done"  # a duplicate: another attempt already sent or failed it
    RETRY = "retry"  # return the message to the queue after `retry_in` seconds
    DEAD_LETTER = "dead_letter"  # the last allowed attempt failed (or an unparked copy of a dead letter): park it


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str | None = None
    retry_in: int = 0


@dataclass(frozen=True)
class Received:
    """One delivery job as a deliver invocation received it: `attempt` is its message's receive count,
    `parked_at` the herald-dead-lettered-at it carries, `record_id` its SQS message id."""

    job: DeliveryJob
    attempt: int = 1
    parked_at: datetime | None = None
    record_id: str = ""


@dataclass(frozen=True)
class _Ended:
    """How a claimed attempt ended: what the status records, and what the message's caller does."""

    state: DeliveryState
    result: Result
    error: str | None = None
    provider_message_id: str | None = None


def one_after_another(calls: list[Callable[[], _Ended]]) -> list[_Ended]:
    return [call() for call in calls]


def deliver(
    job: DeliveryJob,
    attempt: int,
    deadline: datetime,
    senders: Senders,
    status: StatusStore,
    devices: DeviceRegistry,
    policy: RetryPolicy,
    parked_at: datetime | None = None,
    tally: TallySheet | None = None,
    record_id: str = "",
    content: RenderedContent | None = None,
) -> Result:
    """One delivery alone: `deliver_together` with a group of one."""
    received = [Received(job, attempt, parked_at, record_id)]
    return deliver_together(received, deadline, senders, status, devices, policy, tally, content)[0]


def deliver_together(
    received: list[Received],
    deadline: datetime,
    senders: Senders,
    status: StatusStore,
    devices: DeviceRegistry,
    policy: RetryPolicy,
    tally: TallySheet | None = None,
    content: RenderedContent | None = None,
    run_all: Callable[[list[Callable[[], _Ended]]], list[_Ended]] = one_after_another,
) -> list[Result]:
    """Claims the deliveries (one write per recipient), calls each granted one's provider once (all at once
    through `run_all`), records the outcomes (one write per recipient). One result per job, in order. A first
    try of an inbox delivery is sent unclaimed, and recorded only if it was not sent (SELF_RECORDING).

    `attempt` is a message's receive count. The attempt is the last when either that count or
    the claim's own count (attempts since the delivery was queued or last redriven) reaches the
    maximum: the queue's redrive policy would move the message on its next receive anyway, and
    the status must say so first. The backoff grows with the smaller of the two, so a message
    the SQS message-move task brought back still counting its old receives does not wait as if
    it had failed them all. A claim holds until `deadline` (the invocation's timeout). The caller
    acts on each result: delete the message, change its visibility to `retry_in`, or send it to
    the DLQ with `reason`.

    `parked_at` is when Herald parked a message in a DLQ, if it carries that mark: only such a
    message (an operator's redrive) may revive a dead-lettered delivery. A copy without the mark is
    parked itself, unsent and uncounted; a marked copy from an earlier round finds it done.

    With a `tally`, the status changes of a broadcast's delivery (one whose job names its page) are
    counted in it, under `record_id` (the SQS message), and a change that a dead invocation left out
    of every tally is made up (herald.logic.tallies).

    A templated job gets its locale's rendering from `content` first (herald.logic.templates); one whose
    rendering is gone fails for good, without a provider call.

    A crash (a BaseException) while the providers are called leaves every claim of the group to expire:
    its deliveries come back, and are not sent again but for in-app (docs/reliability.md).
    """
    jobs: list[DeliveryJob] = []
    unsendable: list[str | None] = []
    for one in received:
        # A templated job's content is read before the claim: a failed read then leaves nothing half-done.
        try:
            jobs.append(resolved(one.job, content))
            unsendable.append(None)
        except DeliveryFailed as missing:
            jobs.append(one.job)
            unsendable.append(missing.reason)
    counted = [tally is not None and tally.counts_for(job) for job in jobs]
    # A first try of an inbox delivery needs no claim: its provider write is its record (see SELF_RECORDING).
    unclaimed = {
        index
        for index, (one, job) in enumerate(zip(received, jobs, strict=True))
        if job.channel in SELF_RECORDING
        and one.attempt <= 1
        and one.parked_at is None
        and not counted[index]
        and unsendable[index] is None
    }
    claimed = [index for index in range(len(received)) if index not in unclaimed]
    invocation = tally.invocation if tally is not None else None

    def claim(indexes: list[int], fresh: bool) -> dict[int, Claim]:
        if not indexes:
            return {}
        requests = [ClaimRequest(jobs[i], received[i].parked_at, invocation if counted[i] else None) for i in indexes]
        return dict(zip(indexes, status.claim_deliveries(requests, deadline, fresh=fresh), strict=True))

    fresh = all(received[i].attempt <= 1 and received[i].parked_at is None for i in claimed)
    claims = claim(claimed, fresh)
    results: dict[int, Result] = {}
    ended: dict[int, _Ended] = {}
    sends: list[tuple[int, Callable[[], _Ended]]] = []
    for index in unclaimed:
        last = received[index].attempt >= policy.max_attempts
        sends.append((index, partial(_send, jobs[index], senders, devices, policy, last, 1)))
    for index, granted in claims.items():
        one, job = received[index], jobs[index]
        if tally is not None and counted[index] and granted.unsettled is not None:
            assert job.page is not None
            if not status.tally_exists(job.notification_id, job.page, granted.unsettled.by):
                tally.recover(job, granted.unsettled, one.record_id)
        refused = _refused(granted, one)
        if refused is not None:
            results[index] = refused
            continue
        last = max(one.attempt, granted.attempt) >= policy.max_attempts
        attempt = min(one.attempt, granted.attempt) if granted.attempt else one.attempt
        if tally is not None and counted[index]:
            tally.count(job, granted.previous, None, one.record_id)  # the claim took it out of its previous status
        reason = unsendable[index]
        if reason is not None:
            ended[index] = _Ended(DeliveryState.FAILED, Result(Outcome.FAILED, reason), error=reason)
        elif granted.taken_over and job.channel not in IDEMPOTENT_CHANNELS:
            ended[index] = _Ended(DeliveryState.FAILED, Result(Outcome.FAILED, OUTCOME_UNKNOWN), error=OUTCOME_UNKNOWN)
        else:
            sends.append((index, partial(_send, job, senders, devices, policy, last, attempt)))
    for (index, _), outcome in zip(sends, run_all([send for _, send in sends]), strict=True):
        ended[index] = outcome
    # An unclaimed delivery that was sent is recorded by its inbox item; one that was not needs its status
    # written, so it is claimed now (its first attempt counted) and recorded with the others.
    for index in sorted(unclaimed):
        if ended[index].state is DeliveryState.SENT:
            results[index] = ended.pop(index).result
    late = claim(sorted(index for index in unclaimed if index in ended), fresh=True)
    for index, granted in late.items():
        claims[index] = granted
        refused = _refused(granted, received[index])
        if refused is not None:  # another copy got there first: its word stands
            results[index] = refused
            del ended[index]
    order = sorted(ended)
    recorded = (
        status.record_outcomes(
            [
                OutcomeRecord(
                    jobs[index],
                    claims[index].version,
                    ended[index].state,
                    error=ended[index].error,
                    provider_message_id=ended[index].provider_message_id,
                    redriven=claims[index].redriven,
                )
                for index in order
            ]
        )
        if order
        else []
    )
    for index, done in zip(order, recorded, strict=True):
        if tally is not None and counted[index] and done:  # a lost claim's outcome is the new holder's to count
            tally.count(jobs[index], None, ended[index].state, received[index].record_id)
        results[index] = ended[index].result
    return [results[index] for index in range(len(received))]


def _refused(claim: Claim, one: Received) -> Result | None:
    """What a delivery's message does when its claim was not granted; None when it was."""
    if claim.done and claim.dead_lettered and one.parked_at is None:
        # A copy Herald never parked: a stray SQS duplicate, or the job itself, moved to the DLQ by the
        # queue's redrive policy after its parking failed. It may not revive the delivery; parked (with
        # the mark), it is there for the operator's redrive, so no copy of a dead letter is ever lost.
        return Result(Outcome.DEAD_LETTER, UNPARKED_COPY)
    if claim.done:
        return Result(Outcome.ALREADY_DONE)
    if not claim.granted:
        return Result(Outcome.RETRY, "another attempt holds this delivery", retry_in=claim.busy_for())
    return None


def _send(
    job: DeliveryJob, senders: Senders, devices: DeviceRegistry, policy: RetryPolicy, last: bool, attempt: int
) -> _Ended:
    """Calls the provider once; a crash (BaseException) propagates and leaves the claim to expire."""
    try:
        message_id = senders[job.channel].send(job)
    except AlreadyDelivered as earlier:  # an earlier copy reached the provider: sent, and not again
        return _Ended(DeliveryState.SENT, Result(Outcome.ALREADY_DONE), provider_message_id=earlier.provider_message_id)
    except Exception as error:
        failure = failure_from(error)
        if failure.device_gone:
            _mark_gone(devices, job, failure.reason)
        if failure.permanent:
            return _Ended(DeliveryState.FAILED, Result(Outcome.FAILED, failure.reason), error=failure.reason)
        if failure.ambiguous and job.channel not in IDEMPOTENT_CHANNELS:
            reason = f"{OUTCOME_UNKNOWN_AFTER_CALL} ({failure.reason})"
            return _Ended(DeliveryState.FAILED, Result(Outcome.FAILED, reason), error=reason)
        if last:
            dead = Result(Outcome.DEAD_LETTER, f"last attempt failed: {failure.reason}")
            return _Ended(DeliveryState.DEAD_LETTERED, dead, error=failure.reason)
        retry = Result(Outcome.RETRY, failure.reason, retry_in=policy.delay(attempt))
        return _Ended(DeliveryState.RETRYING, retry, error=failure.reason)
    return _Ended(DeliveryState.SENT, Result(Outcome.SENT), provider_message_id=message_id)


def _mark_gone(devices: DeviceRegistry, job: DeliveryJob, reason: str) -> None:
    """The device will never take a message again: inactive, unless it registered another endpoint or address since."""
    if job.channel is Channel.PUSH and job.endpoint_arn:
        devices.mark_inactive(job.user_id, job.device_id, reason, endpoint_arn=job.endpoint_arn)
    elif job.channel is not Channel.PUSH and job.address:
        devices.mark_inactive(job.user_id, job.device_id, reason, address=job.address)
