"""A user's history: one entry per notification fan-out sent them, written in fan-out's batches."""

from __future__ import annotations

from collections import defaultdict

from herald.models.domain import DeliveryJob, Notification, now
from herald.models.inbox import HistoryEntry
from herald.models.status import DeferredDelivery, SkippedDelivery


def history_entries(
    notification: Notification,
    jobs: list[DeliveryJob],
    skipped: list[SkippedDelivery],
    deferred: list[DeferredDelivery],
) -> list[tuple[str, HistoryEntry]]:
    """One entry per recipient with at least one delivery (queued, deferred or skipped)."""
    channels: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for job in jobs:
        channels[job.user_id].add(job.channel.value)
        counts[job.user_id][0] += 1
    for skip in skipped:
        counts[skip.user_id][1] += 1
    for held in deferred:
        channels[held.job.user_id].add(held.job.channel.value)
        counts[held.job.user_id][2] += 1
    at = now()
    return [
        (
            user_id,
            HistoryEntry(
                notification_id=notification.notification_id,
                accepted_at=notification.accepted_at,
                fanned_out_at=at,
                priority=notification.priority.value,
                category=notification.category,
                template=notification.template.template_id if notification.template else None,
                title=notification.title or None,
                channels=sorted(channels[user_id]),
                deliveries=sent + deferred_count,
                skipped=skipped_count,
                deferred=deferred_count,
            ),
        )
        for user_id, (sent, skipped_count, deferred_count) in counts.items()
    ]
