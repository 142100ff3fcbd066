"""Delivery: one job to one device through its channel, claimed first, with the outcome recorded."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from herald.logic.failures import failure_from
from herald.logic.ports import DeviceRegistry, Senders, StatusStore
from herald.logic.tallies import TallySheet
from herald.models.domain import Channel, DeliveryJob, DeliveryState

SQS_MAX_VISIBILITY = 43200  # 12 hours
# Channels whose provider write is idempotent (the inbox item's key is fixed), so a delivery
# whose earlier attempt may or may not have reached the provider can safely be sent again.
IDEMPOTENT_CHANNELS = frozenset({Channel.IN_APP})
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


def deliver(
    job: DeliveryJob,
    attempt: int,
    owner: str,
    deadline: datetime,
    senders: Senders,
    status: StatusStore,
    devices: DeviceRegistry,
    policy: RetryPolicy,
    parked_at: datetime | None = None,
    tally: TallySheet | None = None,
    record_id: str = "",
) -> Result:
    """Claims the delivery, calls its provider once, records the outcome.

    `attempt` is the message's receive count. The attempt is the last when either that count or
    the claim's own count (attempts since the delivery was queued or last redriven) reaches the
    maximum: the queue's redrive policy would move the message on its next receive anyway, and
    the status must say so first. The backoff grows with the smaller of the two, so a message
    the SQS message-move task brought back still counting its old receives does not wait as if
    it had failed them all. `owner` names this invocation's claim, which
    holds until `deadline` (the invocation's timeout). The caller acts on the result: delete
    the message, change its visibility to `retry_in`, or send it to the DLQ with `reason`.

    `parked_at` is when Herald parked this message in a DLQ, if it carries that mark: only such a
    message (an operator's redrive) may revive a dead-lettered delivery. A copy without the mark is
    parked itself, unsent and uncounted; a marked copy from an earlier round finds it done.

    With a `tally`, the status changes of a broadcast's delivery (one whose job names its page) are
    counted in it, under `record_id` (the SQS message), and a change that a dead invocation left out
    of every tally is made up (herald.logic.tallies).
    """
    counted = tally is not None and tally.counts_for(job)
    claim = status.claim_delivery(
        job, owner, deadline, parked_at, invocation=tally.invocation if tally and counted else None
    )
    if tally is not None and counted and claim.unsettled is not None:
        assert job.page is not None
        if not status.tally_exists(job.notification_id, job.page, claim.unsettled.by):
            tally.recover(job, claim.unsettled, record_id)
    if claim.done and claim.dead_lettered and parked_at is None:
        # A copy Herald never parked: a stray SQS duplicate, or the job itself, moved to the DLQ by the
        # queue's redrive policy after its parking failed. It may not revive the delivery; parked (with
        # the mark), it is there for the operator's redrive, so no copy of a dead letter is ever lost.
        return Result(Outcome.DEAD_LETTER, UNPARKED_COPY)
    if claim.done:
        return Result(Outcome.ALREADY_DONE)
    if not claim.granted:
        return Result(Outcome.RETRY, "another attempt holds this delivery", retry_in=claim.busy_for())
    last = max(attempt, claim.attempt) >= policy.max_attempts
    attempt = min(attempt, claim.attempt) if claim.attempt else attempt
    if tally is not None and counted:
        tally.count(job, claim.previous, None, record_id)  # the claim took it out of its previous status
    record = _Recorder(job, owner, status, claim.redriven, tally if counted else None, record_id)
    if claim.taken_over and job.channel not in IDEMPOTENT_CHANNELS:
        record(DeliveryState.FAILED, error=OUTCOME_UNKNOWN)
        return Result(Outcome.FAILED, OUTCOME_UNKNOWN)
    try:
        message_id = senders[job.channel].send(job)
    except Exception as error:  # a crash (BaseException) leaves the claim to expire
        failure = failure_from(error)
        if failure.device_gone:
            _mark_gone(devices, job, failure.reason)
        if failure.permanent:
            record(DeliveryState.FAILED, error=failure.reason)
            return Result(Outcome.FAILED, failure.reason)
        if failure.ambiguous and job.channel not in IDEMPOTENT_CHANNELS:
            reason = f"{OUTCOME_UNKNOWN_AFTER_CALL} ({failure.reason})"
            record(DeliveryState.FAILED, error=reason)
            return Result(Outcome.FAILED, reason)
        if last:
            record(DeliveryState.DEAD_LETTERED, error=failure.reason)
            return Result(Outcome.DEAD_LETTER, f"last attempt failed: {failure.reason}")
        record(DeliveryState.RETRYING, error=failure.reason)
        return Result(Outcome.RETRY, failure.reason, retry_in=policy.delay(attempt))
    record(DeliveryState.SENT, provider_message_id=message_id)
    return Result(Outcome.SENT)


def _mark_gone(devices: DeviceRegistry, job: DeliveryJob, reason: str) -> None:
    """The device will never take a message again: inactive, unless it registered another endpoint or address since."""
    if job.channel is Channel.PUSH and job.endpoint_arn:
        devices.mark_inactive(job.user_id, job.device_id, reason, endpoint_arn=job.endpoint_arn)
    elif job.channel is not Channel.PUSH and job.address:
        devices.mark_inactive(job.user_id, job.device_id, reason, address=job.address)


@dataclass(frozen=True)
class _Recorder:
    job: DeliveryJob
    owner: str
    status: StatusStore
    redriven: bool
    tally: TallySheet | None
    record_id: str

    def __call__(self, state: DeliveryState, error: str | None = None, provider_message_id: str | None = None) -> None:
        recorded = self.status.record_outcome(
            self.job, self.owner, state, error=error, provider_message_id=provider_message_id, redriven=self.redriven
        )
        if self.tally is not None and recorded:  # a lost claim's outcome is the new holder's to count
            self.tally.count(self.job, None, state, self.record_id)
