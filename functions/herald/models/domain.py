"""The product's vocabulary: priorities, channels, devices and the messages between functions."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, Field, model_validator

# Ids travel in URL paths and DynamoDB keys ("recipient#<user>", "d#<device>"): no '#', '/' or spaces.
ID_PATTERN = r"^[A-Za-z0-9._:@+-]{1,128}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"

MAX_RECIPIENTS = 100
# A topic's subscribers are spread over this many partitions: a broadcast fans out through as many
# chains of pages at once, and no single partition takes every subscription's writes. Fixed: a
# subscriber's shard is a hash of its user id, so changing it would orphan existing subscriptions.
SUBSCRIBER_SHARDS = 16
MAX_TITLE = 200
MAX_BODY = 4000
MAX_DATA_BYTES = 4096
# Levels of objects and arrays in a notification's `data`, the object itself included. Far below what
# the functions' parsers take (pydantic's JSON parser stops near 200 levels for the whole message).
MAX_DATA_DEPTH = 32
MAX_PUSH_TOKEN = 4096


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class Platform(StrEnum):
    APNS = "apns"
    FCM = "fcm"


class DeliveryState(StrEnum):
    """Where one delivery (one notification to one device) stands."""

    QUEUED = "queued"  # published to its priority queue, not yet tried
    SENDING = "sending"  # claimed by a deliver function, which is calling the provider
    RETRYING = "retrying"  # an attempt failed; the queue brings it back after a backoff
    SENT = "sent"  # the provider accepted it
    FAILED = "failed"  # cannot be delivered; no retry
    DEAD_LETTERED = "dead_lettered"  # the last allowed attempt failed; the message sits in the DLQ
    SKIPPED = "skipped"  # left out by the user's preferences (or the template has no content for it); final
    DEFERRED = "deferred"  # held until the user's quiet hours end, then queued


TERMINAL_DELIVERY_STATES = {
    DeliveryState.SENT,
    DeliveryState.FAILED,
    DeliveryState.DEAD_LETTERED,
    DeliveryState.SKIPPED,
}


class NotificationState(StrEnum):
    """A notification's overall status, derived from its deliveries."""

    ACCEPTED = "accepted"  # in the intake queue, not fanned out yet
    IN_PROGRESS = "in_progress"  # fanned out, some deliveries not terminal yet
    DELIVERED = "delivered"  # every delivery sent
    PARTIALLY_DELIVERED = "partially_delivered"  # all terminal, some sent, some not
    FAILED = "failed"  # all terminal, none sent
    DEAD_LETTERED = "dead_lettered"  # all terminal, some wait in a DLQ: a redrive may still deliver them
    NO_DEVICES = "no_devices"  # fanned out, but no recipient had a matching device
    SCHEDULED = "scheduled"  # accepted with a send_at still to come
    CANCELLED = "cancelled"  # cancelled before fan-out: nothing was or will be sent
    SKIPPED = "skipped"  # fanned out, and every delivery was skipped by the recipients' preferences


def now() -> datetime:
    return datetime.now(UTC)


class DeviceKey(NamedTuple):
    user_id: str
    device_id: str


class Device(BaseModel):
    """A registered device as Herald stores it."""

    user_id: str
    device_id: str
    channel: Channel
    address: str | None = None
    platform: Platform | None = None
    endpoint_arn: str | None = None  # SNS platform endpoint of a push device
    created_at: datetime
    updated_at: datetime
    # Fan-out skips an inactive device until it registers again: SNS reported its push endpoint disabled
    # or gone, its push token was registered by another device, SES reported its address bouncing or
    # complaining, or its number opted out of SMS. `inactive_reason` says which.
    active: bool = True
    inactive_reason: str | None = None
    inactive_since: datetime | None = None

    @property
    def key(self) -> DeviceKey:
        return DeviceKey(self.user_id, self.device_id)


class PageCursor(BaseModel):
    """Where a fan-out page starts reading its audience: at `user`, after that user's device `after_device`."""

    user: str
    after_device: str | None = None


class PagePosition(BaseModel):
    """Which fan-out page an intake message asks for. A recipients list is one chain (0); a topic has
    one chain per subscriber shard. Pages of a chain follow each other: each one queues the next."""

    chain: int = Field(default=0, ge=0, lt=SUBSCRIBER_SHARDS)
    index: int = Field(default=0, ge=0)
    cursor: PageCursor | None = None  # None: the chain's first user

    @property
    def key(self) -> str:
        return f"{self.chain:02d}.{self.index:06d}"


ROOT_PAGE = "root"  # a topic notification's first page: it starts one chain per subscriber shard


class TemplateUse(BaseModel):
    """What fan-out needs of a notification's template: the rest was rendered at accept time and is
    read by the deliver function (StatusTable item "content")."""

    template_id: str
    locales: list[str]
    default_locale: str
    channels: list[Channel]  # channels the template has content for; other devices are skipped


class Notification(BaseModel):
    """The intake queue's message: an accepted notification waiting for fan-out, to its recipients or a
    topic's subscribers. `page` is absent on the API's message and set on a fan-out's continuation."""

    notification_id: str
    recipients: list[str] | None = None
    topic: str | None = None
    title: str = ""  # empty when `template` is set: the content is rendered per channel and locale
    body: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    channels: list[Channel] | None = None
    accepted_at: datetime
    category: str | None = None  # what preferences are kept by ("marketing", "security")
    send_at: datetime | None = None  # scheduled: held until then, fanned out after
    template: TemplateUse | None = None
    page: PagePosition | None = None
    # Set by the API on a notification to one recipient that it recorded: the record of its first fan-out
    # page is kept in that recipient's history, where it is also the history entry (one write, not two).
    # A message queued without the API leaves it unset, and its page record stays in the status table.
    page_in_history: bool = False

    @model_validator(mode="after")
    def _one_audience(self) -> Self:
        if (self.recipients is None) == (self.topic is None):
            raise ValueError("a notification has either recipients or a topic")
        if self.page_in_history and (self.recipients is None or len(self.recipients) != 1):
            raise ValueError("only a notification to one recipient keeps its page record in the history")
        return self

    @property
    def history_owner(self) -> str | None:
        """The recipient whose history item holds this message's page record, if it does: its first page's."""
        if self.page_in_history and self.recipients and self.page_key == PagePosition().key:
            return self.recipients[0]
        return None

    @property
    def page_key(self) -> str:
        """The key of the page this message asks for."""
        if self.page is None:
            return ROOT_PAGE if self.topic is not None else PagePosition().key
        return self.page.key

    def at(self, page: PagePosition) -> Notification:
        """The continuation: this notification, asking for `page`."""
        return self.model_copy(update={"page": page})


class DeliveryJob(BaseModel):
    """A priority queue's message: one notification to one device."""

    notification_id: str
    user_id: str
    device_id: str
    channel: Channel
    address: str | None = None
    platform: Platform | None = None
    endpoint_arn: str | None = None
    title: str
    body: str
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority
    accepted_at: datetime
    queued_at: datetime | None = None  # when fan-out published it (or the schedule function released it)
    # The fan-out page it came from, when its notification has more than one: its outcome is then
    # counted in a tally per page (the status of a broadcast is read from tallies, not from each delivery).
    page: str | None = None
    # Templated: the locale whose rendering this delivery gets (read at delivery), and, once read,
    # the email's HTML part. None for a notification written out in full.
    content_locale: str | None = None
    html: str | None = None

    @property
    def delivery_id(self) -> str:
        return f"{self.user_id}#{self.device_id}"

    @classmethod
    def for_device(
        cls, notification: Notification, device: Device, queued_at: datetime | None = None, page: str | None = None
    ) -> DeliveryJob:
        return cls(
            notification_id=notification.notification_id,
            user_id=device.user_id,
            device_id=device.device_id,
            channel=device.channel,
            address=device.address,
            platform=device.platform,
            endpoint_arn=device.endpoint_arn,
            title=notification.title,
            body=notification.body,
            data=notification.data,
            priority=notification.priority,
            accepted_at=notification.accepted_at,
            queued_at=queued_at,
            page=page,
        )


# A priority queue's message holds one delivery (a DeliveryJob), or one recipient's deliveries of a notification
# on one channel (a DeliveryGroup, up to GROUP_DEVICES): one message, one receive and delete, one SNS entry for
# them all. Each delivery of a group is still claimed, sent and recorded as its own.
GROUP_DEVICES = 10


class GroupedDevice(BaseModel):
    """What a delivery of a group has of its own: the rest is the group's first job's."""

    device_id: str
    address: str | None = None
    platform: Platform | None = None
    endpoint_arn: str | None = None
    content_locale: str | None = None


class DeliveryGroup(BaseModel):
    """A recipient's deliveries of one notification page on one channel, as one queue message: the first job in
    full, the others by their devices. Its own shape ("job" and "more"), so that a version of the deliver
    function that reads single jobs refuses it (to the DLQ, with the reason) rather than send to one device."""

    job: DeliveryJob
    more: list[GroupedDevice] = Field(min_length=1, max_length=GROUP_DEVICES - 1)

    @property
    def priority(self) -> Priority:
        return self.job.priority

    def jobs(self) -> list[DeliveryJob]:
        return [self.job, *(self.job.model_copy(update=device.model_dump()) for device in self.more)]

    @classmethod
    def of(cls, jobs: list[DeliveryJob]) -> DeliveryGroup:
        first, *others = jobs
        fields = set(GroupedDevice.model_fields)
        return cls(job=first, more=[GroupedDevice(**job.model_dump(include=fields)) for job in others])


def group_key(job: DeliveryJob) -> tuple[str, str | None, str, str]:
    """What the deliveries of one group share: notification, page, recipient, channel. Fan-out puts them in one
    message; a deliver batch claims and records them together (all of a recipient's live in one status item,
    so grouping across channels would save more writes; it would also widen what a crash leaves "outcome
    unknown" to every group mate: docs/reliability.md)."""
    return (job.notification_id, job.page, job.user_id, job.channel.value)


def _by_group(jobs: list[DeliveryJob]) -> list[list[DeliveryJob]]:
    keyed: dict[tuple[str, str | None, str, str], list[DeliveryJob]] = {}
    for job in jobs:
        keyed.setdefault(group_key(job), []).append(job)
    return list(keyed.values())


def message_count(jobs: list[DeliveryJob]) -> int:
    """How many queue messages `jobs` make (delivery_messages), without making them."""
    return sum(math.ceil(len(group) / GROUP_DEVICES) for group in _by_group(jobs))


def delivery_messages(jobs: list[DeliveryJob]) -> list[DeliveryJob | DeliveryGroup]:
    """The queue messages of `jobs`, in order of their first job: the jobs of one group key together, up to
    GROUP_DEVICES a message; a job alone stays a job."""
    messages: list[DeliveryJob | DeliveryGroup] = []
    for group in _by_group(jobs):
        for start in range(0, len(group), GROUP_DEVICES):
            part = group[start : start + GROUP_DEVICES]
            messages.append(part[0] if len(part) == 1 else DeliveryGroup.of(part))
    return messages


def jobs_of(body: str) -> list[DeliveryJob]:
    """The deliveries a priority queue message holds: a group's, or the one job. Raises ValueError (pydantic's
    ValidationError) for a body that is neither."""
    try:
        data = json.loads(body)
    except ValueError:
        return [DeliveryJob.model_validate_json(body)]  # raises pydantic's "body: Invalid JSON"
    if isinstance(data, dict) and "job" in data:
        return DeliveryGroup.model_validate(data).jobs()
    return [DeliveryJob.model_validate(data)]
