"""Logging, metrics and tracing for every function, configured by the POWERTOOLS_* variables."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = Logger()
metrics = Metrics()


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The X-Ray tracer, created on first use: loading the X-Ray SDK costs 0.2 s of cold start."""
    from aws_lambda_powertools import Tracer

    return Tracer()
