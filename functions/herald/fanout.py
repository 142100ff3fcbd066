"""Fan-out: one delivery per active device of every recipient, published to the priority topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from herald.devices import DeviceRegistry
from herald.domain import Channel, DeliveryJob, Notification
from herald.status import StatusStore


class Publisher(Protocol):
    def publish(self, jobs: list[DeliveryJob]) -> int: ...


@dataclass
class FanoutResult:
    jobs: list[DeliveryJob] = field(default_factory=list)
    without_devices: list[str] = field(default_factory=list)  # recipients with no active matching device
    inactive_skipped: list[str] = field(default_factory=list)  # "<user>/<device>" of inactive push devices
    skipped_by_channel: dict[Channel, int] = field(default_factory=dict)  # the same, counted per channel
    already_done: bool = False  # a duplicate intake message: another invocation fanned it out
    busy_for: int = 0  # another invocation is fanning it out: come back after this many seconds


def plan_deliveries(notification: Notification, registry: DeviceRegistry) -> FanoutResult:
    result = FanoutResult()
    wanted = set(notification.channels) if notification.channels else None
    for user_id in notification.recipients:
        jobs = []
        for device in registry.devices_of(user_id):
            if wanted is not None and device.channel not in wanted:
                continue
            if not device.active:
                result.inactive_skipped.append(f"{user_id}/{device.device_id}")
                result.skipped_by_channel[device.channel] = result.skipped_by_channel.get(device.channel, 0) + 1
                continue
            jobs.append(DeliveryJob.for_device(notification, device))
        if not jobs:
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
) -> FanoutResult:
    """Claims the notification's fan-out, publishes one job per device, then records in one write
    that the notification is fanned out and which deliveries it has.

    The claim makes a duplicate intake message harmless. A fan-out that takes over from a crashed
    one publishes everything again: each delivery's own claim stops a second send. A failed
    publish entry raises, and the intake message comes back.
    """
    claim = status.claim_fan_out(notification.notification_id, owner, deadline)
    if claim.done:
        return FanoutResult(already_done=True)
    if not claim.granted:
        return FanoutResult(busy_for=claim.busy_for())
    result = plan_deliveries(notification, registry)
    if result.jobs:
        topic.publish(result.jobs)
    status.record_fanned_out(notification.notification_id, result.jobs, result.without_devices, result.inactive_skipped)
    return result
