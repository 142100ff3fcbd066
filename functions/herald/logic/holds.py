"""Holding messages until their time on SQS alone: a scheduled notification, deliveries in quiet hours.

SQS delays a message at most 15 minutes, so a hold is a chain of hops: each receive of a held
message that is not due yet sends it again with the next delay (at most 900 s, at least the time
left) and deletes the old one. Every hop is a new message, so its receive count starts at 1 and a
long wait never nears the redrive policy's maxReceiveCount. When it is due, a notification goes
to its priority's intake queue (fan-out then records its first page, or finds it cancelled) and
deliveries go to the priority topic. Cost per held message: ceil(wait / 900 s) + 1 send, receive and delete.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime

from herald.logic.ports import Holds, Intake, Publisher
from herald.models.domain import DeliveryJob, Notification, now
from herald.models.holds import HeldDeliveries, HeldMessage, HeldNotification
from herald.models.status import DeferredDelivery

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds
JOBS_PER_HOLD = 50  # deliveries sharing a release time travel together: about 1 KB each, far below 256 KB


def delay_until(release_at: datetime, at: datetime) -> int:
    """Seconds the next hop waits: the time left, rounded up (never early), at most SQS's 900."""
    left = (release_at - at).total_seconds()
    return 0 if left <= 0 else min(math.ceil(left), MAX_DELAY_SECONDS)


def hold_notification(
    notification: Notification, release_at: datetime, holds: Holds, at: datetime | None = None
) -> None:
    held = HeldMessage(held=HeldNotification(release_at=release_at, notification=notification))
    holds.hold(held, delay_until(release_at, at or now()))


def hold_deliveries(deferred: list[DeferredDelivery], holds: Holds, at: datetime | None = None) -> None:
    at = at or now()
    by_time: dict[datetime, list[DeliveryJob]] = defaultdict(list)
    for delivery in deferred:
        by_time[delivery.until].append(delivery.job)
    for until, jobs in by_time.items():
        for start in range(0, len(jobs), JOBS_PER_HOLD):
            held = HeldMessage(held=HeldDeliveries(release_at=until, jobs=jobs[start : start + JOBS_PER_HOLD]))
            holds.hold(held, delay_until(until, at))


def release_or_hold(
    message: HeldMessage, holds: Holds, intake: Intake, topic: Publisher, at: datetime | None = None
) -> bool:
    """Releases the message if it is due (True), else holds it for another hop (False)."""
    delay = delay_until(message.held.release_at, at or now())
    if delay > 0:
        holds.hold(message, delay)
        return False
    held = message.held
    if isinstance(held, HeldNotification):
        intake.send(held.notification)  # its priority's intake lane
    else:
        # Queued now: the status counts a delivery from its release on as queued, no longer deferred.
        released = at or now()
        topic.publish([job.model_copy(update={"queued_at": released}) for job in held.jobs])
    return True
