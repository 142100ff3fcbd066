"""A user's pages (inbox, history): newest first, with opaque cursors (the last sort key, base64 JSON)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class InvalidCursor(ValueError):
    pass


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"sk": key["sk"]["S"]}).encode()).decode()


def decode_cursor(cursor: str, user_id: str) -> dict[str, Any]:
    try:
        sort_key = json.loads(base64.urlsafe_b64decode(cursor.encode()))["sk"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidCursor("cursor is not one this API returned") from error
    if not isinstance(sort_key, str):
        raise InvalidCursor("cursor is not one this API returned")
    return {"user_id": {"S": user_id}, "sk": {"S": sort_key}}


def newest_first(
    dynamodb: Any, table: str, user_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a user's items, newest first, from `cursor` on; and the cursor of the next page, if any."""
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "user_id = :u",
        "ExpressionAttributeValues": {":u": {"S": user_id}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if cursor:
        query["ExclusiveStartKey"] = decode_cursor(cursor, user_id)
    response = dynamodb.query(**query)
    last = response.get("LastEvaluatedKey")
    return response.get("Items", []), encode_cursor(last) if last else None
