"""Topics' subscribers in DynamoDB, each topic spread over SUBSCRIBER_SHARDS partitions ("<topic>#<shard>")."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from herald.adapters.inbox import InvalidCursor
from herald.models.domain import SUBSCRIBER_SHARDS, now
from herald.models.topics import SubscriberPage, Subscription


def shard_of(user_id: str) -> int:
    """A user's shard: a stable hash, so a subscription is found where it was written."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:4], "big") % SUBSCRIBER_SHARDS


class DynamoSubscribers:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def subscribe(self, topic: str, user_id: str) -> Subscription:
        """Idempotent: subscribing again keeps the first time."""
        response = self._dynamodb.update_item(
            TableName=self._table,
            Key=_key(topic, user_id),
            UpdateExpression="SET topic = :t, subscribed_at = if_not_exists(subscribed_at, :at)",
            ExpressionAttributeValues={":t": {"S": topic}, ":at": {"S": now().isoformat()}},
            ReturnValues="ALL_NEW",
        )
        return _subscription(response["Attributes"])

    def unsubscribe(self, topic: str, user_id: str) -> bool:
        response = self._dynamodb.delete_item(TableName=self._table, Key=_key(topic, user_id), ReturnValues="ALL_OLD")
        return "Attributes" in response

    def users_from(self, topic: str, shard: int, first: str | None, limit: int) -> list[str]:
        condition = "topic_shard = :s"
        values: dict[str, Any] = {":s": {"S": _shard_key(topic, shard)}}
        if first is not None:
            condition += " AND user_id >= :u"
            values[":u"] = {"S": first}
        users: list[str] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "user_id",
        }
        while len(users) < limit:
            response = self._dynamodb.query(**query, Limit=limit - len(users))
            users += [item["user_id"]["S"] for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return users

    def page(self, topic: str, limit: int, cursor: str | None) -> SubscriberPage:
        """Up to `limit` subscribers, shard after shard (so in no particular order overall)."""
        shard, after = _decode(cursor) if cursor else (0, None)
        found: list[Subscription] = []
        while shard < SUBSCRIBER_SHARDS and len(found) < limit:
            query: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "topic_shard = :s",
                "ExpressionAttributeValues": {":s": {"S": _shard_key(topic, shard)}},
                "Limit": limit - len(found),
            }
            if after is not None:
                query["ExclusiveStartKey"] = {"topic_shard": {"S": _shard_key(topic, shard)}, "user_id": {"S": after}}
            response = self._dynamodb.query(**query)
            found += [_subscription(item) for item in response.get("Items", [])]
            last = response.get("LastEvaluatedKey")
            if last is not None:
                after = last["user_id"]["S"]
                if len(found) >= limit:
                    return SubscriberPage(subscribers=found, next_cursor=_encode(shard, after))
                continue
            shard, after = shard + 1, None
        more = shard < SUBSCRIBER_SHARDS
        return SubscriberPage(subscribers=found, next_cursor=_encode(shard, after) if more else None)


def _shard_key(topic: str, shard: int) -> str:
    return f"{topic}#{shard:02d}"


def _key(topic: str, user_id: str) -> dict[str, Any]:
    return {"topic_shard": {"S": _shard_key(topic, shard_of(user_id))}, "user_id": {"S": user_id}}


def _subscription(item: dict[str, Any]) -> Subscription:
    return Subscription(
        topic=item["topic"]["S"], user_id=item["user_id"]["S"], subscribed_at=item["subscribed_at"]["S"]
    )


def _encode(shard: int, after: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps({"shard": shard, "after": after}).encode()).decode()


def _decode(cursor: str) -> tuple[int, str | None]:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        shard, after = position["shard"], position["after"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidCursor("cursor is not one this API returned") from error
    if not isinstance(shard, int) or not 0 <= shard < SUBSCRIBER_SHARDS or not isinstance(after, str | None):
        raise InvalidCursor("cursor is not one this API returned")
    return shard, after
