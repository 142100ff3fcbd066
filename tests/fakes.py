"""In-memory stand-ins for Herald's adapters, so logic and handlers are tested without AWS.

Each fake keeps what it was asked to do in plain attributes for the test to assert on. Fakes
that take a `journal` append one line per call to it; hand the same list to several fakes to
assert the order of calls across them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from herald.adapters.batches import BatchEntryFailed
from herald.adapters.status import planned_records
from herald.adapters.status_choices import held_attributes, held_records
from herald.models.domain import Channel, DeliveryJob, DeliveryState, Device, Notification, Platform, now
from herald.models.holds import HeldMessage
from herald.models.idempotency import IdempotencyRecord, RecordState, StoredResponse
from herald.models.inbox import HistoryEntry, HistoryPage
from herald.models.preferences import Preferences
from herald.models.status import (
    Cancellation,
    Claim,
    DeferredDelivery,
    DeliveryRecord,
    NotificationRecord,
    SkippedDelivery,
    overall_state,
)
from herald.models.templates import Rendering, TemplateDocument, TemplateView


class FakeDeviceRegistry:
    """A DeviceRegistry in a dict keyed by (user_id, device_id)."""

    def __init__(self, devices: Iterable[Device] = ()):
        self.devices: dict[tuple[str, str], Device] = {}
        for device in devices:
            self.put(device)

    def put(self, device: Device) -> None:
        self.devices[(device.user_id, device.device_id)] = device

    def get(self, user_id: str, device_id: str) -> Device | None:
        return self.devices.get((user_id, device_id))

    def delete(self, user_id: str, device_id: str) -> bool:
        return self.devices.pop((user_id, device_id), None) is not None

    def mark_inactive(self, user_id: str, device_id: str, endpoint_arn: str, reason: str) -> bool:
        device = self.devices.get((user_id, device_id))
        if device is None or device.endpoint_arn != endpoint_arn:
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


class Attempt(NamedTuple):
    delivery_id: str
    state: DeliveryState
    error: str | None
    provider_message_id: str | None


@dataclass
class FannedOut:
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


class FakeStatusStore:
    """A StatusStore that keeps the summary, delivery records and claims the way DynamoStatusStore does."""

    def __init__(self, journal: list[str] | None = None):
        self.journal = journal if journal is not None else []
        self.accepted: dict[str, Notification] = {}
        self.fanned_out: dict[str, FannedOut] = {}
        self.deliveries: dict[str, dict[str, DeliveryRecord]] = {}
        self.attempts: list[Attempt] = []
        self.fan_out_claims: dict[str, Held] = {}
        self.claims: dict[tuple[str, str], Held] = {}
        self.round_attempts: dict[tuple[str, str], int] = {}
        self.cancelled: dict[str, datetime] = {}

    def record_accepted(self, notification: Notification) -> None:
        self.journal.append("status.record_accepted")
        self.accepted[notification.notification_id] = notification

    def cancel(self, notification_id: str) -> Cancellation:
        self.journal.append("status.cancel")
        if notification_id not in self.accepted:
            return Cancellation.UNKNOWN
        if notification_id in self.cancelled:
            return Cancellation.ALREADY_CANCELLED
        if notification_id in self.fanned_out or notification_id in self.fan_out_claims:
            return Cancellation.TOO_LATE
        self.cancelled[notification_id] = now()
        return Cancellation.CANCELLED

    def claim_fan_out(self, notification_id: str, owner: str, until: datetime) -> Claim:
        self.journal.append("status.claim_fan_out")
        if notification_id in self.fanned_out or notification_id in self.cancelled:
            return Claim(granted=False, done=True)
        held = self.fan_out_claims.get(notification_id)
        if held and held.until >= now():
            return Claim(granted=False, busy_until=held.until)
        self.fan_out_claims[notification_id] = Held(owner, until)
        return Claim(granted=True, taken_over=held is not None)

    def record_fanned_out(
        self,
        notification_id: str,
        jobs: list[DeliveryJob],
        without_devices: list[str],
        inactive_skipped: list[str],
        skipped: list[SkippedDelivery] | None = None,
        deferred: list[DeferredDelivery] | None = None,
    ) -> None:
        self.journal.append("status.record_fanned_out")
        planned = [f"{job.delivery_id}#{job.channel.value}" for job in jobs]
        self.fanned_out[notification_id] = FannedOut(
            len(jobs) + len(deferred or []),
            list(without_devices),
            list(inactive_skipped),
            planned,
            list(skipped or []),
            list(deferred or []),
        )
        self.fan_out_claims.pop(notification_id, None)

    def claim_delivery(self, job: DeliveryJob, owner: str, until: datetime) -> Claim:
        self.journal.append("status.claim_delivery")
        key = (job.notification_id, job.delivery_id)
        records = self.deliveries.setdefault(job.notification_id, {})
        previous = records.get(job.delivery_id)
        state = previous.status if previous else None
        if state in (DeliveryState.SENT, DeliveryState.FAILED):
            return Claim(granted=False, done=True)
        held = self.claims.get(key)
        if state is DeliveryState.SENDING and held and held.until >= now():
            return Claim(granted=False, busy_until=held.until)
        self.claims[key] = Held(owner, until)
        attempt = self.round_attempts.get(key, 0) + 1
        self.round_attempts[key] = attempt
        changes = {"status": DeliveryState.SENDING, "attempts": (previous.attempts if previous else 0) + 1}
        if previous is None:
            records[job.delivery_id] = DeliveryRecord(
                user_id=job.user_id, device_id=job.device_id, channel=job.channel, updated_at=now(), **changes
            )
        else:
            records[job.delivery_id] = previous.model_copy(update={**changes, "updated_at": now()})
        return Claim(
            granted=True,
            attempt=attempt,
            taken_over=state is DeliveryState.SENDING,
            redriven=state is DeliveryState.DEAD_LETTERED,
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
        key = (job.notification_id, job.delivery_id)
        held = self.claims.get(key)
        if held is None or held.owner != owner:
            return False
        del self.claims[key]
        self.attempts.append(Attempt(job.delivery_id, state, error, provider_message_id))
        at = now()
        previous = self.deliveries[job.notification_id][job.delivery_id]
        changes: dict[str, object] = {"status": state, "updated_at": at}
        if error is not None:
            changes["last_error"] = error
        if state is DeliveryState.SENT:
            changes["sent_at"] = at
            if provider_message_id:
                changes["provider_message_id"] = provider_message_id
        if state is DeliveryState.DEAD_LETTERED:
            self.round_attempts[key] = 0
        if redriven:
            changes["redrives"] = previous.redrives + 1
            changes["redriven_at"] = at
        self.deliveries[job.notification_id][job.delivery_id] = previous.model_copy(update=changes)
        return True

    def delivery(self, notification_id: str, delivery_id: str) -> DeliveryRecord:
        return self.deliveries[notification_id][delivery_id]

    def get(self, notification_id: str) -> NotificationRecord | None:
        notification = self.accepted.get(notification_id)
        if notification is None:
            return None
        deliveries = list(self.deliveries.get(notification_id, {}).values())
        fanned_out = self.fanned_out.get(notification_id)
        if fanned_out:
            claimed = {f"{d.user_id}#{d.device_id}" for d in deliveries}
            deliveries.extend(planned_records(fanned_out.planned, claimed, now()))
            deliveries.extend(held_records(held_summary(fanned_out), claimed))
        scheduled = notification.send_at is not None and notification.send_at > now()
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(
                fanned_out is not None, deliveries, scheduled=scheduled, cancelled=notification_id in self.cancelled
            ),
            send_at=notification.send_at,
            cancelled_at=self.cancelled.get(notification_id),
            priority=notification.priority,
            recipients=notification.recipients,
            channels=notification.channels,
            accepted_at=notification.accepted_at,
            fanned_out_at=now() if fanned_out else None,
            recipients_without_devices=fanned_out.without_devices if fanned_out else [],
            inactive_devices_skipped=fanned_out.inactive_skipped if fanned_out else [],
            counts=dict(Counter(delivery.status.value for delivery in deliveries)),
            deliveries=deliveries,
        )


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

    Like SNS, updating an existing endpoint changes its token, never its platform application.
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
            if (held_platform, held_token) == (platform, token) and self.users.get(arn) != user_id:
                # As CreatePlatformEndpoint answers for a token an endpoint with other attributes holds
                message = (
                    f"Invalid parameter: Token Reason: Endpoint {arn} already exists with the same Token,"
                    " but different attributes."
                )
                raise ClientError({"Error": {"Code": "InvalidParameter", "Message": message}}, "CreatePlatformEndpoint")
        self._created += 1
        arn = f"arn:aws:sns:us-east-1:123456789012:endpoint/{platform.value.upper()}/herald/{self._created}"
        self.endpoints[arn] = (platform, token)
        self.users[arn] = user_id
        return arn

    def remove(self, endpoint_arn: str) -> None:
        self.removed.append(endpoint_arn)
        self.endpoints.pop(endpoint_arn, None)


class FakeIntakeQueue:
    """The API's IntakeQueue: keeps the notifications sent."""

    def __init__(self, journal: list[str] | None = None):
        self.journal = journal if journal is not None else []
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.journal.append("intake.send")
        self.sent.append(notification)


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


def held_summary(fanned_out: FannedOut) -> dict[str, Any]:
    """The summary attributes DynamoStatusStore writes for skipped and deferred deliveries, as plain values."""
    attributes = held_attributes(fanned_out.skipped, fanned_out.deferred)
    return {"fanned_out_at": now().isoformat(), **{name: value["S"] for name, value in attributes.items()}}


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
