"""Where a notification stands: its deliveries' records, its fan-out pages, tallies, and the answer to a claim."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

from herald.models.domain import (
    TERMINAL_DELIVERY_STATES,
    Channel,
    DeliveryState,
    NotificationState,
    PagePosition,
    Priority,
    now,
)

# The delivery states a broadcast's tallies count. `queued` and `sending` are not counted: they are
# whatever of the planned deliveries the tallies do not account for.
TALLIED_STATES = frozenset(
    {DeliveryState.RETRYING, DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED}
)
# How many names of recipients without devices (and of inactive devices) a page and the status keep:
# a broadcast to a million subscribers counts the rest.
LISTED_NAMES = 100


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


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryRecord]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last one."
    )


class NotificationRecord(BaseModel):
    notification_id: str
    status: NotificationState
    priority: Priority | None = None  # absent only for a notification that never went through the API
    recipients: list[str] | None = None
    topic: str | None = None
    channels: list[Channel] | None = None
    accepted_at: datetime | None = None
    fanned_out_at: datetime | None = None
    fanout_pages: int = Field(default=0, description="Fan-out pages finished so far.")
    delivery_count: int = Field(default=0, description="Deliveries planned by the pages finished so far.")
    recipients_without_devices: list[str] = Field(default_factory=list, description=f"At most {LISTED_NAMES}.")
    recipients_without_devices_count: int = 0
    inactive_devices_skipped: list[str] = Field(
        default_factory=list,
        description=f'"<user>/<device>" of devices Herald learned it cannot reach; at most {LISTED_NAMES}.',
    )
    inactive_devices_skipped_count: int = 0
    counts: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Deliveries per status. For a notification of more than one fan-out page (a broadcast), `queued`"
            " also counts the deliveries being sent at that moment."
        ),
    )
    deliveries: list[DeliveryRecord] = Field(
        default_factory=list, description="The first page of GET /notifications/{id}/deliveries."
    )
    next_cursor: str | None = Field(
        default=None, description="More deliveries: GET /notifications/{id}/deliveries?cursor=<this>."
    )


@dataclass(frozen=True)
class Transition:
    """A change of a delivery's tallied status made by one invocation (`by`), which counts it in its
    tally when it finishes. If that invocation died first (after `until`), the change is in no tally."""

    by: str
    until: datetime
    from_state: DeliveryState | None
    to_state: DeliveryState | None

    def deltas(self) -> dict[str, int]:
        changes: dict[str, int] = {}
        if self.from_state in TALLIED_STATES:
            changes[self.from_state.value] = changes.get(self.from_state.value, 0) - 1
        if self.to_state in TALLIED_STATES:
            changes[self.to_state.value] = changes.get(self.to_state.value, 0) + 1
        return {state: n for state, n in changes.items() if n}


@dataclass(frozen=True)
class Claim:
    """The answer to "may this invocation work on it now?" for a delivery.

    granted: yes; `taken_over` if a crashed invocation's expired claim was taken, `redriven`
    if the delivery had been dead-lettered; `previous` is the status it had. Refused: `done` if it
    is already finished (or, with `dead_lettered`, waits for an operator's redrive), else another
    invocation holds it until `busy_until`. Either way `unsettled` is the last tallied change another
    invocation made to it, when it may be in no tally.
    """

    granted: bool
    attempt: int = 0  # when granted: this attempt's number since the delivery was queued or last redriven
    taken_over: bool = False
    redriven: bool = False
    done: bool = False
    dead_lettered: bool = False  # refused as done because the delivery waits in a DLQ for an operator
    busy_until: datetime | None = None
    previous: DeliveryState | None = None
    unsettled: Transition | None = None

    def busy_for(self) -> int:
        """Whole seconds until the holder's claim expires (at least 1)."""
        return _seconds_until(self.busy_until)


@dataclass(frozen=True)
class PageState:
    """What a fan-out page's item says before the page is fanned out: `done` when a copy of its message
    already recorded it; `continuation` is then the next page if the finished one may not have queued it
    yet (its invocation stopped between the two)."""

    done: bool = False
    continuation: PagePosition | None = None


@dataclass
class PageOutcome:
    """What one fan-out page did: recorded in one write once everything it planned is published."""

    planned: list[str] = field(default_factory=list)  # "<user>#<device>#<channel>", in publishing order
    without_devices: list[str] = field(default_factory=list)  # the first LISTED_NAMES
    without_devices_count: int = 0
    inactive_skipped: list[str] = field(default_factory=list)  # "<user>/<device>", the first LISTED_NAMES
    inactive_skipped_count: int = 0
    skipped_by_channel: dict[Channel, int] = field(default_factory=dict)  # inactive_skipped_count per channel
    next: PagePosition | None = None  # the page that continues this one's chain, if any
    chains: int = 0  # a topic's root page: how many chains it started
    paged: bool = False  # the notification has more than one page: its deliveries are tallied


def _seconds_until(at: datetime | None) -> int:
    if at is None:
        return 1
    return max(int((at - now()).total_seconds()) + 1, 1)


def overall_state(fanned_out: bool, counts: Mapping[str, int]) -> NotificationState:
    """A notification's status follows from its deliveries' counts per status; nothing else is kept."""
    total = sum(counts.values())
    if not fanned_out and not total:
        return NotificationState.ACCEPTED
    if not total:
        return NotificationState.NO_DEVICES
    final = sum(counts.get(state.value, 0) for state in TERMINAL_DELIVERY_STATES)
    if not fanned_out or final < total:
        return NotificationState.IN_PROGRESS
    if counts.get(DeliveryState.DEAD_LETTERED.value):
        return NotificationState.DEAD_LETTERED
    sent = counts.get(DeliveryState.SENT.value, 0)
    if sent == final:
        return NotificationState.DELIVERED
    if sent:
        return NotificationState.PARTIALLY_DELIVERED
    return NotificationState.FAILED
