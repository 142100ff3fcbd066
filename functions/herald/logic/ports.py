"""What Herald's logic needs from outside: the Protocols that adapters (and tests' fakes) implement."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Protocol

from herald.models.domain import Channel, DeliveryJob, DeliveryState, Device, DeviceKey, Notification, Platform
from herald.models.idempotency import IdempotencyRecord, StoredResponse
from herald.models.inbox import InboxPage
from herald.models.status import Claim, NotificationRecord


class DeviceRegistry(Protocol):
    def put(self, device: Device) -> None: ...
    def get(self, user_id: str, device_id: str) -> Device | None: ...
    def delete(self, user_id: str, device_id: str) -> bool: ...
    def devices_of(self, user_id: str) -> Iterator[Device]: ...
    def mark_inactive(
        self, user_id: str, device_id: str, reason: str, endpoint_arn: str | None = None, address: str | None = None
    ) -> bool:
        """Inactive, if the device still has this endpoint or address: a registration since wins."""
        ...

    def devices_with_endpoint(self, endpoint_arn: str) -> list[DeviceKey]:
        """Devices pointing at a push endpoint; may lag a write by a moment (an index)."""
        ...

    def devices_with_contact(self, channel: Channel, address: str) -> list[DeviceKey]:
        """Email or SMS devices with this address; may lag a write by a moment (an index)."""
        ...

    def take_endpoint(self, endpoint_arn: str, device: DeviceKey) -> DeviceKey | None:
        """Atomically makes `device` the endpoint's one holder; returns the holder it replaced."""
        ...

    def release_endpoint(self, endpoint_arn: str, device: DeviceKey) -> bool:
        """Forgets the holder if it is `device` (or none is recorded); False if another device holds it."""
        ...

    def move_off_endpoint(self, endpoint_arn: str, device: DeviceKey, reason: str) -> bool:
        """Deactivates `device` and takes the endpoint off it, unless it is the holder (checked atomically)."""
        ...


class StatusStore(Protocol):
    def record_accepted(self, notification: Notification) -> None: ...
    def claim_fan_out(self, notification_id: str, owner: str, until: datetime) -> Claim: ...
    def record_fanned_out(
        self, notification_id: str, jobs: list[DeliveryJob], without_devices: list[str], inactive_skipped: list[str]
    ) -> None: ...
    def claim_delivery(self, job: DeliveryJob, owner: str, until: datetime, parked_at: datetime | None = None) -> Claim:
        """`parked_at`: the herald-dead-lettered-at the message carries; only such a message revives a dead letter."""
        ...

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
