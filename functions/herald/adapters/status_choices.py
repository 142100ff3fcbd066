"""StatusTable attributes for what users' choices did to a notification: its schedule, and the
deliveries fan-out skipped or deferred. Written only for notifications that have them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from herald.models.domain import Channel, DeliveryState, Notification, now
from herald.models.status import Cancellation, DeferredDelivery, DeliveryRecord, SkippedDelivery


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


def held_attributes(skipped: list[SkippedDelivery], deferred: list[DeferredDelivery]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if skipped:
        rows = [[s.user_id, s.device_id, s.channel.value, s.reason] for s in skipped]
        attributes["skipped"] = {"S": json.dumps(rows, separators=(",", ":"))}
    if deferred:
        rows = [[d.job.user_id, d.job.device_id, d.job.channel.value, d.until.isoformat()] for d in deferred]
        attributes["deferred"] = {"S": json.dumps(rows, separators=(",", ":"))}
    return attributes


def held_records(summary: dict[str, Any], claimed: set[str]) -> list[DeliveryRecord]:
    """Records for skipped deliveries, and for deferred ones no deliver function has claimed yet:
    `deferred` until their time, `queued` after it (released to the priority queue)."""
    at = summary.get("fanned_out_at")
    records = [
        DeliveryRecord(
            user_id=user_id,
            device_id=device_id,
            channel=Channel(channel),
            status=DeliveryState.SKIPPED,
            reason=reason,
            updated_at=at,
        )
        for user_id, device_id, channel, reason in json.loads(summary.get("skipped") or "[]")
    ]
    for user_id, device_id, channel, until in json.loads(summary.get("deferred") or "[]"):
        if f"{user_id}#{device_id}" in claimed:
            continue
        release = datetime.fromisoformat(until)
        records.append(
            DeliveryRecord(
                user_id=user_id,
                device_id=device_id,
                channel=Channel(channel),
                status=DeliveryState.DEFERRED if release > now() else DeliveryState.QUEUED,
                deferred_until=release,
                queued_at=at,
                updated_at=at,
            )
        )
    return records


def cancellation_refused(summary: dict[str, Any]) -> Cancellation:
    if not summary:
        return Cancellation.UNKNOWN
    if "cancelled_at" in summary:
        return Cancellation.ALREADY_CANCELLED
    return Cancellation.TOO_LATE
