"""What a queue holds, as `GET /queues` shows it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QueueDepth(BaseModel):
    visible: int = Field(description="Messages waiting to be received.")
    in_flight: int = Field(description="Messages received and not yet deleted (being processed or backing off).")
    delayed: int | None = Field(
        default=None,
        description="Messages waiting out a delay: what the schedule queue holds until its time (null elsewhere).",
    )
    dead_lettered: int = Field(description="Messages in the queue's dead-letter queue.")
    oldest_dead_letter_age_seconds: int | None = Field(
        default=None,
        description=(
            "Seconds since the oldest dead letter of a sample (up to 10 peeked messages) was dead-lettered;"
            " null when the dead-letter queue has no visible message."
        ),
    )
