"""Users' preferences in DynamoDB: one item per user, read in batches of 100 by fan-out."""

from __future__ import annotations

import time
from typing import Any

from herald.adapters.batches import chunks
from herald.models.domain import now
from herald.models.preferences import Preferences

BATCH_GET_MAX = 100  # BatchGetItem's limit
UNPROCESSED_TRIES = 5


class DynamoProfileStore:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def get(self, user_id: str) -> Preferences | None:
        item = self._dynamodb.get_item(TableName=self._table, Key={"user_id": {"S": user_id}}, ConsistentRead=True).get(
            "Item"
        )
        return Preferences.model_validate_json(item["preferences"]["S"]) if item else None

    def put(self, user_id: str, preferences: Preferences) -> None:
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "user_id": {"S": user_id},
                "preferences": {"S": preferences.model_dump_json(exclude_defaults=True)},
                "updated_at": {"S": now().isoformat()},
            },
        )

    def get_many(self, user_ids: list[str]) -> dict[str, Preferences]:
        """One BatchGetItem per 100 users (eventually consistent: half a read unit per user of up to 4 KB);
        keys DynamoDB leaves unprocessed are asked for again, with a short backoff."""
        found: dict[str, Preferences] = {}
        for chunk in chunks(list(dict.fromkeys(user_ids)), BATCH_GET_MAX):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"user_id": {"S": user_id}} for user_id in chunk],
                    "ProjectionExpression": "user_id, preferences",
                }
            }
            for attempt in range(UNPROCESSED_TRIES):
                response = self._dynamodb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["user_id"]["S"]] = Preferences.model_validate_json(item["preferences"]["S"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"DynamoDB left {len(request[self._table]['Keys'])} preference reads unprocessed")
        return found
