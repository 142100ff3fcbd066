"""The dated price table (the one place prices live) and the bill per million notifications.

List prices, us-east-1, on demand, USD, as published on the services' pricing pages and read on
PRICES_AS_OF. Free tiers and volume tiers are ignored: the bill is the marginal cost of a million
notifications at the first paid tier. Not billed here: CloudWatch Logs, X-Ray, data transfer, KMS
requests of the SSE-encrypted queues and topic, DynamoDB storage, point-in-time recovery.

Herald's own overhead is what Herald adds to carrying a notification: DynamoDB, SQS, SNS publishes
to its topic, Lambda requests and compute. Shown apart: API Gateway (the caller's front door, a REST
API today, an HTTP API would cost less) and the provider fees every sender pays whatever it is built
with (SES per email, SMS per message, SNS mobile push per delivery, each with its SNS publish
request where SNS carries it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PRICES_AS_OF = "2026-11-30"
REGION = "us-east-1"
MILLION = 1_000_000

# Herald's own overhead, line by line, in the order the tables show them.
DYNAMODB = "DynamoDB"
SQS = "SQS"
SNS_PUBLISH = "SNS publish"
LAMBDA_REQUESTS = "Lambda requests"
LAMBDA_COMPUTE = "Lambda compute"
OWN_LINES = (DYNAMODB, SQS, SNS_PUBLISH, LAMBDA_REQUESTS, LAMBDA_COMPUTE)

REST_API = "API Gateway, REST API"
HTTP_API = "API Gateway, HTTP API"
MOBILE_PUSH = "SNS mobile push (publish + delivery)"
SMS = "SMS (publish + message, US)"
EMAIL = "SES email"
PROVIDER_LINES = (MOBILE_PUSH, SMS, EMAIL)


@dataclass(frozen=True)
class Prices:
    dynamodb_per_million_write_units: float = 0.625  # on demand, per write request unit (1 KB)
    dynamodb_per_million_read_units: float = 0.125  # on demand, per read request unit (4 KB strongly consistent)
    sqs_per_million_requests: float = 0.40  # standard queue; each 64 KB chunk of a payload is a request
    sns_per_million_requests: float = 0.50  # standard topic publishes; each 64 KB chunk is a request
    lambda_per_million_requests: float = 0.20
    lambda_per_gb_second: Mapping[str, float] = field(
        default_factory=lambda: {"arm64": 0.0000133334, "x86_64": 0.0000166667}
    )
    rest_api_per_million: float = 3.50  # first 333 million a month
    http_api_per_million: float = 1.00  # first 300 million a month, per 512 KB request
    sns_per_million_mobile_push: float = 0.50  # deliveries to APNs / FCM, besides the publish request
    sms_per_message: float = 0.00581  # to a US number, base price (carrier fees extra, by carrier)
    ses_per_thousand_emails: float = 0.10


PRICES = Prices()


@dataclass(frozen=True)
class Usage:
    """What one notification uses, on average, in billing units."""

    dynamodb_write_units: float = 0.0
    dynamodb_read_units: float = 0.0
    sqs_requests: float = 0.0
    sns_requests: float = 0.0  # publishes to Herald's topic (64 KB chunks)
    lambda_invocations: float = 0.0
    lambda_gb_seconds: Mapping[str, float] = field(default_factory=dict)  # by architecture
    api_requests: float = 0.0
    push_publishes: float = 0.0  # SNS Publish to a platform endpoint: a request and a mobile push delivery
    sms_publishes: float = 0.0
    emails: float = 0.0


def own_overhead(usage: Usage, prices: Prices = PRICES) -> dict[str, float]:
    """Herald's own overhead, USD per million notifications, by line."""
    compute = sum(gb_s * prices.lambda_per_gb_second[arch] for arch, gb_s in usage.lambda_gb_seconds.items())
    return {
        DYNAMODB: usage.dynamodb_write_units * prices.dynamodb_per_million_write_units
        + usage.dynamodb_read_units * prices.dynamodb_per_million_read_units,
        SQS: usage.sqs_requests * prices.sqs_per_million_requests,
        SNS_PUBLISH: usage.sns_requests * prices.sns_per_million_requests,
        LAMBDA_REQUESTS: usage.lambda_invocations * prices.lambda_per_million_requests,
        LAMBDA_COMPUTE: compute * MILLION,
    }


def api_gateway(usage: Usage, prices: Prices = PRICES) -> dict[str, float]:
    """The front door, USD per million notifications: what a REST API costs, and an HTTP API would."""
    return {
        REST_API: usage.api_requests * prices.rest_api_per_million,
        HTTP_API: usage.api_requests * prices.http_api_per_million,
    }


def provider_fees(usage: Usage, prices: Prices = PRICES) -> dict[str, float]:
    """What the providers charge for the deliveries, USD per million notifications."""
    return {
        MOBILE_PUSH: usage.push_publishes * (prices.sns_per_million_requests + prices.sns_per_million_mobile_push),
        SMS: usage.sms_publishes * (prices.sns_per_million_requests + prices.sms_per_message * MILLION),
        EMAIL: usage.emails * prices.ses_per_thousand_emails * 1000,
    }
