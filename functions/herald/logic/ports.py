"""What Herald's logic needs from outside: the Protocols that adapters (and tests' fakes) implement."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Protocol

from herald.models.domain import Channel, DeliveryJob, DeliveryState, Device, Notification, Platform
from herald.models.holds import HeldMessage
from herald.models.idempotency import IdempotencyRecord, StoredResponse
from herald.models.inbox import HistoryEntry, HistoryPage, InboxItem, InboxPage, MarkedRead
from herald.models.preferences import Preferences
from herald.models.status import Cancellation, Claim, DeferredDelivery, NotificationRecord, SkippedDelivery
from herald.models.templates import Rendering, TemplateDocument, TemplateView


class DeviceRegistry(Protocol):
    def put(self, device: Device) -> None: ...
    def get(self, user_id: str, device_id: str) -> Device | None: ...
    def delete(self, user_id: str, device_id: str) -> bool: ...
    def devices_of(self, user_id: str) -> Iterator[Device]: ...
    def mark_inactive(self, user_id: str, device_id: str, endpoint_arn: str, reason: str) -> bool: ...


class StatusStore(Protocol):
    def record_accepted(self, notification: Notification) -> None: ...
    def claim_fan_out(self, notification_id: str, owner: str, until: datetime) -> Claim: ...
    def record_fanned_out(
        self,
        notification_id: str,
        jobs: list[DeliveryJob],
        without_devices: list[str],
        inactive_skipped: list[str],
        skipped: list[SkippedDelivery] | None = None,
        deferred: list[DeferredDelivery] | None = None,
    ) -> None: ...
    def claim_delivery(self, job: DeliveryJob, owner: str, until: datetime) -> Claim: ...
    def record_outcome(
        self,
        job: DeliveryJob,
        owner: str,
        state: DeliveryState,
        error: str | None = None,
        provider_message_id: str | None = None,
        redriven: bool = False,
    ) -> bool: ...
    def get(self, notification_id: str) -> NotificationRecord | None: ...
    def cancel(self, notification_id: str) -> Cancellation:
        """Cancels it unless fan-out has claimed it: one conditional write, which fan-out's claim also checks."""
        ...


class Inbox(Protocol):
    def add(self, job: DeliveryJob, expires_at: int) -> None: ...
    def page(self, user_id: str, limit: int, cursor: str | None) -> InboxPage: ...


class Intake(Protocol):
    """Where accepted notifications wait for fan-out."""

    def send(self, notification: Notification) -> None: ...


class Publisher(Protocol):
    """Where fan-out publishes one job per delivery, routed by priority."""

    def publish(self, jobs: list[DeliveryJob]) -> int: ...


class PushEndpoints(Protocol):
    """The platform endpoints (APNs, FCM) behind push devices."""

    def supports(self, platform: Platform) -> bool: ...
    def register(self, platform: Platform, token: str, user_id: str, existing_arn: str | None) -> str: ...
    def remove(self, endpoint_arn: str) -> None: ...


class ChannelSender(Protocol):
    def send(self, job: DeliveryJob) -> str:
        """Hands the job to the provider; returns the provider's message id."""
        ...


Senders = Mapping[Channel, ChannelSender]


class IdempotencyStore(Protocol):
    def claim(self, record: IdempotencyRecord, at: int) -> IdempotencyRecord | None:
        """Stores `record` unless an unexpired record holds its key: then returns that one."""
        ...

    def take_over(self, record: IdempotencyRecord, abandoned: IdempotencyRecord) -> bool:
        """Replaces `abandoned` by `record` if nobody changed it meanwhile."""
        ...

    def complete(self, record: IdempotencyRecord, response: StoredResponse) -> None: ...

    def release(self, record: IdempotencyRecord) -> None:
        """Frees the key after the work failed, unless another attempt took it over."""
        ...


# ---------------------------------------------------------------- preferences, templates, schedules, history


class ProfileStore(Protocol):
    """Each user's preferences (channels, categories, quiet hours, time zone, locale)."""

    def get(self, user_id: str) -> Preferences | None: ...
    def put(self, user_id: str, preferences: Preferences) -> None: ...
    def get_many(self, user_ids: list[str]) -> dict[str, Preferences]:
        """The preferences of those users that have some, in as few batched reads as the store allows."""
        ...


class TemplateStore(Protocol):
    def get(self, template_id: str) -> TemplateView | None: ...
    def put(self, template_id: str, document: TemplateDocument) -> TemplateView: ...
    def delete(self, template_id: str) -> bool: ...


class RenderedContent(Protocol):
    """A templated notification's rendering, written at accept time, read at delivery."""

    def put(self, notification_id: str, rendering: Rendering) -> None: ...
    def get(self, notification_id: str) -> Rendering | None: ...


class Holds(Protocol):
    """Where messages wait until their time (the schedule queue)."""

    def hold(self, held: HeldMessage, delay_seconds: int) -> None: ...


class History(Protocol):
    """Per user, the notifications fan-out sent them."""

    def record(self, entries: list[tuple[str, HistoryEntry]]) -> None: ...
    def page(self, user_id: str, limit: int, cursor: str | None) -> HistoryPage: ...


class InboxReadState(Protocol):
    def set_read(self, user_id: str, item_id: str, read: bool) -> InboxItem | None: ...
    def mark_all_read(self, user_id: str, at_most: int) -> MarkedRead: ...
    def unread_count(self, user_id: str) -> int: ...
