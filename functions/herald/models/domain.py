"""The product's vocabulary: priorities, channels, devices and the messages between functions."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

# Ids travel in URL paths and DynamoDB sort keys ("delivery#<user>#<device>"): no '#', '/' or spaces.
ID_PATTERN = r"^[A-Za-z0-9._:@+-]{1,128}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"

MAX_RECIPIENTS = 100
MAX_TITLE = 200
MAX_BODY = 4000
MAX_DATA_BYTES = 4096
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
    NO_DEVICES = "no_devices"  # fanned out, but no recipient had a matching device
    SCHEDULED = "scheduled"  # accepted with a send_at still to come
    CANCELLED = "cancelled"  # cancelled before fan-out: nothing was or will be sent
    SKIPPED = "skipped"  # fanned out, and every delivery was skipped by the recipients' preferences


def now() -> datetime:
    return datetime.now(UTC)


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
    # SNS reported the push endpoint disabled or gone: fan-out skips the device until it registers again.
    active: bool = True
    inactive_reason: str | None = None
    inactive_since: datetime | None = None


class TemplateUse(BaseModel):
    """What fan-out needs of a notification's template: the rest was rendered at accept time and is
    read by the deliver function (StatusTable item "content")."""

    template_id: str
    locales: list[str]
    default_locale: str
    channels: list[Channel]  # channels the template has content for; other devices are skipped


class Notification(BaseModel):
    """The intake queue's message: an accepted notification waiting for fan-out."""

    notification_id: str
    recipients: list[str]
    title: str = ""  # empty when `template` is set: the content is rendered per channel and locale
    body: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    channels: list[Channel] | None = None
    accepted_at: datetime
    category: str | None = None  # what preferences are kept by ("marketing", "security")
    send_at: datetime | None = None  # scheduled: held until then, fanned out after
    template: TemplateUse | None = None


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
    # Templated: the locale whose rendering this delivery gets (read at delivery), and, once read,
    # the email's HTML part. None for a notification written out in full.
    content_locale: str | None = None
    html: str | None = None

    @property
    def delivery_id(self) -> str:
        return f"{self.user_id}#{self.device_id}"

    @classmethod
    def for_device(cls, notification: Notification, device: Device) -> DeliveryJob:
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
        )
