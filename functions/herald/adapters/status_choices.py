"""StatusTable attributes for what users' choices did to a notification: its schedule, category and
template on the accepted record (written only for notifications that have them), and what a refused
cancel found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from herald.models.domain import Notification, now
from herald.models.status import Cancellation


def scheduling_attributes(notification: Notification, retention: timedelta) -> dict[str, Any]:
    """send_at (and an expiry counted from it), category and template, for the summary item."""
    item: dict[str, Any] = {}
    if notification.send_at is not None:
        item["send_at"] = {"S": notification.send_at.isoformat()}
        item["expires_at"] = {"N": str(int((max(notification.send_at, now()) + retention).timestamp()))}
    if notification.category is not None:
        item["category"] = {"S": notification.category}
    if notification.template is not None:
        item["template"] = {"S": notification.template.template_id}
    return item


def cancellation_refused(first_page: dict[str, Any]) -> Cancellation:
    """What a cancel refused by its condition found on the notification's first page."""
    if "cancelled_at" in first_page:
        return Cancellation.ALREADY_CANCELLED
    return Cancellation.TOO_LATE
