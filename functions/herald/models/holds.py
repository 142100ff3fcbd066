"""What the schedule queue holds until its time: a scheduled notification, or deliveries in quiet hours."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from herald.models.domain import DeliveryJob, Notification


class HeldNotification(BaseModel):
    kind: Literal["notification"] = "notification"
    release_at: datetime
    notification: Notification


class HeldDeliveries(BaseModel):
    kind: Literal["deliveries"] = "deliveries"
    release_at: datetime
    jobs: list[DeliveryJob]


Held = Annotated[HeldNotification | HeldDeliveries, Field(discriminator="kind")]


class HeldMessage(BaseModel):
    """The schedule queue's message body."""

    held: Held
