"""In-memory stand-ins for Herald's adapters, so logic and handlers are tested without AWS.

Each fake keeps what it was asked to do in plain attributes for the test to assert on. Fakes
that take a `journal` append one line per call to it; hand the same list to several fakes to
assert the order of calls across them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from herald.adapters.batches import BatchEntryFailed
from herald.adapters.status_views import fanned_out, inbox_sent, planned_records, tally_counts
from herald.adapters.topics import shard_of
from herald.models.domain import (
    ROOT_PAGE,
    Channel,
    DeliveryJob,
    DeliveryState,
    Device,
    DeviceKey,
    Notification,
    Platform,
    now,
)
from herald.models.failures import AlreadyDelivered
from herald.models.holds import HeldMessage
from herald.models.idempotency import IdempotencyRecord, RecordState, StoredResponse
from herald.models.inbox import HistoryEntry, HistoryPage, InboxDelivery
from herald.models.preferences import Preferences
from herald.models.status import (
    LISTED_NAMES,
    Cancellation,
    Claim,
    ClaimRequest,
    DeferredDelivery,
    DeliveryPage,
    DeliveryRecord,
    NotificationRecord,
    OutcomeRecord,
    PageOutcome,
    PageWrite,
    SkippedDelivery,
    Transition,
    overall_state,
)
from herald.models.templates import Rendering, TemplateDocument, TemplateView
from herald.models.topics import SubscriberPage, Subscription


class FakeDeviceRegistry:
    """A DeviceRegistry in a dict keyed by (user_id, device_id), with DynamoDeviceRegistry's conditions.

    Its indexes (by endpoint, by contact) are read at once here; DynamoDB's lag a moment behind.
    `holders` is each push endpoint's holder item.
    """

    def __init__(self, devices: Iterable[Device] = ()):
        self.devices: dict[tuple[str, str], Device] = {}
        self.holders: dict[str, DeviceKey] = {}
        self.lookups: list[str] = []  # the users devices_after was asked for, in order
        for device in devices:
            self.put(device)

    def put(self, device: Device) -> None:
        self.devices[(device.user_id, device.device_id)] = device

    def get(self, user_id: str, device_id: str) -> Device | None:
        return self.devices.get((user_id, device_id))

    def delete(self, user_id: str, device_id: str) -> bool:
        return self.devices.pop((user_id, device_id), None) is not None

    def mark_inactive(
        self, user_id: str, device_id: str, reason: str, endpoint_arn: str | None = None, address: str | None = None
    ) -> bool:
        device = self.devices.get((user_id, device_id))
        if device is None:
            return False
        if endpoint_arn is not None and device.endpoint_arn != endpoint_arn:
            return False
        if address is not None and device.address != address:
            return False
        self.devices[(user_id, device_id)] = device.model_copy(
            update={"active": False, "inactive_reason": reason, "inactive_since": now()}
        )
        return True

    def devices_of(self, user_id: str) -> Iterator[Device]:
        # Sorted by device id, as the DynamoDB query returns them.
        for (owner, _), device in sorted(self.devices.items()):
            if owner == user_id:
                yield device

    def devices_after(self, user_id: str, after: str | None, limit: int) -> tuple[list[Device], bool]:
        self.lookups.append(user_id)
        devices = [device for device in self.devices_of(user_id) if after is None or device.device_id > after]
        return devices[:limit], len(devices) > limit

    def devices_with_endpoint(self, endpoint_arn: str) -> list[DeviceKey]:
        return [device.key for device in self.devices.values() if device.endpoint_arn == endpoint_arn]

    def devices_with_contact(self, channel: Channel, address: str) -> list[DeviceKey]:
        wanted = address.lower() if channel is Channel.EMAIL else address
        return [
            device.key
            for device in self.devices.values()
            if device.channel is channel
            and device.address is not None
            and (device.address.lower() if channel is Channel.EMAIL else device.address) == wanted
        ]

    def take_endpoint(self, endpoint_arn: str, device: DeviceKey) -> DeviceKey | None:
        replaced = self.holders.get(endpoint_arn)
        self.holders[endpoint_arn] = device
        return replaced

    def release_endpoint(self, endpoint_arn: str, device: DeviceKey) -> bool:
        holder = self.holders.get(endpoint_arn)
        if holder is not None and holder != device:
            return False
        self.holders.pop(endpoint_arn, None)
        return True

    def move_off_endpoint(self, endpoint_arn: str, device: DeviceKey, reason: str) -> bool:
        stored = self.devices.get(device)
        if self.holders.get(endpoint_arn) == device or stored is None or stored.endpoint_arn != endpoint_arn:
            return False
        self.devices[device] = stored.model_copy(
            update={"active": False, "inactive_reason": reason, "inactive_since": now(), "endpoint_arn": None}
        )
        return True


class FakeSubscribers:
    """Subscribers in a dict: topic -> user ids; each shard holds the users `shard_of` gives it."""

    def __init__(self, topics: dict[str, Iterable[str]] | None = None):
        self.topics: dict[str, dict[str, datetime]] = {}
        for topic, users in (topics or {}).items():
            for user in users:
                self.subscribe(topic, user)
        self.reads: list[tuple[str, int, str | None, int]] = []

    def subscribe(self, topic: str, user_id: str) -> Subscription:
        at = self.topics.setdefault(topic, {}).setdefault(user_id, now())
        return Subscription(topic=topic, user_id=user_id, subscribed_at=at)

    def unsubscribe(self, topic: str, user_id: str) -> bool:
        return self.topics.get(topic, {}).pop(user_id, None) is not None

    def users_from(self, topic: str, shard: int, first: str | None, limit: int) -> list[str]:
        self.reads.append((topic, shard, first, limit))
        users = sorted(u for u in self.topics.get(topic, {}) if shard_of(u) == shard and (first is None or u >= first))
        return users[:limit]

    def page(self, topic: str, limit: int, cursor: str | None) -> SubscriberPage:
        users = sorted(self.topics.get(topic, {}).items())
        start = int(cursor or 0)
        chosen = [Subscription(topic=topic, user_id=u, subscribed_at=at) for u, at in users[start : start + limit]]
        more = start + limit < len(users)
        return SubscriberPage(subscribers=chosen, next_cursor=str(start + limit) if more else None)


class Attempt(NamedTuple):
    delivery_id: str
    state: DeliveryState
    error: str | None
    provider_message_id: str | None


@dataclass
class FannedOut:
    """A notification whose fan-out ran to its end, summed over its pages."""

    delivery_count: int
    without_devices: list[str]
    inactive_skipped: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # "<user>#<device>#<channel>"
    skipped: list[SkippedDelivery] = field(default_factory=list)
    deferred: list[DeferredDelivery] = field(default_factory=list)


@dataclass
class Held:
    owner: str
    until: datetime


@dataclass
class FakePage:
    notification: Notification
    done_at: datetime | None = None
    outcome: PageOutcome | None = None
    continued: bool = False

    def plain(self) -> dict[str, Any]:
        """The page as status_views reads a page item."""
        item: dict[str, Any] = {}
        if self.done_at is not None and self.outcome is not None:
            item.update(done_at=self.done_at.isoformat(), chains=self.outcome.chains)
            if self.outcome.next is not None:
                item["next"] = self.outcome.next.model_dump_json()
        return item


@dataclass
class Marker:
    by: str
    until: datetime
    from_state: DeliveryState | None


class FakeStatusStore:
    """A StatusStore and StatusReader keeping pages, delivery records, claims and tallies the way the
    DynamoDB adapters do."""

    def __init__(self, journal: list[str] | None = None, inbox: FakeInboxSender | None = None):
        self.journal = journal if journal is not None else []
        self.inbox = inbox  # in-app deliveries sent on a first try are recorded there, as DynamoInbox does
        self.accepted: dict[str, Notification] = {}
        self.pages: dict[tuple[str, str], FakePage] = {}
        self.records: dict[str, dict[str, DeliveryRecord]] = {}
        self.attempts: list[Attempt] = []
        self.claims: dict[tuple[str, str], Held] = {}
        self.round_attempts: dict[tuple[str, str], int] = {}
        self.dead_lettered_at: dict[tuple[str, str], datetime] = {}
        self.markers: dict[tuple[str, str], Marker] = {}
        self.tallies: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.cancelled: dict[str, datetime] = {}
        # One entry per status write of deliveries: ("claim" or "record", notification, user), as the
        # DynamoDB store writes one recipient's item once per call.
        self.delivery_writes: list[tuple[str, str, str]] = []
        self._versions = 0

    # --- writes -------------------------------------------------------------------------------------

    def record_accepted(self, notification: Notification) -> Notification:
        self.journal.append("status.record_accepted")
        earlier = self.accepted.get(notification.notification_id)
        if earlier is not None:
            return notification.model_copy(
                update={"accepted_at": earlier.accepted_at, "page_in_history": earlier.page_in_history}
            )
        self.accepted[notification.notification_id] = notification
        return notification

    def cancel(self, notification_id: str) -> Cancellation:
        self.journal.append("status.cancel")
        if notification_id not in self.accepted:
            return Cancellation.UNKNOWN
        if notification_id in self.cancelled:
            return Cancellation.ALREADY_CANCELLED
        if any(nid == notification_id for nid, _ in self.pages):  # a fan-out recorded a page
            return Cancellation.TOO_LATE
        self.cancelled[notification_id] = now()
        return Cancellation.CANCELLED

    def record_page(self, notification: Notification, page: str, outcome: PageOutcome) -> PageWrite:
        self.journal.append(f"status.record_page {page}")
        notification_id = notification.notification_id
        if notification_id in self.cancelled:  # the cancel marks the first page; no later page exists then
            return PageWrite(written=False, cancelled=True)
        held = self.pages.get((notification_id, page))
        owner = notification.history_owner  # its history item holds the record (and the entry the outcome carries)
        if held is not None and held.done_at is not None and held.outcome is not None:
            return PageWrite(written=False, next=held.outcome.next, continued=held.continued, history_user=owner)
        self.pages[(notification_id, page)] = FakePage(notification, done_at=now(), outcome=outcome)
        return PageWrite(written=True, history_user=owner)

    def record_continued(self, notification: Notification, page: str) -> None:
        self.journal.append(f"status.record_continued {page}")
        self.pages[(notification.notification_id, page)].continued = True

    def claim_deliveries(self, requests: list[ClaimRequest], until: datetime, fresh: bool = True) -> list[Claim]:
        self.journal.append("status.claim_deliveries")
        claims = []
        seen: set[tuple[str, str]] = set()
        for request in requests:
            job = request.job
            if (job.notification_id, job.delivery_id) in seen:  # a second copy in one group: the first holds it
                claims.append(Claim(granted=False, busy_until=until, previous=DeliveryState.SENDING))
                continue
            seen.add((job.notification_id, job.delivery_id))
            self._versions += 1
            claim = self._claim(job, f"v{self._versions}", until, request.parked_at, request.invocation)
            claims.append(replace(claim, version=self._versions) if claim.granted else claim)
        if any(claim.granted for claim in claims):
            self.delivery_writes += sorted({("claim", r.job.notification_id, r.job.user_id) for r in requests})
        return claims

    def record_outcomes(self, outcomes: list[OutcomeRecord]) -> list[bool]:
        self.journal.append("status.record_outcomes")
        self.delivery_writes += sorted({("record", o.job.notification_id, o.job.user_id) for o in outcomes})
        return [
            self._record(
                o.job, f"v{o.version}", o.state, o.error, provider_message_id=o.provider_message_id, redriven=o.redriven
            )
            for o in outcomes
        ]

    def claim_delivery(
        self,
        job: DeliveryJob,
        owner: str,
        until: datetime,
        parked_at: datetime | None = None,
        invocation: str | None = None,
    ) -> Claim:
        """One delivery's claim as `claim_deliveries` makes it (tests set the scene with it)."""
        self.journal.append("status.claim_delivery")
        return self._claim(job, owner, until, parked_at, invocation)

    def _claim(
        self, job: DeliveryJob, owner: str, until: datetime, parked_at: datetime | None, invocation: str | None
    ) -> Claim:
        key = (job.notification_id, job.delivery_id)
        records = self.records.setdefault(job.notification_id, {})
        previous = records.get(job.delivery_id)
        state = previous.status if previous else None
        marker = self.markers.get(key)
        unsettled = None
        if invocation is not None and marker is not None and marker.by != invocation and marker.until < now():
            unsettled = Transition(marker.by, marker.until, marker.from_state, state)
        if state in (DeliveryState.SENT, DeliveryState.FAILED):
            return Claim(granted=False, done=True, previous=state, unsettled=unsettled)
        if state is DeliveryState.DEAD_LETTERED:
            # Only a message Herald parked, no earlier than this dead-lettering, revives it (an operator's redrive)
            dead_at = self.dead_lettered_at.get(key)
            if parked_at is None or (dead_at is not None and parked_at < dead_at):
                return Claim(granted=False, done=True, dead_lettered=True, previous=state, unsettled=unsettled)
        held = self.claims.get(key)
        if state is DeliveryState.SENDING and held and held.until >= now():
            return Claim(granted=False, busy_until=held.until, previous=state, unsettled=unsettled)
        self.claims[key] = Held(owner, until)
        attempt = self.round_attempts.get(key, 0) + 1
        self.round_attempts[key] = attempt
        if invocation is not None:
            self.markers[key] = Marker(invocation, until, state)
        changes = {"status": DeliveryState.SENDING, "attempts": (previous.attempts if previous else 0) + 1}
        if previous is None:
            records[job.delivery_id] = DeliveryRecord(
                user_id=job.user_id,
                device_id=job.device_id,
                channel=job.channel,
                updated_at=now(),
                queued_at=job.queued_at or job.accepted_at,
                **changes,
            )
        else:
            records[job.delivery_id] = previous.model_copy(update={**changes, "updated_at": now()})
        return Claim(
            granted=True,
            attempt=attempt,
            taken_over=state is DeliveryState.SENDING,
            redriven=state is DeliveryState.DEAD_LETTERED,
            previous=state,
            unsettled=unsettled,
        )

    def record_outcome(
        self,
        job: DeliveryJob,
        owner: str,
        state: DeliveryState,
        error: str | None = None,
        provider_message_id: str | None = None,
        redriven: bool = False,
    ) -> bool:
        self.journal.append("status.record_outcome")
        return self._record(job, owner, state, error, provider_message_id, redriven)

    def _record(
        self,
        job: DeliveryJob,
        owner: str,
        state: DeliveryState,
        error: str | None,
        provider_message_id: str | None = None,
        redriven: bool = False,
    ) -> bool:
        key = (job.notification_id, job.delivery_id)
        held = self.claims.get(key)
        if held is None or held.owner != owner:
            return False
        del self.claims[key]
        self.attempts.append(Attempt(job.delivery_id, state, error, provider_message_id))
        at = now()
        previous = self.records[job.notification_id][job.delivery_id]
        changes: dict[str, object] = {"status": state, "updated_at": at}
        if error is not None:
            changes["last_error"] = error
        if state is DeliveryState.SENT:
            changes["sent_at"] = at
            changes["last_error"] = None
            if provider_message_id:
                changes["provider_message_id"] = provider_message_id
        if state is DeliveryState.DEAD_LETTERED:
            self.round_attempts[key] = 0
            self.dead_lettered_at[key] = at
        if redriven:
            changes["redrives"] = previous.redrives + 1
            changes["redriven_at"] = at
        self.records[job.notification_id][job.delivery_id] = previous.model_copy(update=changes)
        return True

    def tally_exists(self, notification_id: str, page: str, invocation: str) -> bool:
        self.journal.append("status.tally_exists")
        return (notification_id, page, invocation) in self.tallies

    def record_tally(
        self,
        notification_id: str,
        page: str,
        invocation: str,
        counts: Mapping[str, int],
        recovered: Mapping[str, Mapping[str, int]],
    ) -> None:
        self.journal.append("status.record_tally")
        self.tallies[(notification_id, page, invocation)] = {
            "counts": {state: n for state, n in counts.items() if n},
            "recovered": {key: dict(changes) for key, changes in recovered.items()},
        }

    def delivery(self, notification_id: str, delivery_id: str) -> DeliveryRecord:
        """A delivery's record, read as the API reads it: an in-app one from its inbox item too."""
        record = self.records.get(notification_id, {}).get(delivery_id)
        item = self.inbox.items.get((notification_id, delivery_id)) if self.inbox is not None else None
        if item is None:
            if record is None:
                raise KeyError(delivery_id)
            return record
        job, at = item
        return inbox_sent(
            record
            or DeliveryRecord(
                user_id=job.user_id, device_id=job.device_id, channel=job.channel, status=DeliveryState.QUEUED
            ),
            at,
        )

    # --- views --------------------------------------------------------------------------------------

    def done_pages(self, notification_id: str) -> dict[str, FakePage]:
        return {
            page: held
            for (nid, page), held in sorted(self.pages.items())
            if nid == notification_id and held.done_at is not None
        }

    def is_fanned_out(self, notification_id: str) -> bool:
        pages = {page: held.plain() for (nid, page), held in self.pages.items() if nid == notification_id}
        notification = self.accepted.get(notification_id) or next(
            (held.notification for (nid, _), held in self.pages.items() if nid == notification_id), None
        )
        topic = notification is not None and notification.topic is not None
        return bool(pages) and fanned_out(pages, topic)

    @property
    def fanned_out(self) -> dict[str, FannedOut]:
        """Each notification whose fan-out ran to its end, its pages summed."""
        done: dict[str, FannedOut] = {}
        for notification_id in {nid for nid, _ in self.pages}:
            if not self.is_fanned_out(notification_id):
                continue
            summary = FannedOut(0, [], [], [])
            for held in self.done_pages(notification_id).values():
                assert held.outcome is not None
                summary.delivery_count += held.outcome.delivery_count
                summary.without_devices += held.outcome.without_devices
                summary.inactive_skipped += held.outcome.inactive_skipped
                summary.planned += held.outcome.planned
                summary.skipped += held.outcome.skipped
                summary.deferred += held.outcome.deferred
            done[notification_id] = summary
        return done

    def get(self, notification_id: str) -> NotificationRecord | None:
        notification = self.accepted.get(notification_id)
        pages = self.done_pages(notification_id)
        if notification is None and not pages:
            return None
        notification = notification or next(iter(pages.values())).notification
        outcomes = [held.outcome for held in pages.values() if held.outcome is not None]
        planned = [entry for outcome in outcomes for entry in outcome.entries()]
        delivery_count = sum(outcome.delivery_count for outcome in outcomes)
        if any(outcome.paged for outcome in outcomes):
            tallies = [t for (nid, _, _), t in self.tallies.items() if nid == notification_id]
            held_now = {
                DeliveryState.SKIPPED.value: sum(len(outcome.skipped) for outcome in outcomes),
                DeliveryState.DEFERRED.value: sum(
                    1 for outcome in outcomes for deferred in outcome.deferred if deferred.until > now()
                ),
            }
            counts = tally_counts(tallies, delivery_count, held_now)
            deliveries = self.listing(notification_id, planned)
        else:
            deliveries = self.listing(notification_id, planned)
            claimed = {f"{d.user_id}#{d.device_id}" for d in deliveries}
            deliveries += [
                self.delivery(notification_id, did)
                for did in self.records.get(notification_id, {})
                if did not in claimed
            ]
            counts = dict(Counter(delivery.status.value for delivery in deliveries))
        complete = self.is_fanned_out(notification_id)
        scheduled = notification.send_at is not None and notification.send_at > now()
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(complete, counts, scheduled=scheduled, cancelled=notification_id in self.cancelled),
            send_at=notification.send_at,
            cancelled_at=self.cancelled.get(notification_id),
            category=notification.category,
            template=notification.template.template_id if notification.template else None,
            priority=notification.priority,
            recipients=notification.recipients,
            topic=notification.topic,
            channels=notification.channels,
            accepted_at=notification.accepted_at,
            fanned_out_at=now() if complete else None,
            fanout_pages=len([page for page in pages if page != ROOT_PAGE]),
            delivery_count=delivery_count,
            recipients_without_devices=[u for o in outcomes for u in o.without_devices][:LISTED_NAMES],
            recipients_without_devices_count=sum(o.without_devices_count for o in outcomes),
            inactive_devices_skipped=[d for o in outcomes for d in o.inactive_skipped][:LISTED_NAMES],
            inactive_devices_skipped_count=sum(o.inactive_skipped_count for o in outcomes),
            counts=counts,
            deliveries=deliveries,
        )

    def listing(self, notification_id: str, planned: list[str]) -> list[DeliveryRecord]:
        records = self.records.get(notification_id, {})
        claimed = {f"{d.user_id}#{d.device_id}" for d in records.values()}
        listed = []
        for entry in planned:
            delivery_id = "#".join(entry.split("#", 2)[:2])
            if delivery_id in claimed or (
                self.inbox is not None and (notification_id, delivery_id) in self.inbox.items
            ):
                listed.append(self.delivery(notification_id, delivery_id))
            else:
                listed += planned_records([entry], set(), now())
        return listed

    def deliveries(self, notification_id: str, limit: int, cursor: str | None) -> DeliveryPage | None:
        record = self.get(notification_id)
        if record is None:
            return None
        start = int(cursor or 0)
        rest = record.deliveries[start : start + limit]
        more = start + limit < len(record.deliveries)
        return DeliveryPage(deliveries=rest, next_cursor=str(start + limit) if more else None)


class FakePublisher:
    """A Publisher (the delivery topic) that keeps what it published.

    Publishing a job of a notification in `failing` raises BatchEntryFailed, as DeliveryTopic
    does when SNS refuses an entry; the jobs of that call are then not kept.
    """

    def __init__(self, failing: Iterable[str] = (), journal: list[str] | None = None):
        self.failing = set(failing)
        self.journal = journal if journal is not None else []
        self.published: list[DeliveryJob] = []

    def publish(self, jobs: list[DeliveryJob]) -> int:
        self.journal.append("topic.publish")
        failed = [
            {"Id": str(index), "Code": "InternalError", "Message": "SNS is unavailable", "SenderFault": False}
            for index, job in enumerate(jobs)
            if job.notification_id in self.failing
        ]
        if failed:
            raise BatchEntryFailed(failed)
        self.published.extend(jobs)
        return len(jobs)


class FakeSender:
    """A ChannelSender: answers `provider-<n>` message ids, or raises `error` when given one."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.sent: list[DeliveryJob] = []
        self.tried: list[DeliveryJob] = []

    def send(self, job: DeliveryJob) -> str:
        self.tried.append(job)
        if self.error is not None:
            raise self.error
        self.sent.append(job)
        return f"provider-{len(self.sent)}"


class FakeInboxSender(FakeSender):
    """The in-app channel as DynamoInbox makes it: one item per delivery, and a copy finds it (AlreadyDelivered).
    Its items are the records of in-app deliveries sent on a first try: give it to FakeStatusStore(inbox=...)."""

    def __init__(self, error: Exception | None = None):
        super().__init__(error)
        self.items: dict[tuple[str, str], tuple[DeliveryJob, datetime]] = {}

    def send(self, job: DeliveryJob) -> str:
        key = (job.notification_id, job.delivery_id)
        if key in self.items:
            self.tried.append(job)
            raise AlreadyDelivered(f"inbox:{job.user_id}:{job.notification_id}")
        message_id = super().send(job)
        self.items[key] = (job, now())
        return message_id

    def delivered(self, wanted: list[InboxDelivery]) -> dict[InboxDelivery, int]:
        found = {}
        for one in wanted:
            item = self.items.get((one.notification_id, f"{one.user_id}#{one.device_id}"))
            if item is not None and item[0].accepted_at.isoformat() == one.accepted_at:
                found[one] = int(item[1].timestamp() * 1000)
        return found


class FakeSqs:
    """The few SQS calls a consumer makes: dead letters sent and visibility changes, kept in lists."""

    def __init__(self, failing_sends: bool = False) -> None:
        self.failing_sends = failing_sends
        self.sent: list[dict[str, Any]] = []
        self.visibility: list[tuple[str, int]] = []

    def send_message(self, **request: Any) -> dict[str, Any]:
        if self.failing_sends:
            raise RuntimeError("SQS is unavailable")
        self.sent.append(request)
        return {"MessageId": f"dlq-{len(self.sent)}"}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.visibility.extend((entry["ReceiptHandle"], entry["VisibilityTimeout"]) for entry in Entries)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}

    def reasons(self) -> list[str]:
        return [request["MessageAttributes"]["herald-reason"]["StringValue"] for request in self.sent]


class FakePushEndpoints:
    """PushEndpoints over an in-memory SNS: endpoint ARN -> (platform, token).

    Like SNS, updating an existing endpoint changes its token, never its platform application, and a
    token has one endpoint: registering a known token (for any user) returns its endpoint, as
    SnsPushEndpoints does after SNS's "already exists" answer.
    """

    def __init__(self, platforms: Iterable[Platform] = (Platform.APNS, Platform.FCM)):
        self.platforms = set(platforms)
        self.endpoints: dict[str, tuple[Platform, str]] = {}
        self.users: dict[str, str] = {}  # endpoint ARN -> CustomUserData (the user id)
        self.removed: list[str] = []
        self._created = 0

    def supports(self, platform: Platform) -> bool:
        return platform in self.platforms

    def register(self, platform: Platform, token: str, user_id: str, existing_arn: str | None) -> str:
        if existing_arn and existing_arn in self.endpoints:
            self.endpoints[existing_arn] = (self.endpoints[existing_arn][0], token)
            self.users[existing_arn] = user_id
            return existing_arn
        for arn, (held_platform, held_token) in self.endpoints.items():
            if (held_platform, held_token) == (platform, token):
                # SNS keeps one endpoint per token: SnsPushEndpoints takes it over, naming the new user
                self.users[arn] = user_id
                return arn
        self._created += 1
        arn = f"arn:aws:sns:us-east-1:123456789012:endpoint/{platform.value.upper()}/herald/{self._created}"
        self.endpoints[arn] = (platform, token)
        self.users[arn] = user_id
        return arn

    def remove(self, endpoint_arn: str) -> None:
        self.removed.append(endpoint_arn)
        self.endpoints.pop(endpoint_arn, None)


class FakeIntakeQueue:
    """An Intake (the API's lanes, or fan-out's own queue for continuations): keeps what was sent."""

    def __init__(self, journal: list[str] | None = None):
        self.journal = journal if journal is not None else []
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.journal.append("intake.send")
        self.sent.append(notification)

    def send_all(self, notifications: list[Notification]) -> None:
        self.journal.append("intake.send_all")
        self.sent.extend(notifications)


class FakeIdempotencyStore:
    """An IdempotencyStore in a dict, with DynamoIdempotencyStore's conditions.

    Like DynamoDB's TTL, nothing is ever removed by time: an expired record stays until reclaimed.
    `failing_complete` makes complete() raise, as a throttled or unreachable table would.
    """

    def __init__(self, failing_complete: bool = False):
        self.records: dict[str, IdempotencyRecord] = {}
        self.failing_complete = failing_complete

    def claim(self, record: IdempotencyRecord, at: int) -> IdempotencyRecord | None:
        existing = self.records.get(record.key)
        if existing is not None and existing.expires_at > at:
            return existing
        self.records[record.key] = record
        return None

    def take_over(self, record: IdempotencyRecord, abandoned: IdempotencyRecord) -> bool:
        existing = self.records.get(record.key)
        if existing is None or existing.state is not RecordState.IN_PROGRESS:
            return False
        if existing.locked_until != abandoned.locked_until:
            return False
        self.records[record.key] = record
        return True

    def complete(self, record: IdempotencyRecord, response: StoredResponse) -> None:
        if self.failing_complete:
            raise RuntimeError("injected: the idempotency table is unavailable")
        existing = self.records[record.key]
        self.records[record.key] = existing.model_copy(update={"state": RecordState.COMPLETED, "response": response})

    def release(self, record: IdempotencyRecord) -> None:
        existing = self.records.get(record.key)
        if existing and existing.state is RecordState.IN_PROGRESS and existing.locked_until == record.locked_until:
            del self.records[record.key]


@dataclass
class FakeContext:
    """The attributes of a LambdaContext that Powertools' logger and batch processor read."""

    function_name: str = "herald-test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:herald-test-function"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/herald-test-function"
    log_stream_name: str = "2026/11/21/[$LATEST]0123456789abcdef"
    remaining_millis: int = field(default=30_000, repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


REGISTERED_AT = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def make_device(
    user_id: str,
    device_id: str,
    channel: Channel,
    address: str | None = None,
    platform: Platform | None = None,
    endpoint_arn: str | None = None,
) -> Device:
    """A stored device, registered at a fixed time in the past."""
    return Device(
        user_id=user_id,
        device_id=device_id,
        channel=channel,
        address=address,
        platform=platform,
        endpoint_arn=endpoint_arn,
        created_at=REGISTERED_AT,
        updated_at=REGISTERED_AT,
    )


class FakeProfileStore:
    """A ProfileStore in a dict; counts the batched reads fan-out makes."""

    def __init__(self, preferences: dict[str, Preferences] | None = None):
        self.preferences = dict(preferences or {})
        self.batch_reads: list[list[str]] = []

    def get(self, user_id: str) -> Preferences | None:
        return self.preferences.get(user_id)

    def put(self, user_id: str, preferences: Preferences) -> None:
        self.preferences[user_id] = preferences

    def get_many(self, user_ids: list[str]) -> dict[str, Preferences]:
        self.batch_reads.append(list(user_ids))
        return {user_id: self.preferences[user_id] for user_id in user_ids if user_id in self.preferences}


class FakeTemplateStore:
    def __init__(self) -> None:
        self.templates: dict[str, TemplateView] = {}

    def get(self, template_id: str) -> TemplateView | None:
        return self.templates.get(template_id)

    def put(self, template_id: str, document: TemplateDocument) -> TemplateView:
        view = TemplateView(template_id=template_id, updated_at=now(), **document.model_dump())
        self.templates[template_id] = view
        return view

    def delete(self, template_id: str) -> bool:
        return self.templates.pop(template_id, None) is not None


class FakeRenderedContent:
    def __init__(self) -> None:
        self.renderings: dict[str, Rendering] = {}
        self.reads = 0

    def put(self, notification_id: str, rendering: Rendering) -> None:
        self.renderings[notification_id] = rendering

    def get(self, notification_id: str) -> Rendering | None:
        self.reads += 1
        return self.renderings.get(notification_id)


class FakeHolds:
    """The schedule queue: keeps each held message with its delay."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.held: list[tuple[HeldMessage, int]] = []

    def hold(self, held: HeldMessage, delay_seconds: int) -> None:
        self.journal.append("holds.hold")
        self.held.append((held, delay_seconds))


class FakeHistory:
    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.entries: list[tuple[str, HistoryEntry]] = []

    def record(self, entries: list[tuple[str, HistoryEntry]]) -> None:
        self.journal.append("history.record")
        self.entries.extend(entries)

    def page(self, user_id: str, limit: int, cursor: str | None) -> HistoryPage:
        mine = [entry for owner, entry in reversed(self.entries) if owner == user_id]
        return HistoryPage(notifications=mine[:limit])
