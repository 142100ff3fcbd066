"""Where a notification stands: its deliveries' records and the answer to a claim."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from herald.models.domain import (
    TERMINAL_DELIVERY_STATES,
    Channel,
    DeliveryJob,
    DeliveryState,
    NotificationState,
    Priority,
    now,
)


class DeliveryRecord(BaseModel):
    user_id: str
    device_id: str
    channel: Channel
    status: DeliveryState
    attempts: int = 0  # provider calls so far, across redrives
    last_error: str | None = None
    provider_message_id: str | None = None
    redrives: int = 0  # times an operator moved it back from the dead-letter queue
    queued_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None
    redriven_at: datetime | None = None
    reason: str | None = None  # skipped: why (an opt-out, a template without this channel)
    deferred_until: datetime | None = None  # deferred: when its quiet hours end and it is queued


class NotificationRecord(BaseModel):
    notification_id: str
    status: NotificationState
    priority: Priority
    recipients: list[str]
    channels: list[Channel] | None = None
    accepted_at: datetime
    fanned_out_at: datetime | None = None
    recipients_without_devices: list[str] = []
    inactive_devices_skipped: list[str] = []  # "<user>/<device>": push endpoints SNS reported gone
    counts: dict[str, int] = {}
    deliveries: list[DeliveryRecord] = []
    category: str | None = None
    template: str | None = None
    send_at: datetime | None = None  # scheduled: when it is fanned out
    cancelled_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """The answer to "may this invocation work on it now?" for a delivery or a fan-out.

    granted: yes; `taken_over` if a crashed invocation's expired claim was taken, `redriven`
    if the delivery had been dead-lettered. Refused: `done` if it is already finished, else
    another invocation holds it until `busy_until`.
    """

    granted: bool
    attempt: int = 0  # when granted: this attempt's number since the delivery was queued or last redriven
    taken_over: bool = False
    redriven: bool = False
    done: bool = False
    busy_until: datetime | None = None

    def busy_for(self) -> int:
        """Whole seconds until the holder's claim expires (at least 1)."""
        if self.busy_until is None:
            return 1
        return max(int((self.busy_until - now()).total_seconds()) + 1, 1)


def overall_state(
    fanned_out: bool, deliveries: list[DeliveryRecord], scheduled: bool = False, cancelled: bool = False
) -> NotificationState:
    """A notification's status follows from its deliveries; nothing keeps a counter.

    Skipped deliveries are final and count for neither side: a notification whose other
    deliveries were all sent is delivered; one whose deliveries were all skipped is skipped.
    Deferred ones are not final: the notification stays in progress until they are sent.
    """
    if cancelled:
        return NotificationState.CANCELLED
    if not fanned_out and not deliveries:
        return NotificationState.SCHEDULED if scheduled else NotificationState.ACCEPTED
    if not deliveries:
        return NotificationState.NO_DEVICES
    all_states = [delivery.status for delivery in deliveries]
    if not fanned_out or any(state not in TERMINAL_DELIVERY_STATES for state in all_states):
        return NotificationState.IN_PROGRESS
    states = [state for state in all_states if state is not DeliveryState.SKIPPED]
    if not states:
        return NotificationState.SKIPPED
    if all(state is DeliveryState.SENT for state in states):
        return NotificationState.DELIVERED
    if any(state is DeliveryState.SENT for state in states):
        return NotificationState.PARTIALLY_DELIVERED
    return NotificationState.FAILED


class Cancellation(StrEnum):
    CANCELLED = "cancelled"
    ALREADY_CANCELLED = "already_cancelled"
    TOO_LATE = "too_late"  # fanned out, or fan-out holds it now
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SkippedDelivery:
    """A delivery fan-out left out, and why; recorded in the fan-out's one status write."""

    user_id: str
    device_id: str
    channel: Channel
    reason: str


@dataclass(frozen=True)
class DeferredDelivery:
    """A delivery held until `until` (the end of its recipient's quiet hours)."""

    job: DeliveryJob
    until: datetime
