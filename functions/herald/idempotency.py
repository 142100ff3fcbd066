"""Idempotency keys: a request repeated with the same key gets the first answer, and its work is done once.

A key is claimed with a conditional write before the work starts, so two concurrent repeats
cannot both do it. The claim carries a lease (the function's remaining time): a claim whose
lease ran out belongs to an attempt that crashed or timed out, and the next repeat takes it
over with the *same* resource id, so work that got half done is redone under the same id
(downstream dedupes by that id) instead of twice under two ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from herald.domain import now
from herald.observability import logger

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Printable ASCII without spaces, as most APIs that take this header allow.
KEY_PATTERN = r"^[!-~]{1,255}$"
KEY_LIFETIME = timedelta(hours=24)


class RecordState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class StoredResponse(BaseModel):
    """The answer the first request got, returned as it was to every repeat."""

    status_code: int
    body: str


class IdempotencyRecord(BaseModel):
    key: str  # "<caller>#<Idempotency-Key>"
    request_hash: str
    state: RecordState
    resource_id: str  # chosen by the first attempt; a takeover reuses it
    expires_at: int  # epoch seconds; after it the key is free again (TTL removes the item later)
    locked_until: int  # epoch seconds; an in-progress claim older than this was abandoned
    response: StoredResponse | None = None


class IdempotencyStore(Protocol):
    def claim(self, record: IdempotencyRecord, at: int) -> IdempotencyRecord | None:
        """Stores `record` unless an unexpired record holds its key: then returns that one."""
        ...

    def take_over(self, record: IdempotencyRecord, abandoned: IdempotencyRecord) -> bool:
        """Replaces `abandoned` by `record` if nobody changed it meanwhile."""
        ...

    def complete(self, record: IdempotencyRecord, response: StoredResponse) -> None: ...

    def release(self, record: IdempotencyRecord) -> None:
        """Frees the key after the work failed, unless another attempt took it over."""
        ...


class KeyReusedWithAnotherRequest(Exception):
    """The key was first used with a different request."""


class RequestInProgress(Exception):
    """The first request with this key is still being processed."""

    def __init__(self, retry_after: int):
        super().__init__(f"a request with this {IDEMPOTENCY_HEADER} is still being processed; retry in {retry_after} s")
        self.retry_after = retry_after


def request_hash(request: Any) -> str:
    """The SHA-256 of the request as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped_key(caller: str, key: str) -> str:
    """Keys of different callers never collide. The caller id has no '#', so the split is unambiguous."""
    return f"{caller}#{key}"


@dataclass
class IdempotentRequests:
    store: IdempotencyStore
    lifetime: timedelta = KEY_LIFETIME
    clock: Callable[[], datetime] = now
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))

    def run(
        self, key: str, request_hash: str, lease_seconds: float, work: Callable[[str], StoredResponse]
    ) -> StoredResponse:
        """The first answer to `key`, doing `work(resource_id)` only if no attempt has finished it."""
        at = int(self.clock().timestamp())
        record = IdempotencyRecord(
            key=key,
            request_hash=request_hash,
            state=RecordState.IN_PROGRESS,
            resource_id=self.new_id(),
            expires_at=at + int(self.lifetime.total_seconds()),
            locked_until=at + max(1, math.ceil(lease_seconds)),
        )
        existing = self.store.claim(record, at)
        if existing is not None:
            if existing.request_hash != record.request_hash:
                raise KeyReusedWithAnotherRequest(f"this {IDEMPOTENCY_HEADER} was first used with a different request")
            if existing.response is not None:
                return existing.response
            record = self._take_over(record, existing, at)
        try:
            response = work(record.resource_id)
        except BaseException:
            self._release(record)
            raise
        try:
            self.store.complete(record, response)
        except Exception:
            # The work is done: answer it. A repeat waits for the lease, then redoes it under the same id.
            logger.exception("could not record the response of an idempotent request", key=key)
        return response

    def _take_over(self, record: IdempotencyRecord, existing: IdempotencyRecord, at: int) -> IdempotencyRecord:
        """The claim of an attempt still running is respected; an abandoned one is taken over, same id."""
        if existing.locked_until > at:
            raise RequestInProgress(retry_after=existing.locked_until - at)
        takeover = record.model_copy(update={"resource_id": existing.resource_id})
        if not self.store.take_over(takeover, existing):
            raise RequestInProgress(retry_after=takeover.locked_until - at)
        return takeover

    def _release(self, record: IdempotencyRecord) -> None:
        try:
            self.store.release(record)
        except Exception:
            # The claim then lapses with its lease; the original error is the one to report.
            logger.exception("could not release an idempotency key", key=record.key)


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
