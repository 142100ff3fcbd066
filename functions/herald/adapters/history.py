"""Each user's history in DynamoDB: one small item per notification sent to them, newest first."""

from __future__ import annotations

import time
from typing import Any

from herald.adapters.batches import chunks
from herald.adapters.pages import newest_first
from herald.models.inbox import HistoryEntry, HistoryPage

BATCH_WRITE_MAX = 25
UNPROCESSED_TRIES = 5


def history_key(user_id: str, accepted_at: str, notification_id: str) -> dict[str, Any]:
    """A history item's key: the user, then the notification's accepted time (ISO 8601, as the status keeps
    it) and id, so a user's items read newest first."""
    return {"user_id": {"S": user_id}, "sk": {"S": f"{accepted_at}#{notification_id}"}}


def entry_attribute(entry: HistoryEntry) -> dict[str, Any]:
    return {"S": entry.model_dump_json(exclude_none=True, exclude_defaults=True)}


class DynamoHistory:
    def __init__(self, dynamodb: Any, table: str, expires_at: Any):
        self._dynamodb = dynamodb
        self._table = table
        self._expires_at = expires_at  # () -> epoch seconds, the status retention's

    def record(self, entries: list[tuple[str, HistoryEntry]]) -> None:
        """BatchWriteItem, 25 entries a call: one write unit per recipient (an entry is well under 1 KB).
        The key is (user, accepted_at#notification): a retried fan-out overwrites, never doubles. (A notification
        to one recipient has no entry here: its fan-out page's record is the item, and carries the entry.)"""
        expires = str(self._expires_at())
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **history_key(user_id, entry.accepted_at.isoformat(), entry.notification_id),
                        "entry": entry_attribute(entry),
                        "expires_at": {"N": expires},
                    }
                }
            }
            for user_id, entry in entries
        ]
        for chunk in chunks(requests, BATCH_WRITE_MAX):
            pending: dict[str, Any] = {self._table: list(chunk)}
            for attempt in range(UNPROCESSED_TRIES):
                pending = self._dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"DynamoDB left {len(pending[self._table])} history writes unprocessed")

    def page(self, user_id: str, limit: int, cursor: str | None) -> HistoryPage:
        items, next_cursor = newest_first(self._dynamodb, self._table, user_id, limit, cursor)
        # An item without an entry is a page record with nothing for the user (no device), or a cancel's mark.
        entries = [HistoryEntry.model_validate_json(item["entry"]["S"]) for item in items if "entry" in item]
        return HistoryPage(notifications=entries, next_cursor=next_cursor)
