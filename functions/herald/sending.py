"""Accepting a notification: record it, queue it, answer at once."""

from __future__ import annotations

import uuid

from herald.api_models import NotificationRequest
from herald.domain import Notification, now
from herald.queues import IntakeQueue
from herald.status import StatusStore


def accept_notification(request: NotificationRequest, status: StatusStore, intake: IntakeQueue) -> Notification:
    notification = Notification(
        notification_id=str(uuid.uuid4()),
        accepted_at=now(),
        **request.model_dump(),
    )
    # Status first: once the message is in the queue, fan-out may already be writing to it.
    status.record_accepted(notification)
    intake.send(notification)
    return notification
