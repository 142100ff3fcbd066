"""Idempotency records: the key, the request's fingerprint, and the first answer."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Printable ASCII without spaces, as most APIs that take this header allow.
KEY_PATTERN = r"^[!-~]{1,255}$"


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
