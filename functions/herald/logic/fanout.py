"""Fan-out: one delivery per active device of every recipient or topic subscriber, a page at a time.

A page reads a bounded part of the audience (at most `PageLimits.users` users and
`PageLimits.deliveries` deliveries), looks their devices up concurrently, records itself fanned out
with what it will publish and the cursor where the next page starts, publishes one job per device to
the priority topic, and queues that page. So no invocation grows with the audience, and a retry
resumes where it stopped:

- a page's one status write comes before anything of it is published, conditional on no cancel and
  no earlier record of the page. A cancel is a conditional write on the same item (the first page's)
  that requires no record: exactly one of them wins, and a cancel that wins leaves nothing published;
- a copy of the page's message that finds the page recorded (an SQS duplicate, or the retry of an
  invocation that stopped between the write and its publish) publishes the page again, up to where
  the record says the next page starts: a job published twice is sent once, by its delivery's claim,
  and nothing recorded is left unpublished. It queues the next page only if that is not queued yet;
- the small pages of one batch (under 10 jobs each) share their PublishBatch calls (`publish_together`):
  SNS bills a batch of up to 10 entries as one request.

A topic's first page (the root) publishes nothing: it starts one chain of pages per subscriber
shard, so a broadcast fans out along SUBSCRIBER_SHARDS chains at once.

Each page applies its recipients' choices (herald.logic.preferences) with one batched read of their
preferences: a delivery they opted out of is skipped, one in their quiet hours is held in the schedule
queue until they end (deferred), both recorded in the page's one status write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from herald.logic.history import history_entries
from herald.logic.holds import hold_deliveries
from herald.logic.ports import DeviceRegistry, History, Holds, Intake, Publisher, StatusStore, Subscribers
from herald.logic.preferences import DeliveryRules, RecipientRules
from herald.models.domain import (
    ROOT_PAGE,
    SUBSCRIBER_SHARDS,
    Channel,
    DeliveryJob,
    Device,
    Notification,
    PageCursor,
    PagePosition,
    message_count,
    now,
)
from herald.models.inbox import HistoryEntry
from herald.models.status import LISTED_NAMES, DeferredDelivery, PageOutcome, PageWrite, SkippedDelivery

PUBLISH_BATCH_ENTRIES = 10  # SNS PublishBatch's most entries per call


@dataclass(frozen=True)
class PageLimits:
    deliveries: int = 1000  # jobs one page publishes at most
    users: int = 1000  # recipients or subscribers one page reads at most (many may have no device)
    lookups: int = 16  # device queries in flight at once


@dataclass
class FanoutResult:
    jobs: list[DeliveryJob] = field(default_factory=list)
    outcome: PageOutcome | None = None
    repeated: bool = False  # an earlier copy of this page's message recorded it: this one published it again
    cancelled: bool = False  # cancelled before its fan-out recorded it: nothing of it is sent

    @property
    def without_devices(self) -> list[str]:
        return self.outcome.without_devices if self.outcome else []

    @property
    def inactive_skipped(self) -> list[str]:
        return self.outcome.inactive_skipped if self.outcome else []

    @property
    def skipped(self) -> list[SkippedDelivery]:
        return self.outcome.skipped if self.outcome else []

    @property
    def deferred(self) -> list[DeferredDelivery]:
        return self.outcome.deferred if self.outcome else []


@dataclass
class PagePlan:
    """A page planned and recorded fanned out: its jobs published or still to publish."""

    notification: Notification
    jobs: list[DeliveryJob]
    outcome: PageOutcome
    clock: Callable[[], datetime]  # the rules' clock, which times the deferred deliveries' holds
    published: bool = False
    repeated: bool = False  # an earlier copy of the page's message recorded it
    continued: bool = False  # the next page is queued already
    history_user: str | None = None  # whose history item holds the page's record: their entry is written
    # The page's history entries, when planning made them already (a one-recipient page's record carries its
    # entry); None: finish_page makes them from the jobs
    entries: list[tuple[str, HistoryEntry]] | None = None


def fan_out(
    notification: Notification,
    registry: DeviceRegistry,
    subscribers: Subscribers,
    topic: Publisher,
    status: StatusStore,
    continuations: Intake,
    limits: PageLimits = PageLimits(),
    rules: DeliveryRules | None = None,
    holds: Holds | None = None,
    history: History | None = None,
) -> FanoutResult:
    """Fans out the page `notification` asks for (its first, when it asks for none).

    `rules` are the recipients' preferences and quiet hours; `holds` takes the deliveries they defer (the
    schedule queue); `history` gets one entry per recipient of the page. Each is called once per page.
    """
    step = begin_page(notification, registry, subscribers, status, continuations, limits, rules)
    if isinstance(step, FanoutResult):
        return step
    return finish_page(step, topic, status, continuations, holds, history)


def begin_page(
    notification: Notification,
    registry: DeviceRegistry,
    subscribers: Subscribers,
    status: StatusStore,
    continuations: Intake,
    limits: PageLimits,
    rules: DeliveryRules | None = None,
) -> FanoutResult | PagePlan:
    """The page planned and recorded fanned out, its jobs still to publish; or, for a page cancelled or a
    topic's root (which publishes nothing), its result. The record is what a cancel races: exactly one wins."""
    page = notification.page_key
    if page == ROOT_PAGE:
        outcome = PageOutcome(chains=SUBSCRIBER_SHARDS, paged=True)
        write = status.record_page(notification, page, outcome)
        if write.cancelled:
            return FanoutResult(cancelled=True)
        if not write.continued:
            continuations.send_all([notification.at(PagePosition(chain=shard)) for shard in range(SUBSCRIBER_SHARDS)])
            status.record_continued(notification, page)
        return FanoutResult(outcome=outcome, repeated=not write.written)
    rules = rules or DeliveryRules()
    jobs, outcome = plan_page(notification, registry, subscribers, limits, rules)
    owner = notification.history_owner
    entries = None
    if owner is not None:  # the page's record is the recipient's history entry: it carries the entry
        entries = history_entries(notification, jobs, outcome.skipped, outcome.deferred)
        outcome.history_entry = dict(entries).get(owner)
    write = status.record_page(notification, page, outcome)
    if write.cancelled:
        return FanoutResult(cancelled=True)
    if write.written:
        return PagePlan(notification, jobs, outcome, rules.clock, history_user=write.history_user, entries=entries)
    # An earlier copy recorded this page and may have stopped before publishing it: publish it again, up to
    # where that record says the next page starts (the audience may have moved since, the boundary may not).
    if write.next != outcome.next:
        jobs, outcome = plan_page(notification, registry, subscribers, limits, rules, recorded=write)
        entries = None  # other jobs: their entries are made from them
    return PagePlan(
        notification,
        jobs,
        outcome,
        rules.clock,
        repeated=True,
        continued=write.continued,
        history_user=write.history_user,
        entries=entries,
    )


def publish_together(plans: Iterable[PagePlan], topic: Publisher) -> None:
    """Publishes the jobs of the small pages of one batch in shared PublishBatch calls (SNS bills a batch of up
    to 10 entries as one request, whoever they are for). A page is small when its jobs make fewer than 10
    messages (a recipient's devices of a channel are one message: message_count). Pages of a full call or
    more publish alone, so a batch's memory stays one page's. If the shared publish fails, every page it held
    publishes alone in `finish_page`: a refused entry fails only its own notification's record, and a job
    published twice is sent once, by its delivery's claim."""
    small = [
        plan for plan in plans if plan.jobs and message_count(plan.jobs) < PUBLISH_BATCH_ENTRIES and not plan.published
    ]
    if len(small) < 2:
        return
    try:
        topic.publish([job for plan in small for job in plan.jobs])
    except Exception:
        return
    for plan in small:
        plan.published = True


def finish_page(
    plan: PagePlan,
    topic: Publisher,
    status: StatusStore,
    continuations: Intake,
    holds: Holds | None = None,
    history: History | None = None,
) -> FanoutResult:
    """Publishes the plan's jobs if that is still to do, holds its deferred deliveries, writes its history,
    then queues its successor unless that is queued already. Each step is safe to repeat: a page's message
    that comes back after a crash does them all again."""
    notification, jobs, outcome = plan.notification, plan.jobs, plan.outcome
    page = notification.page_key
    if jobs and not plan.published:
        topic.publish(jobs)
        plan.published = True
    if outcome.deferred:
        if holds is None:
            raise RuntimeError("deliveries to defer but no schedule queue to hold them")
        hold_deliveries(outcome.deferred, holds, at=plan.clock())
    if history is not None:  # a page whose message comes back writes the same items again
        # (but for the recipient whose history item is the page's record: it carries their entry already, and
        # an entry written over it would replace the record)
        made = plan.entries
        if made is None:
            made = history_entries(notification, jobs, outcome.skipped, outcome.deferred)
        entries = [(user, entry) for user, entry in made if user != plan.history_user]
        if entries:
            history.record(entries)
    if outcome.next is not None and not plan.continued:
        continuations.send(notification.at(outcome.next))
        status.record_continued(notification, page)
    return FanoutResult(jobs=jobs, outcome=outcome, repeated=plan.repeated)


def plan_page(
    notification: Notification,
    registry: DeviceRegistry,
    subscribers: Subscribers,
    limits: PageLimits,
    rules: DeliveryRules | None = None,
    recorded: PageWrite | None = None,
) -> tuple[list[DeliveryJob], PageOutcome]:
    """The jobs to publish of one page, from its cursor on, and what the page will record (its skipped
    and deferred deliveries included). With `recorded` (an earlier record of this page), the page ends
    where that record says the next page starts, whatever the limits say now: the pages stay contiguous."""
    position = notification.page or PagePosition()
    cursor = position.cursor
    users = audience(notification, position.chain, cursor.user if cursor else None, subscribers, limits.users + 1)
    following = users[limits.users] if len(users) > limits.users else None
    end = recorded.next.cursor if recorded is not None and recorded.next is not None else None
    users = _up_to(users, end) if recorded is not None and end is not None else users[: limits.users]
    wanted = set(notification.channels) if notification.channels else None
    planned: list[Device] = []
    outcome = PageOutcome()
    with DeviceLookups(registry, limits) as lookups:
        _plan(users, cursor, position, wanted, limits, lookups, planned, outcome, end, bounded=recorded is not None)
    if recorded is not None:
        outcome.next = recorded.next
    elif outcome.next is None and following is not None:
        outcome.next = _next(position, PageCursor(user=following))
    outcome.paged = notification.topic is not None or position.index > 0 or outcome.next is not None
    page = position.key if outcome.paged else None
    queued_at = now()
    # The preferences of the page's users with a device to route, in one batched read.
    routed_users = list(dict.fromkeys(device.user_id for device in planned))
    recipients = (rules or DeliveryRules()).for_recipients(notification, routed_users)
    jobs = _route(notification, planned, recipients, queued_at, page, outcome)
    outcome.planned = [f"{job.delivery_id}#{job.channel.value}" for job in jobs]
    return jobs, outcome


def _route(
    notification: Notification,
    devices: list[Device],
    recipients: RecipientRules,
    queued_at: datetime,
    page: str | None,
    outcome: PageOutcome,
) -> list[DeliveryJob]:
    """The jobs to publish now; the skipped and deferred deliveries go to the outcome."""
    jobs = []
    for device in devices:
        route = recipients.route(device)
        if route.skip_reason is not None:
            outcome.skipped.append(SkippedDelivery(device.user_id, device.device_id, device.channel, route.skip_reason))
            continue
        job = DeliveryJob.for_device(notification, device, queued_at=queued_at, page=page)
        if route.content_locale is not None:
            job.content_locale = route.content_locale
        if route.defer_until is not None:
            outcome.deferred.append(DeferredDelivery(job, route.defer_until))
            continue
        jobs.append(job)
    return jobs


def _plan(
    users: list[str],
    cursor: PageCursor | None,
    position: PagePosition,
    wanted: set[Channel] | None,
    limits: PageLimits,
    lookups: DeviceLookups,
    planned: list[Device],
    outcome: PageOutcome,
    end: PageCursor | None = None,
    bounded: bool = False,
) -> None:
    """Plans `users`' devices until the page is full; or, `bounded` by an earlier record of the page, all of
    them, the last user's only up to `end.after_device`."""
    offset, seen_devices = 0, 0
    while offset < len(users) and outcome.next is None:
        # Look up only about as many users as the page can still take: those it cannot take would be
        # looked up again by the next page.
        per_user = seen_devices / offset if offset and seen_devices else 1.0
        room = limits.deliveries - len(planned)
        window = users[offset : offset + max(1, min(limits.lookups, math.ceil(room / per_user)))]
        first_after = cursor.after_device if cursor and offset == 0 else None
        for user, (devices, more) in zip(window, lookups.fetch(window, first_after), strict=True):
            resumed = first_after is not None and offset == 0
            if bounded:
                if end is not None and end.after_device is not None and user == end.user:
                    devices = [device for device in devices if device.device_id <= end.after_device]
                more = False
            take = [d for d in devices if d.active and (wanted is None or d.channel in wanted)]
            if not bounded and planned and len(planned) + len(take) > limits.deliveries:
                outcome.next = _next(position, PageCursor(user=user, after_device=first_after if resumed else None))
                break
            planned.extend(take)
            for device in devices:
                if not device.active and (wanted is None or device.channel in wanted):
                    _note(outcome.inactive_skipped, f"{user}/{device.device_id}")
                    outcome.inactive_skipped_count += 1
                    outcome.skipped_by_channel[device.channel] = outcome.skipped_by_channel.get(device.channel, 0) + 1
            if not take and not resumed and not more:
                _note(outcome.without_devices, user)
                outcome.without_devices_count += 1
            offset += 1
            seen_devices += len(devices)
            if more:
                outcome.next = _next(position, PageCursor(user=user, after_device=devices[-1].device_id))
                break


def _up_to(users: list[str], end: PageCursor) -> list[str]:
    """The users of a page recorded to end at `end`, in the audience as it is read now: up to `end.user`,
    and it too when the next page starts in the middle of its devices."""
    if end.user in users:
        return users[: users.index(end.user) + (1 if end.after_device is not None else 0)]
    # A topic's shard is read in user order; its subscriber `end.user` has left since.
    return [user for user in users if user < end.user]


def audience(
    notification: Notification, chain: int, first: str | None, subscribers: Subscribers, limit: int
) -> list[str]:
    """Up to `limit` users of the notification's audience in its fan-out order, from `first` on."""
    if notification.recipients is not None:
        start = notification.recipients.index(first) if first is not None else 0
        return notification.recipients[start : start + limit]
    assert notification.topic is not None  # a notification has recipients or a topic
    return subscribers.users_from(notification.topic, chain, first, limit)


class DeviceLookups:
    """Each user's devices, queried concurrently (at most `limits.lookups` at once) by one pool per page."""

    def __init__(self, registry: DeviceRegistry, limits: PageLimits):
        self._registry = registry
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.lookups) if limits.lookups > 1 else None

    def __enter__(self) -> DeviceLookups:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def fetch(self, users: list[str], first_after: str | None) -> Iterable[tuple[list[Device], bool]]:
        """For each user in order: up to `limits.deliveries` devices and whether more follow. The
        first user's start after `first_after` (a page resuming in the middle of a user's devices)."""

        def one(index_user: tuple[int, str]) -> tuple[list[Device], bool]:
            index, user = index_user
            after = first_after if index == 0 else None
            return self._registry.devices_after(user, after, self._limits.deliveries)

        if self._pool is None or len(users) <= 1:
            return [one(pair) for pair in enumerate(users)]
        return list(self._pool.map(one, enumerate(users)))


def _next(position: PagePosition, cursor: PageCursor) -> PagePosition:
    return PagePosition(chain=position.chain, index=position.index + 1, cursor=cursor)


def _note(names: list[str], name: str) -> None:
    if len(names) < LISTED_NAMES:
        names.append(name)
