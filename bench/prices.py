"""AWS list prices (the one place they live) and the arithmetic of a bill per million notifications.

Prices: us-east-1, on demand, USD, as listed 2026-11 (docs of the project's FACTS). Free tiers are
ignored: the bill is the marginal cost of a million notifications.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

PRICES_AS_OF = "2026-11"
REGION = "us-east-1"
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    rest_api_per_million: float = 3.50
    http_api_per_million: float = 1.00
    sqs_per_million_requests: float = 0.40  # per 64 KB chunk of payload
    sns_per_million_publishes: float = 0.50  # a PublishBatch of up to 64 KB is one publish request
    sns_per_million_mobile_push: float = 0.50  # deliveries to APNs / FCM endpoints
    lambda_per_million_requests: float = 0.20
    lambda_per_gb_second_arm64: float = 0.0000133334
    dynamodb_per_million_write_units: float = 0.625  # on demand; 1 unit writes up to 1 KB
    dynamodb_per_million_read_units: float = 0.125  # on demand; 1 unit reads up to 4 KB consistently


PRICES = Prices()


class ApiKind(StrEnum):
    REST = "REST API"
    HTTP = "HTTP API"


@dataclass(frozen=True)
class Usage:
    """What one notification uses, on average. Counts are per notification."""

    api_requests: float
    lambda_invocations: float
    lambda_gb_seconds: float
    sqs_requests: float
    sns_publishes: float  # to the priority topic
    push_deliveries: float  # direct publishes to a mobile endpoint: one publish and one push each
    dynamodb_write_units: float
    dynamodb_read_units: float

    def with_idempotency_records(self) -> Usage:
        """Plus an idempotency record per notification: a conditional PutItem, then an UpdateItem
        (1 KB items, 1 write unit each; their TTL deletes are free)."""
        return replace(self, dynamodb_write_units=self.dynamodb_write_units + 2)


def bill_per_million(usage: Usage, api: ApiKind, prices: Prices = PRICES) -> dict[str, float]:
    """USD per million notifications, by service."""
    api_price = prices.rest_api_per_million if api is ApiKind.REST else prices.http_api_per_million
    return {
        "API Gateway": usage.api_requests * api_price,
        "Lambda": usage.lambda_invocations * prices.lambda_per_million_requests
        + usage.lambda_gb_seconds * MILLION * prices.lambda_per_gb_second_arm64,
        "SQS": usage.sqs_requests * prices.sqs_per_million_requests,
        "SNS (topic)": usage.sns_publishes * prices.sns_per_million_publishes,
        "SNS (mobile push)": usage.push_deliveries
        * (prices.sns_per_million_publishes + prices.sns_per_million_mobile_push),
        "DynamoDB": usage.dynamodb_write_units * prices.dynamodb_per_million_write_units
        + usage.dynamodb_read_units * prices.dynamodb_per_million_read_units,
    }


def push_alone_per_million(deliveries_per_notification: float, prices: Prices = PRICES) -> float:
    """The same deliveries published straight to SNS mobile endpoints: one publish and one push each."""
    return deliveries_per_notification * (prices.sns_per_million_publishes + prices.sns_per_million_mobile_push)


def gb_seconds(billed_milliseconds: float, memory_mb: int) -> float:
    """Lambda bills duration rounded up to the millisecond, times the configured memory."""
    return billed_milliseconds / 1000 * memory_mb / 1024
