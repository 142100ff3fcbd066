"""Failure classes: which provider and AWS answers are permanent, which transient, which ambiguous."""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from herald.models.failures import DeliveryFailed

# SNS answers for a push endpoint that will never take a message again: the device goes inactive.
DEVICE_GONE_ERROR_CODES = frozenset(
    {
        "EndpointDisabled",  # SNS: APNs/FCM reported the token invalid, SNS disabled the endpoint
        "NotFound",  # SNS: the endpoint was deleted
    }
)
# Provider answers that no retry can fix.
PERMANENT_ERROR_CODES = DEVICE_GONE_ERROR_CODES | {
    "MessageRejected",  # SES: rejected recipient or unverified sender
    "InvalidParameter",  # SNS: bad phone number, oversized message
    "InvalidParameterValue",
    "ValidationError",
    "OptedOut",  # SNS: the phone number opted out of SMS
}


def failure_from(error: Exception) -> DeliveryFailed:
    """Classifies what a provider raised: permanent (a code no retry can fix) or transient.

    Transient: throttling, 5xx, connection errors (BotoCoreError) and anything unknown, so an
    unforeseen error is retried and then dead-lettered with its reason, never dropped. A read
    timeout or a connection cut before the answer is also `ambiguous`: the provider may have
    accepted the delivery.
    """
    if isinstance(error, DeliveryFailed):
        return error
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        # LocalStack answers a publish to a deleted endpoint with InvalidParameter, AWS and moto with NotFound.
        gone = code in DEVICE_GONE_ERROR_CODES or (
            code == "InvalidParameter" and "no endpoint found" in message.lower()
        )
        return DeliveryFailed(f"{code}: {message}", permanent=code in PERMANENT_ERROR_CODES, device_gone=gone)
    if isinstance(error, ReadTimeoutError | ConnectionClosedError):
        return DeliveryFailed(f"{type(error).__name__}: {error}", ambiguous=True)
    return DeliveryFailed(f"{type(error).__name__}: {error}")
