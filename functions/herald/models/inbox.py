"""The in-app inbox as the API shows it, with read state, and a user's history of notifications."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# An inbox item's id: its sort key, URL-safe base64 without padding (time, notification and device).
ITEM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,512}$"
MAX_MARKED_PER_CALL = 200  # mark-all-read updates this many items per call at most (one write each)


class InboxItem(BaseModel):
    item_id: str = Field(default="", description="Names the item in PUT /users/{user_id}/inbox/{item_id}.")
    notification_id: str
    device_id: str
    title: str
    body: str
    data: dict[str, Any]
    priority: str
    created_at: datetime
    read: bool = False
    read_at: datetime | None = None


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = None


class ReadState(BaseModel):
    """The body of `PUT /users/{user_id}/inbox/{item_id}`."""

    model_config = ConfigDict(extra="forbid")

    read: bool


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked: int = Field(description="Items this call marked read.")
    more: bool = Field(description=f"True if unread items remain (a call marks at most {MAX_MARKED_PER_CALL}).")


class HistoryEntry(BaseModel):
    """One notification sent to a user, as fan-out recorded it."""

    notification_id: str
    accepted_at: datetime
    fanned_out_at: datetime
    priority: str
    category: str | None = None
    template: str | None = None
    title: str | None = None  # None for a templated notification: its content is per channel and locale
    channels: list[str] = Field(default_factory=list, description="Channels of the deliveries queued or deferred.")
    deliveries: int = 0
    skipped: int = 0
    deferred: int = 0


class HistoryPage(BaseModel):
    notifications: list[HistoryEntry]
    next_cursor: str | None = None


@dataclass(frozen=True)
class InboxDelivery:
    """An in-app delivery, named as its inbox item is found: the status asks whether it was made."""

    user_id: str
    notification_id: str
    device_id: str
    accepted_at: str  # the notification's accepted time, ISO 8601, as its status keeps it
