"""Idempotency keys: a request repeated with the same key gets the first answer, and its work is done once.

A key is claimed with a conditional write before the work starts, so two concurrent repeats
cannot both do it. The claim carries a lease (the function's remaining time): a claim whose
lease ran out belongs to an attempt that crashed or timed out, and the next repeat takes it
over with the *same* resource id, so work that got half done is redone under the same id
(downstream dedupes by that id) instead of twice under two ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from herald.logic.ports import IdempotencyStore
from herald.models.domain import now
from herald.models.idempotency import IDEMPOTENCY_HEADER, IdempotencyRecord, RecordState, StoredResponse
from herald.observability import logger

KEY_LIFETIME = timedelta(hours=24)


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
