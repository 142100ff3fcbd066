"""What Herald's logic needs from outside: the Protocols that adapters (and tests' fakes) implement."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Protocol

from herald.models.domain import Channel, DeliveryJob, Device, DeviceKey, Notification, Platform
from herald.models.holds import HeldMessage
from herald.models.idempotency import IdempotencyRecord, StoredResponse
from herald.models.inbox import HistoryEntry, HistoryPage, InboxDelivery, InboxItem, InboxPage, MarkedRead
from herald.models.preferences import Preferences
from herald.models.status import (
    Cancellation,
    Claim,
    ClaimRequest,
    DeliveryPage,
    NotificationRecord,
    OutcomeRecord,
    PageOutcome,
    PageWrite,
)
from herald.models.templates import Rendering, TemplateDocument, TemplateView
from herald.models.topics import SubscriberPage, Subscription


class DeviceRegistry(Protocol):
    def put(self, device: Device) -> None: ...
    def get(self, user_id: str, device_id: str) -> Device | None: ...
    def delete(self, user_id: str, device_id: str) -> bool: ...
    def devices_of(self, user_id: str) -> Iterator[Device]: ...
    def devices_after(self, user_id: str, after: str | None, limit: int) -> tuple[list[Device], bool]:
        """Up to `limit` of the user's devices whose id sorts after `after`, in order; and whether more follow."""
        ...

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


class Subscribers(Protocol):
    """Topics' subscribers, spread over SUBSCRIBER_SHARDS shards per topic."""

    def subscribe(self, topic: str, user_id: str) -> Subscription: ...
    def unsubscribe(self, topic: str, user_id: str) -> bool: ...
    def page(self, topic: str, limit: int, cursor: str | None) -> SubscriberPage: ...
    def users_from(self, topic: str, shard: int, first: str | None, limit: int) -> list[str]:
        """Up to `limit` user ids of one shard, in order, from `first` on (None: from the shard's first)."""
        ...


class StatusStore(Protocol):
    """What fan-out and delivery write about a notification."""

    def record_accepted(self, notification: Notification) -> Notification:
        """Records it, unless an earlier attempt under its id did (an Idempotency-Key's attempt taken over): the
        notification as the record holds it (that attempt's accepted time and page placement), which the redone
        attempt then carries, so its deliveries and its page record are the same."""
        ...

    def record_page(self, notification: Notification, page: str, outcome: PageOutcome) -> PageWrite:
        """Records the page fanned out with what it will publish, in one write conditional on no cancel and no
        earlier record of the page: a cancel and the fan-out exclude each other (the cancel's write requires
        no record)."""
        ...

    def record_continued(self, notification: Notification, page: str) -> None: ...
    def claim_deliveries(self, requests: list[ClaimRequest], until: datetime, fresh: bool = True) -> list[Claim]:
        """The one write per recipient before the provider calls: a claim for each request, in order, held
        until `until`. Only a request carrying the `parked_at` of Herald's DLQ mark revives a dead letter;
        one with an `invocation` marks a tallied change, so a tally lost with a crash can be made up later.
        `fresh`: the deliveries are likely new (a first receive)."""
        ...

    def record_outcomes(self, outcomes: list[OutcomeRecord]) -> list[bool]:
        """The one write per recipient after them: each outcome, recorded only if its claim still holds."""
        ...

    def tally_exists(self, notification_id: str, page: str, invocation: str) -> bool: ...
    def record_tally(
        self,
        notification_id: str,
        page: str,
        invocation: str,
        counts: Mapping[str, int],
        recovered: Mapping[str, Mapping[str, int]],
    ) -> None: ...
    def cancel(self, notification_id: str) -> Cancellation:
        """Cancels it unless fan-out recorded its first page: one conditional write on that page's item, whose
        record (made before anything is published) also checks for a cancel, so exactly one of the two wins."""
        ...


class StatusReader(Protocol):
    """What the API reads about a notification."""

    def get(self, notification_id: str) -> NotificationRecord | None: ...
    def deliveries(self, notification_id: str, limit: int, cursor: str | None) -> DeliveryPage | None: ...


class Inbox(Protocol):
    def add(self, job: DeliveryJob, expires_at: int) -> bool:
        """Adds the delivery's item: True, or False if it was there already (left as it is)."""
        ...

    def page(self, user_id: str, limit: int, cursor: str | None) -> InboxPage: ...


class InboxDeliveries(Protocol):
    """Which in-app deliveries reached their inbox: their items are their records (logic.delivery.SELF_RECORDING)."""

    def delivered(self, wanted: list[InboxDelivery]) -> dict[InboxDelivery, int]:
        """Those whose item exists, with when it was written (epoch ms)."""
        ...


class Intake(Protocol):
    """Where accepted notifications (and fan-out continuations) wait for fan-out, by priority."""

    def send(self, notification: Notification) -> None: ...
    def send_all(self, notifications: list[Notification]) -> None: ...


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
