"""The in-app inbox in DynamoDB: one partition per user, sorted by time, read newest first, with read state.

An item is unread while it has the attribute `unread` (a copy of its sort key): the sparse index
UnreadIndex holds only those, keys only, so the unread count is a Query of that index that reads
nothing else, and stays right under retries (the count is of items, not a counter to keep in step).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from herald.adapters.pages import InvalidCursor, newest_first
from herald.models.domain import DeliveryJob, now
from herald.models.inbox import InboxDelivery, InboxItem, InboxPage, MarkedRead

UNREAD_INDEX = "UnreadIndex"

__all__ = [
    "UNREAD_INDEX",
    "DynamoInbox",
    "InboxDelivery",
    "InvalidCursor",
    "UnknownItem",
    "entry_sort_key",
    "item_id_of",
    "sort_key_of",
]


class UnknownItem(ValueError):
    """An item id that names no inbox item of the user."""


def entry_sort_key(accepted_at: str, notification_id: str, device_id: str) -> str:
    """An inbox item's sort key: the notification's accepted time (ISO 8601, as its status keeps it), its id
    and the device: newest first, and fixed by the delivery, so a copy finds it."""
    return f"{accepted_at}#{notification_id}#{device_id}"


def item_id_of(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def sort_key_of(item_id: str) -> str:
    try:
        return base64.urlsafe_b64decode(item_id + "=" * (-len(item_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise UnknownItem("not an inbox item id") from error


class DynamoInbox:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def add(self, job: DeliveryJob, expires_at: int) -> bool:
        """True once the item is written; False if an earlier copy of the delivery wrote it.

        The sort key is made of the job's own fields: a repeated delivery finds its item and leaves it as
        it is (read state included), never doubles it. `delivered_at` (epoch ms) is when it was written:
        the item is the delivery's record (herald.logic.delivery.SELF_RECORDING), and the status reads
        it there."""
        item = InboxItem(
            notification_id=job.notification_id,
            device_id=job.device_id,
            title=job.title,
            body=job.body,
            data=job.data,
            priority=job.priority.value,
            created_at=job.accepted_at,
        )
        sort_key = entry_sort_key(job.accepted_at.isoformat(), job.notification_id, job.device_id)
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "user_id": {"S": job.user_id},
                    "sk": {"S": sort_key},
                    "item": {"S": item.model_dump_json(exclude={"item_id", "read", "read_at"})},
                    "unread": {"S": sort_key},
                    "expires_at": {"N": str(expires_at)},
                    "delivered_at": {"N": str(int(now().timestamp() * 1000))},
                },
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def delivered(self, wanted: list[InboxDelivery]) -> dict[InboxDelivery, int]:
        """Which of these in-app deliveries are in their user's inbox, and when each was written (epoch ms):
        one consistent BatchGetItem per 100, keys and the time only."""
        found: dict[InboxDelivery, int] = {}
        by_key = {
            (one.user_id, entry_sort_key(one.accepted_at, one.notification_id, one.device_id)): one for one in wanted
        }
        keys = [{"user_id": {"S": user_id}, "sk": {"S": sort_key}} for user_id, sort_key in by_key]
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": "user_id, sk, delivered_at",
                }
            }
            while request:
                response = self._dynamodb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    one = by_key.get((item["user_id"]["S"], item["sk"]["S"]))
                    if one is not None:
                        found[one] = int(item.get("delivered_at", {}).get("N", "0"))
                request = response.get("UnprocessedKeys") or {}
        return found

    def page(self, user_id: str, limit: int, cursor: str | None) -> InboxPage:
        stored, next_cursor = newest_first(self._dynamodb, self._table, user_id, limit, cursor)
        return InboxPage(items=[_item(item) for item in stored], next_cursor=next_cursor)

    def set_read(self, user_id: str, item_id: str, read: bool) -> InboxItem | None:
        sort_key = sort_key_of(item_id)
        if read:
            update, values = "SET read_at = if_not_exists(read_at, :t) REMOVE unread", {":t": {"S": now().isoformat()}}
        else:
            update, values = "SET unread = :sk REMOVE read_at", {":sk": {"S": sort_key}}
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key={"user_id": {"S": user_id}, "sk": {"S": sort_key}},
                UpdateExpression=update,
                ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return _item(response["Attributes"])

    def mark_all_read(self, user_id: str, at_most: int) -> MarkedRead:
        """Marks up to `at_most` unread items read, newest first: one UpdateItem each."""
        response = self._dynamodb.query(
            TableName=self._table,
            IndexName=UNREAD_INDEX,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ScanIndexForward=False,
            Limit=at_most + 1,
        )
        keys = response.get("Items", [])
        at = now().isoformat()
        marked = 0
        for key in keys[:at_most]:
            try:
                self._dynamodb.update_item(
                    TableName=self._table,
                    Key={"user_id": key["user_id"], "sk": key["sk"]},
                    UpdateExpression="SET read_at = :t REMOVE unread",
                    ConditionExpression="attribute_exists(unread)",
                    ExpressionAttributeValues={":t": {"S": at}},
                )
                marked += 1
            except ClientError as error:  # read meanwhile, or expired: nothing to mark
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        more = len(keys) > at_most
        return MarkedRead(marked=marked, more=more)

    def unread_count(self, user_id: str) -> int:
        """A COUNT Query of the sparse index: about half a read unit per 4 KB of keys (some 40 unread items)."""
        paginator = self._dynamodb.get_paginator("query")
        count = 0
        for page in paginator.paginate(
            TableName=self._table,
            IndexName=UNREAD_INDEX,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            Select="COUNT",
        ):
            count += int(page.get("Count", 0))
        return count


def _item(stored: dict[str, Any]) -> InboxItem:
    item = InboxItem.model_validate_json(stored["item"]["S"])
    read_at = stored.get("read_at", {}).get("S")
    return item.model_copy(
        update={
            "item_id": item_id_of(stored["sk"]["S"]),
            "read": "unread" not in stored,
            "read_at": datetime.fromisoformat(read_at) if read_at else None,
        }
    )
