"""Accepting a notification: record it, queue it by priority, answer at once; once per Idempotency-Key."""

from __future__ import annotations

import uuid

from herald.logic.idempotency import IdempotentRequests, request_hash
from herald.logic.ports import Intake, StatusStore
from herald.models.api import NotificationAccepted, NotificationRequest
from herald.models.domain import Notification, now
from herald.models.idempotency import StoredResponse

ACCEPTED = 202


def accept_notification(
    request: NotificationRequest, status: StatusStore, intake: Intake, notification_id: str | None = None
) -> Notification:
    notification = Notification(
        notification_id=notification_id or str(uuid.uuid4()),
        accepted_at=now(),
        **request.model_dump(),
    )
    # Status first: once the message is in the queue, fan-out may already be writing to it.
    status.record_accepted(notification)
    intake.send(notification)
    return notification


def accept_once(
    request: NotificationRequest,
    key: str,
    status: StatusStore,
    intake: Intake,
    idempotency: IdempotentRequests,
    lease_seconds: float,
) -> StoredResponse:
    """The answer of the first request with this (caller-scoped) key; only the first records and queues.

    Raises KeyReusedWithAnotherRequest or RequestInProgress (herald.idempotency).
    """

    def accept(notification_id: str) -> StoredResponse:
        notification = accept_notification(request, status, intake, notification_id)
        body = NotificationAccepted(notification_id=notification.notification_id).model_dump_json()
        return StoredResponse(status_code=ACCEPTED, body=body)

    return idempotency.run(key, fingerprint(request), lease_seconds, accept)


def fingerprint(request: NotificationRequest) -> str:
    """The request as Herald reads it (defaults filled in), so {"priority": "normal"} repeats a request without
    it; the audience it does not use is left out, so a recipients request hashes as it did before topics."""
    unused = {"topic"} if request.topic is None else {"recipients"}
    return request_hash(request.model_dump(mode="json", exclude=unused))
