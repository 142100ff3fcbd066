"""The in-app inbox as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class InboxItem(BaseModel):
    notification_id: str
    device_id: str
    title: str
    body: str
    data: dict[str, Any]
    priority: str
    created_at: datetime


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = None
