"""Console-invoked handler: moves dead-lettered messages back to their queue, or reports what waits there."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Self

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.adapters.clients import client
from herald.adapters.redrive import MAX_RATE, Redrive
from herald.models.domain import Priority
from herald.models.redrive import QueueRedrive
from herald.observability import inject_lambda_context, logger
from herald.settings import DlqRedriveSettings

# Leave the function this long after the last wait, to answer (the template gives it 300 s).
ANSWER_MARGIN_SECONDS = 10


class RedriveRequest(BaseModel):
    """The console event. Unknown options are refused: a typo must not turn a dry run into a redrive."""

    model_config = ConfigDict(extra="forbid")

    priority: (
        Priority | Literal["intake", "intake-high", "intake-normal", "intake-low", "schedule", "feedback", "all"]
    ) = Field(
        default="all",
        description=(
            'A priority\'s delivery DLQ, "intake-<priority>" (that priority\'s fan-out DLQ), "intake" (the three'
            ' fan-out DLQs), "schedule" (the schedule function\'s DLQ: held notifications and deliveries),'
            ' "feedback" (the feedback function\'s DLQ: SES bounces and complaints), or "all" of them.'
        ),
    )
    limit: int | None = Field(
        default=None, ge=1, description="At most this many messages per queue (moved by receive, send, delete)."
    )
    rate: int | None = Field(default=None, ge=1, le=MAX_RATE, description="At most this many messages per second.")
    dry_run: bool = Field(default=False, description="Only report how many messages wait and why; move nothing.")
    cancel: bool = Field(default=False, description="Stop the running message-move task of each queue chosen.")
    wait_seconds: int = Field(
        default=60, ge=0, le=900, description="How long to wait for the moves to finish before answering."
    )

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if self.dry_run and self.cancel:
            raise ValueError("dry_run and cancel exclude each other")
        return self


class RedriveResult(BaseModel):
    dry_run: bool
    queues: dict[str, QueueRedrive]
    total_waiting: int
    total_moved: int


@dataclass(frozen=True)
class Dependencies:
    settings: DlqRedriveSettings
    redrive: Redrive


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    redrive = Redrive(client("sqs"), probe=client("sqs", one_attempt=True))
    return Dependencies(settings=DlqRedriveSettings.from_environment(environ), redrive=redrive)


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    request = RedriveRequest.model_validate(event or {})
    remaining = context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS
    deadline = time.monotonic() + max(min(request.wait_seconds, remaining), 0)
    queues: dict[str, QueueRedrive] = {}
    for route in d.settings.routes(request.priority):
        if request.dry_run:
            queues[route.name] = d.redrive.inspect(route)
        elif request.cancel:
            queues[route.name] = d.redrive.cancel(route)
        else:
            queues[route.name] = d.redrive.move(route, deadline, limit=request.limit, rate=request.rate)
        outcome = queues[route.name]
        logger.info("redrive", queue=route.name, **outcome.model_dump(exclude={"reasons"}, mode="json"))
    return RedriveResult(
        dry_run=request.dry_run,
        queues=queues,
        total_waiting=sum(q.waiting for q in queues.values()),
        total_moved=sum(q.moved for q in queues.values()),
    ).model_dump(mode="json")
