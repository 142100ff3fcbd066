"""A redrive: which dead-letter queue goes back where, and what moving it did."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, Field


class RedrivePath(StrEnum):
    MESSAGE_MOVE_TASK = "message_move_task"
    RECEIVE_SEND_DELETE = "receive_send_delete"
    DRY_RUN = "dry_run"
    CANCEL = "cancel"


@dataclass(frozen=True)
class DeadLetterRoute:
    """One DLQ and the queue its messages go back to."""

    name: str
    dlq_url: str
    destination_url: str


class QueueRedrive(BaseModel):
    """What a redrive did (or, in a dry run, would do) to one DLQ."""

    path: RedrivePath
    waiting: int = Field(description="Messages in the DLQ before (approximate: visible plus in flight).")
    moved: int = 0
    task_handle: str | None = None
    task_status: str | None = Field(default=None, description="The move task's status when last read.")
    failure_reason: str | None = None
    reasons: list[str] = Field(default_factory=list, description="Dry run: the reasons of up to 10 messages.")
    note: str | None = Field(default=None, description="Why this path, or why it stopped early.")
