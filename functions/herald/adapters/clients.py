"""boto3 clients, created once per container and shared by every invocation."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Retries with backoff inside the SDK for throttling; Herald's own retries go through SQS.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)
# A provider call that sends something (SES SendEmail, SNS Publish) is never retried by the SDK: a
# retry after a timed-out or cut-off answer can send twice, unseen. Herald decides instead.
_PROVIDER_CONFIG = _CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))


@cache
def client(service: str, one_attempt: bool = False) -> Any:
    """The client for one service. Endpoints follow the standard AWS_ENDPOINT_URL* variables."""
    return boto3.session.Session().client(service, config=_PROVIDER_CONFIG if one_attempt else _CONFIG)


def provider_client(service: str) -> Any:
    """The client that hands deliveries to a provider (ses, sns): one attempt per call. Cached with
    the others, so `client.cache_clear()` drops it too."""
    return client(service, one_attempt=True)
