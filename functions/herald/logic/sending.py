"""Accepting a notification: record it, queue it by priority, answer at once; once per Idempotency-Key."""

from __future__ import annotations

import uuid

from herald.logic.holds import hold_notification
from herald.logic.idempotency import IdempotentRequests, request_hash
from herald.logic.ports import Holds, Intake, StatusStore
from herald.logic.templates import TemplateProblem, Templating
from herald.models.api import NotificationAccepted, NotificationRequest
from herald.models.domain import Notification, now
from herald.models.idempotency import StoredResponse

ACCEPTED = 202
ADDED_FIELDS = ("template", "variables", "category", "send_at")


def accept_notification(
    request: NotificationRequest,
    status: StatusStore,
    intake: Intake,
    notification_id: str | None = None,
    templating: Templating | None = None,
    holds: Holds | None = None,
) -> Notification:
    """Records and queues it; a templated one is rendered first (a TemplateProblem is the caller's 422),
    a scheduled one is held until its send_at instead of queued."""
    template, rendering = None, None
    if request.template is not None:
        if templating is None:
            raise TemplateProblem("template", "templates are not configured on this deployment")
        template, rendering = templating.prepare(request.template, request.variables or {})
    fields = request.model_dump(exclude={"template", "variables", "title", "body"})
    notification = Notification(
        notification_id=notification_id or str(uuid.uuid4()),
        accepted_at=now(),
        title=request.title or "",
        body=request.body or "",
        template=template,
        page_in_history=request.topic is None and request.recipients is not None and len(request.recipients) == 1,
        **fields,
    )
    # Status first: once the message is in the queue, fan-out may already be writing to it. An attempt taken over
    # (same id) keeps the first attempt's accepted time and page placement: a message that one queued makes the
    # same deliveries, and its page record goes where a cancel looks for it.
    notification = status.record_accepted(notification)
    if templating is not None and rendering is not None:
        templating.content.put(notification.notification_id, rendering)
    if notification.send_at is not None and notification.send_at > notification.accepted_at:
        if holds is None:
            raise RuntimeError("a scheduled notification but no schedule queue to hold it")
        hold_notification(notification, notification.send_at, holds, at=notification.accepted_at)
    else:
        intake.send(notification)
    return notification


def accept_once(
    request: NotificationRequest,
    key: str,
    status: StatusStore,
    intake: Intake,
    idempotency: IdempotentRequests,
    lease_seconds: float,
    templating: Templating | None = None,
    holds: Holds | None = None,
) -> StoredResponse:
    """The answer of the first request with this (caller-scoped) key; only the first records and queues.

    Raises KeyReusedWithAnotherRequest or RequestInProgress (herald.idempotency).
    """

    def accept(notification_id: str) -> StoredResponse:
        notification = accept_notification(request, status, intake, notification_id, templating, holds)
        body = NotificationAccepted(notification_id=notification.notification_id).model_dump_json()
        return StoredResponse(status_code=ACCEPTED, body=body)

    return idempotency.run(key, fingerprint(request), lease_seconds, accept)


def fingerprint(request: NotificationRequest) -> str:
    """The request as Herald reads it (defaults filled in), hashed, so {"priority": "normal"} repeats a request
    without it. What it does not use is left out: the audience it does not name (a recipients request hashes
    as it did before topics) and fields added since keys were first stored, while unused."""
    unused = {"topic"} if request.topic is None else {"recipients"}
    unused |= {name for name in ADDED_FIELDS if getattr(request, name) is None}
    return request_hash(request.model_dump(mode="json", exclude=unused))
