"""Idempotency records in DynamoDB: one item per (caller, Idempotency-Key), with TTL on `expires_at`."""

from __future__ import annotations

import contextlib
from typing import Any

from herald.models.idempotency import IdempotencyRecord, RecordState, StoredResponse


class DynamoIdempotencyStore:
    """Records in a DynamoDB table keyed by `idempotency_key`, with TTL on `expires_at`."""

    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def claim(self, record: IdempotencyRecord, at: int) -> IdempotencyRecord | None:
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=_item(record),
                # TTL deletes lazily: an expired record may still be there, and is free.
                ConditionExpression="attribute_not_exists(idempotency_key) OR expires_at <= :at",
                ExpressionAttributeValues={":at": {"N": str(at)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException as taken:
            item = taken.response.get("Item") or self._get(record.key)
            return _record(item) if item else None
        return None

    def take_over(self, record: IdempotencyRecord, abandoned: IdempotencyRecord) -> bool:
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=_item(record),
                ConditionExpression="#state = :in_progress AND locked_until = :locked_until",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": RecordState.IN_PROGRESS.value},
                    ":locked_until": {"N": str(abandoned.locked_until)},
                },
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def complete(self, record: IdempotencyRecord, response: StoredResponse) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"idempotency_key": {"S": record.key}},
            UpdateExpression="SET #state = :completed, status_code = :status_code, response_body = :body",
            ConditionExpression="attribute_exists(idempotency_key)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":completed": {"S": RecordState.COMPLETED.value},
                ":status_code": {"N": str(response.status_code)},
                ":body": {"S": response.body},
            },
        )

    def release(self, record: IdempotencyRecord) -> None:
        # Another attempt may have taken the key over: then it is theirs, and stays.
        with contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
            self._dynamodb.delete_item(
                TableName=self._table,
                Key={"idempotency_key": {"S": record.key}},
                ConditionExpression="#state = :in_progress AND locked_until = :locked_until",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": RecordState.IN_PROGRESS.value},
                    ":locked_until": {"N": str(record.locked_until)},
                },
            )

    def _get(self, key: str) -> dict[str, Any] | None:
        """Emulators that ignore ReturnValuesOnConditionCheckFailure leave the item out: read it."""
        item: dict[str, Any] | None = self._dynamodb.get_item(
            TableName=self._table, Key={"idempotency_key": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item


def _item(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "idempotency_key": {"S": record.key},
        "request_hash": {"S": record.request_hash},
        "state": {"S": record.state.value},
        "resource_id": {"S": record.resource_id},
        "expires_at": {"N": str(record.expires_at)},
        "locked_until": {"N": str(record.locked_until)},
    }


def _record(item: dict[str, Any]) -> IdempotencyRecord:
    response = None
    if "status_code" in item:
        response = StoredResponse(status_code=int(item["status_code"]["N"]), body=item["response_body"]["S"])
    return IdempotencyRecord(
        key=item["idempotency_key"]["S"],
        request_hash=item["request_hash"]["S"],
        state=RecordState(item["state"]["S"]),
        resource_id=item["resource_id"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        locked_until=int(item["locked_until"]["N"]),
        response=response,
    )
