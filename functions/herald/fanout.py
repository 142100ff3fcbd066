"""Fan-out: one delivery per device of every recipient, published to the priority topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from herald.devices import DeviceRegistry
from herald.domain import DeliveryJob, Notification
from herald.status import StatusStore


class Publisher(Protocol):
    def publish(self, jobs: list[DeliveryJob]) -> int: ...


@dataclass
class FanoutResult:
    jobs: list[DeliveryJob] = field(default_factory=list)
    without_devices: list[str] = field(default_factory=list)


def plan_deliveries(notification: Notification, registry: DeviceRegistry) -> FanoutResult:
    result = FanoutResult()
    wanted = set(notification.channels) if notification.channels else None
    for user_id in notification.recipients:
        jobs = [
            DeliveryJob.for_device(notification, device)
            for device in registry.devices_of(user_id)
            if wanted is None or device.channel in wanted
        ]
        if not jobs:
            result.without_devices.append(user_id)
        result.jobs.extend(jobs)
    return result


def fan_out(
    notification: Notification, registry: DeviceRegistry, topic: Publisher, status: StatusStore
) -> FanoutResult:
    """Records every delivery as queued, publishes them, then marks the notification fanned out.

    Deliveries are recorded before they are published so a fast deliver function never has its
    status overwritten; a failed publish entry raises, failing only this notification's record.
    """
    result = plan_deliveries(notification, registry)
    if result.jobs:
        status.record_queued(result.jobs)
        topic.publish(result.jobs)
    status.record_fanned_out(notification.notification_id, len(result.jobs), result.without_devices)
    return result
