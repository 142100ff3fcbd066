"""The in-app inbox in DynamoDB: one partition per user, sorted by time, read newest first."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from herald.models.domain import DeliveryJob
from herald.models.inbox import InboxItem, InboxPage


class InvalidCursor(ValueError):
    pass


class DynamoInbox:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def add(self, job: DeliveryJob, expires_at: int) -> None:
        # The sort key is made of the job's own fields: a repeated delivery overwrites, never doubles.
        item = InboxItem(
            notification_id=job.notification_id,
            device_id=job.device_id,
            title=job.title,
            body=job.body,
            data=job.data,
            priority=job.priority.value,
            created_at=job.accepted_at,
        )
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "user_id": {"S": job.user_id},
                "sk": {"S": f"{job.accepted_at.isoformat()}#{job.notification_id}#{job.device_id}"},
                "item": {"S": item.model_dump_json()},
                "expires_at": {"N": str(expires_at)},
            },
        )

    def page(self, user_id: str, limit: int, cursor: str | None) -> InboxPage:
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor, user_id)
        response = self._dynamodb.query(**query)
        items = [InboxItem.model_validate_json(item["item"]["S"]) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return InboxPage(items=items, next_cursor=_encode_cursor(last) if last else None)


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"sk": key["sk"]["S"]}).encode()).decode()


def _decode_cursor(cursor: str, user_id: str) -> dict[str, Any]:
    try:
        sort_key = json.loads(base64.urlsafe_b64decode(cursor.encode()))["sk"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidCursor("cursor is not one this API returned") from error
    if not isinstance(sort_key, str):
        raise InvalidCursor("cursor is not one this API returned")
    return {"user_id": {"S": user_id}, "sk": {"S": sort_key}}
