"""Which endpoint serves each AWS service Herald uses, read from the standard AWS_ENDPOINT_URL* variables.

botocore honours `AWS_ENDPOINT_URL_<SERVICE>` before `AWS_ENDPOINT_URL`, so one run can put SQS,
SNS, SES and CloudFormation on LocalStack and DynamoDB on moto; the local stack does the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import requests

# Every service the local stack and Herald's functions call (CloudFormation only to provision).
SERVICES = ("cloudformation", "dynamodb", "ses", "sns", "sqs")
Emulator = Literal["moto", "localstack", "unknown"]


def variable(service: str) -> str:
    """The per-service variable botocore reads: AWS_ENDPOINT_URL_ + the service id in capitals."""
    return f"AWS_ENDPOINT_URL_{service.upper()}"


def endpoint_of(service: str, environ: Mapping[str, str] | None = None) -> str | None:
    source = os.environ if environ is None else environ
    return source.get(variable(service)) or source.get("AWS_ENDPOINT_URL") or None


def unserved(environ: Mapping[str, str] | None = None) -> list[str]:
    """The services no endpoint variable points anywhere: the local stack serves these with moto."""
    return [service for service in SERVICES if endpoint_of(service, environ) is None]


def emulator_at(endpoint: str, timeout: float = 5) -> Emulator:
    """Which emulator answers at `endpoint`: each has a health or data route of its own."""
    base = endpoint.rstrip("/")
    try:
        health = requests.get(f"{base}/_localstack/health", timeout=timeout)
        if health.ok and "services" in health.json():
            return "localstack"
        if requests.get(f"{base}/moto-api/data.json", timeout=timeout).ok:
            return "moto"
    except (requests.RequestException, ValueError):
        pass
    return "unknown"


def _cloudformation_at(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("cloudformation", endpoint_url=endpoint)


def cloudformation_serving(
    default: Any, make_client: Callable[[str], Any] = _cloudformation_at
) -> Callable[[str], Any]:
    """Resource type -> the CloudFormation that creates it: the one of the endpoint serving its service.

    With DynamoDB on moto and the rest on LocalStack, moto's CloudFormation creates the tables and
    LocalStack's the queues and topic: each emulator holds the resources its service serves.
    """
    template_endpoint = endpoint_of("cloudformation")
    clients: dict[str, Any] = {}

    def choose(resource_type: str) -> Any:
        service = resource_type.split("::")[1].lower()  # AWS::DynamoDB::Table -> dynamodb
        endpoint = endpoint_of(service)
        if endpoint is None or endpoint == template_endpoint:
            return default
        if endpoint not in clients:
            clients[endpoint] = make_client(endpoint)
        return clients[endpoint]

    return choose
