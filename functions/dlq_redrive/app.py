"""Console-invoked handler: moves dead-lettered deliveries back to their priority queue."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from herald.clients import client
from herald.domain import Priority
from herald.observability import logger
from herald.redrive import redrive
from herald.settings import RedriveSettings


class RedriveRequest(BaseModel):
    priority: Priority | Literal["all"] = "all"
    limit: int | None = Field(default=None, ge=1, description="At most this many messages per queue.")


class RedriveResult(BaseModel):
    moved: dict[str, int]
    total: int


@dataclass(frozen=True)
class Dependencies:
    settings: RedriveSettings
    sqs: Any


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies(settings=RedriveSettings.from_environment(environ), sqs=client("sqs"))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    request = RedriveRequest.model_validate(event or {})
    priorities = list(Priority) if request.priority == "all" else [Priority(request.priority)]
    moved = {}
    for priority in priorities:
        moved[priority.value] = redrive(
            d.sqs, d.settings.dlq_url(priority), d.settings.queue_url(priority), limit=request.limit
        )
        logger.info("redrove", priority=priority.value, moved=moved[priority.value])
    return RedriveResult(moved=moved, total=sum(moved.values())).model_dump()
