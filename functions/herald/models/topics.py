"""Topics: who subscribed to what, as the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Subscription(BaseModel):
    topic: str
    user_id: str
    subscribed_at: datetime


class SubscriberPage(BaseModel):
    subscribers: list[Subscription]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last one."
    )
