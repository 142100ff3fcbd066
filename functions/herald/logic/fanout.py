"""Fan-out: one delivery per active device of every recipient, published to the priority topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from herald.logic.history import history_entries
from herald.logic.holds import hold_deliveries
from herald.logic.ports import DeviceRegistry, History, Holds, Publisher, StatusStore
from herald.logic.preferences import DeliveryRules
from herald.models.domain import DeliveryJob, Notification
from herald.models.status import DeferredDelivery, SkippedDelivery


@dataclass
class FanoutResult:
    jobs: list[DeliveryJob] = field(default_factory=list)
    without_devices: list[str] = field(default_factory=list)  # recipients with no active matching device
    inactive_skipped: list[str] = field(default_factory=list)  # "<user>/<device>" of inactive push devices
    skipped: list[SkippedDelivery] = field(default_factory=list)  # left out by preferences or the template
    deferred: list[DeferredDelivery] = field(default_factory=list)  # held until the recipient's quiet hours end
    already_done: bool = False  # a duplicate intake message: another invocation fanned it out (or it was cancelled)
    busy_for: int = 0  # another invocation is fanning it out: come back after this many seconds


def plan_deliveries(
    notification: Notification, registry: DeviceRegistry, rules: DeliveryRules | None = None
) -> FanoutResult:
    result = FanoutResult()
    wanted = set(notification.channels) if notification.channels else None
    # Preferences, quiet hours and locales: one batched read for the recipients, then one decision per device.
    recipients = (rules or DeliveryRules()).for_recipients(notification, notification.recipients)
    for user_id in notification.recipients:
        jobs = []
        held_or_skipped = 0
        for device in registry.devices_of(user_id):
            if wanted is not None and device.channel not in wanted:
                continue
            if not device.active:
                result.inactive_skipped.append(f"{user_id}/{device.device_id}")
                continue
            route = recipients.route(device)
            if route.skip_reason is not None:
                result.skipped.append(SkippedDelivery(user_id, device.device_id, device.channel, route.skip_reason))
                held_or_skipped += 1
                continue
            job = DeliveryJob.for_device(notification, device)
            if route.content_locale is not None:
                job.content_locale = route.content_locale
            if route.defer_until is not None:
                result.deferred.append(DeferredDelivery(job, route.defer_until))
                held_or_skipped += 1
                continue
            jobs.append(job)
        if not jobs and not held_or_skipped:
            result.without_devices.append(user_id)
        result.jobs.extend(jobs)
    return result


def fan_out(
    notification: Notification,
    registry: DeviceRegistry,
    topic: Publisher,
    status: StatusStore,
    owner: str,
    deadline: datetime,
    rules: DeliveryRules | None = None,
    holds: Holds | None = None,
    history: History | None = None,
) -> FanoutResult:
    """Claims the notification's fan-out, publishes one job per device, then records in one write
    that the notification is fanned out and which deliveries it has.

    The claim makes a duplicate intake message harmless (and a cancelled notification is never
    claimed). A fan-out that takes over from a crashed one publishes everything again: each
    delivery's own claim stops a second send. A failed publish entry raises, and the intake
    message comes back. Deliveries in quiet hours go to the schedule queue instead of the topic.
    """
    claim = status.claim_fan_out(notification.notification_id, owner, deadline)
    if claim.done:
        return FanoutResult(already_done=True)
    if not claim.granted:
        return FanoutResult(busy_for=claim.busy_for())
    result = plan_deliveries(notification, registry, rules)
    if result.jobs:
        topic.publish(result.jobs)
    if result.deferred:
        if holds is None:
            raise RuntimeError("deliveries to defer but no schedule queue to hold them")
        hold_deliveries(result.deferred, holds, at=(rules or DeliveryRules()).clock())
    if history is not None:  # before the status write: a retry after a crash writes the same items again
        history.record(history_entries(notification, result.jobs, result.skipped, result.deferred))
    status.record_fanned_out(
        notification.notification_id,
        result.jobs,
        result.without_devices,
        result.inactive_skipped,
        skipped=result.skipped,
        deferred=result.deferred,
    )
    return result
