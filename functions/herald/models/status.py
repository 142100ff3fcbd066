"""Where a notification stands: its deliveries' records, its fan-out pages, tallies, and the answer to a claim."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from herald.models.domain import (
    TERMINAL_DELIVERY_STATES,
    Channel,
    DeliveryJob,
    DeliveryState,
    NotificationState,
    PagePosition,
    Priority,
    now,
)
from herald.models.inbox import HistoryEntry

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
    reason: str | None = None  # skipped: why (an opt-out, a template without this channel)
    deferred_until: datetime | None = None  # deferred: when its quiet hours end and it is queued


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
    category: str | None = None
    template: str | None = None
    send_at: datetime | None = Field(default=None, description="Scheduled: when it is (or was) fanned out.")
    cancelled_at: datetime | None = Field(default=None, description="Cancelled before fan-out: when.")
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
    version: int = 0  # when granted: the version of the delivery's entry this claim wrote; its outcome requires it

    def busy_for(self) -> int:
        """Whole seconds until the holder's claim expires (at least 1)."""
        return _seconds_until(self.busy_until)


@dataclass(frozen=True)
class ClaimRequest:
    """One delivery a deliver invocation asks to claim: `parked_at` is the herald-dead-lettered-at its message
    carries (only such a message revives a dead letter); with `invocation`, the claim marks a tallied change."""

    job: DeliveryJob
    parked_at: datetime | None = None
    invocation: str | None = None


@dataclass(frozen=True)
class OutcomeRecord:
    """How a claimed attempt ended, recorded only if the delivery's entry is still at the claim's `version`."""

    job: DeliveryJob
    version: int
    state: DeliveryState
    error: str | None = None
    provider_message_id: str | None = None
    redriven: bool = False


NO_STATUS = "-"  # tally_from of a delivery claimed for the first time


@dataclass(frozen=True)
class DeliveryEntry:
    """One device's delivery of a notification, as its recipient's status item keeps it (one small map per
    device, so that one write claims or records several of a recipient's deliveries). Times in epoch ms."""

    status: DeliveryState | None = None
    channel: Channel | None = None
    attempts: int = 0
    round_attempts: int = 0
    version: int = 0
    claimed_until: int | None = None
    queued_at: int | None = None
    updated_at: int | None = None
    provider_message_id: str | None = None
    last_error: str | None = None
    dead_lettered_at: int | None = None
    redrives: int = 0
    redriven_at: int | None = None
    tally_by: str | None = None
    tally_until: int | None = None
    tally_from: str | None = None

    def claimable(self, at: int, parked_at: int | None) -> bool:
        """New, queued, retrying, or held by a claim that expired; dead-lettered only for a message Herald
        parked no earlier than the dead-lettering (an operator's redrive)."""
        if self.status in (None, DeliveryState.QUEUED, DeliveryState.RETRYING):
            return True
        if self.status is DeliveryState.SENDING:
            return self.claimed_until is None or self.claimed_until < at
        if self.status is DeliveryState.DEAD_LETTERED and parked_at is not None:
            return self.dead_lettered_at is None or self.dead_lettered_at <= parked_at
        return False

    def unsettled(self, invocation: str, at: int) -> Transition | None:
        """The last tallied change another invocation made, once that invocation is surely over."""
        if not self.tally_by or self.tally_by == invocation or self.tally_until is None or self.tally_until >= at:
            return None
        from_state = None if self.tally_from in (None, NO_STATUS) else DeliveryState(self.tally_from)
        return Transition(self.tally_by, from_millis(self.tally_until), from_state, self.status)


# What a claim refused finds: done, for the message asking (a dead letter waits for an operator's redrive).
FINISHED_FOR_A_COPY = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED)


def claim_entry(
    old: DeliveryEntry | None, request: ClaimRequest, at: datetime, until: datetime
) -> tuple[Claim, DeliveryEntry | None]:
    """The answer to a claim of one delivery whose entry is `old` (None: never claimed), and the entry the
    claim writes if granted: status sending until `until`, the attempt counted, the version moved on."""
    entry = old or DeliveryEntry()
    now_ms, until_ms = millis(at), millis(until)
    parked = millis(request.parked_at) if request.parked_at is not None else None
    previous = entry.status
    unsettled = entry.unsettled(request.invocation, now_ms) if request.invocation is not None else None
    if not entry.claimable(now_ms, parked):
        if previous in FINISHED_FOR_A_COPY:
            return Claim(
                granted=False,
                done=True,
                dead_lettered=previous is DeliveryState.DEAD_LETTERED,
                previous=previous,
                unsettled=unsettled,
            ), None
        busy = from_millis(entry.claimed_until) if entry.claimed_until is not None else None
        return Claim(granted=False, busy_until=busy, previous=previous, unsettled=unsettled), None
    job = request.job
    claimed = replace(
        entry,
        status=DeliveryState.SENDING,
        channel=job.channel,
        attempts=entry.attempts + 1,
        round_attempts=entry.round_attempts + 1,
        version=entry.version + 1,
        claimed_until=until_ms,
        queued_at=entry.queued_at if entry.queued_at is not None else millis(job.queued_at or job.accepted_at),
        updated_at=now_ms,
    )
    if request.invocation is not None:
        claimed = replace(
            claimed,
            tally_by=request.invocation,
            tally_until=until_ms,
            tally_from=previous.value if previous is not None else NO_STATUS,
        )
    claim = Claim(
        granted=True,
        attempt=entry.round_attempts + 1,
        taken_over=entry.status is DeliveryState.SENDING,
        redriven=previous is DeliveryState.DEAD_LETTERED,
        previous=previous,
        unsettled=unsettled,
        version=claimed.version,
    )
    return claim, claimed


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@dataclass(frozen=True)
class PageWrite:
    """The answer to a fan-out page's one write, made before anything of the page is published.

    `written`: this copy of the page's message recorded the page fanned out, and publishes it. Refused with
    `cancelled` when a cancel marked the page first: nothing of the notification is sent. Refused otherwise
    when an earlier copy recorded the page (it may have stopped before publishing): this copy publishes the
    page again up to `next`, where that record says the next page starts; `continued` when that next page
    is queued already."""

    written: bool
    cancelled: bool = False
    next: PagePosition | None = None
    continued: bool = False
    # The recipient whose history item holds the page record (Notification.page_in_history): that item is
    # the recipient's history entry, and no other write may replace it.
    history_user: str | None = None


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
    # Left out by the recipients' preferences (or the template), and held until their quiet hours end:
    # neither is published by the page; the deferred ones go to the schedule queue.
    skipped: list[SkippedDelivery] = field(default_factory=list)
    deferred: list[DeferredDelivery] = field(default_factory=list)
    # The history entry the page's record carries, for a page kept in its recipient's history.
    history_entry: HistoryEntry | None = None

    @property
    def delivery_count(self) -> int:
        """Deliveries the page planned: published now, or held until their time."""
        return len(self.planned) + len(self.deferred)

    def entries(self) -> list[str]:
        """Every delivery of the page as the status lists it: published, then deferred, then skipped."""
        return (
            self.planned
            + [deferred_entry(deferred) for deferred in self.deferred]
            + [skipped_entry(skipped) for skipped in self.skipped]
        )

    def deferred_times(self) -> dict[int, int]:
        """How many deliveries the page deferred until each time (epoch seconds): counted as deferred until then."""
        times: dict[int, int] = {}
        for deferred in self.deferred:
            until = release_second(deferred.until)
            times[until] = times.get(until, 0) + 1
        return times


# A listed entry is "<user>#<device>#<channel>", with a fourth part for a delivery fan-out did not publish:
# "d<epoch seconds>" (deferred until then) or "s<reason>" (skipped). Ids and reasons hold no '#' or ','.
DEFERRED_MARK = "d"
SKIPPED_MARK = "s"


def release_second(until: datetime) -> int:
    return math.ceil(until.timestamp())  # never earlier than the release


def deferred_entry(deferred: DeferredDelivery) -> str:
    job = deferred.job
    return f"{job.delivery_id}#{job.channel.value}#{DEFERRED_MARK}{release_second(deferred.until)}"


def skipped_entry(skipped: SkippedDelivery) -> str:
    reason = skipped.reason.replace(",", ";").replace("#", " ")
    return f"{skipped.user_id}#{skipped.device_id}#{skipped.channel.value}#{SKIPPED_MARK}{reason}"


def _seconds_until(at: datetime | None) -> int:
    if at is None:
        return 1
    return max(int((at - now()).total_seconds()) + 1, 1)


def overall_state(
    fanned_out: bool, counts: Mapping[str, int], scheduled: bool = False, cancelled: bool = False
) -> NotificationState:
    """A notification's status follows from its deliveries' counts per status; nothing else is kept.

    Skipped deliveries are final and count for neither side: a notification whose other deliveries
    were all sent is delivered; one whose deliveries were all skipped is skipped. Deferred ones are
    not final: the notification stays in progress until they are sent.
    """
    if cancelled:
        return NotificationState.CANCELLED
    total = sum(counts.values())
    if not fanned_out and not total:
        return NotificationState.SCHEDULED if scheduled else NotificationState.ACCEPTED
    if not total:
        return NotificationState.NO_DEVICES
    final = sum(counts.get(state.value, 0) for state in TERMINAL_DELIVERY_STATES)
    if not fanned_out or final < total:
        return NotificationState.IN_PROGRESS
    skipped = counts.get(DeliveryState.SKIPPED.value, 0)
    if skipped == final:
        return NotificationState.SKIPPED
    if counts.get(DeliveryState.DEAD_LETTERED.value):
        return NotificationState.DEAD_LETTERED
    sent = counts.get(DeliveryState.SENT.value, 0)
    if sent == final - skipped:
        return NotificationState.DELIVERED
    if sent:
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
