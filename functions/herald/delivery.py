"""Delivery: one job to one device through its channel, with the outcome recorded."""

from __future__ import annotations

from herald.channels import DeliveryFailed, Senders, failure_from
from herald.domain import DeliveryJob, DeliveryState
from herald.status import StatusStore

SQS_MAX_VISIBILITY = 43200  # 12 hours


class RetryLater(Exception):
    """The delivery failed for now; its message should come back after `delay` seconds."""

    def __init__(self, reason: str, delay: int):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def retry_delay(receive_count: int, base: int, cap: int) -> int:
    """Seconds before attempt `receive_count + 1`: base, 2 base, 4 base ... up to cap and 12 h."""
    exponent = max(receive_count - 1, 0)
    return min(base * (2 ** min(exponent, 32)), cap, SQS_MAX_VISIBILITY)


def deliver(
    job: DeliveryJob,
    receive_count: int,
    senders: Senders,
    status: StatusStore,
    max_receive_count: int,
    retry_base: int,
    retry_cap: int,
) -> DeliveryState:
    """Sends the job and records the outcome. Raises RetryLater when the queue should retry it.

    The attempt that reaches `max_receive_count` is the last: its failure is recorded
    dead_lettered and the message is released at once, so the queue's redrive policy moves it
    to the dead-letter queue on its next receive.
    """
    try:
        message_id = senders[job.channel].send(job)
    except Exception as error:
        failure = error if isinstance(error, DeliveryFailed) else failure_from(error)
        if failure.permanent:
            status.record_attempt(job, DeliveryState.FAILED, error=failure.reason)
            return DeliveryState.FAILED
        if receive_count >= max_receive_count:
            status.record_attempt(job, DeliveryState.DEAD_LETTERED, error=failure.reason)
            raise RetryLater(failure.reason, delay=0) from error
        status.record_attempt(job, DeliveryState.RETRYING, error=failure.reason)
        raise RetryLater(failure.reason, delay=retry_delay(receive_count, retry_base, retry_cap)) from error
    status.record_attempt(job, DeliveryState.SENT, provider_message_id=message_id)
    return DeliveryState.SENT
