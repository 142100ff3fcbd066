"""boto3 clients, created once per container and shared by every invocation."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Retries with backoff inside the SDK for throttling; Herald's own retries go through SQS.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    """The client for one service. Endpoints follow the standard AWS_ENDPOINT_URL* variables."""
    return boto3.session.Session().client(service, config=_CONFIG)
