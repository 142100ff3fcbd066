"""Failure classes of every error Herald's functions catch, in one place: permanent, transient or ambiguous.

Each channel sorts what its provider raised here, and each queue consumer (fan-out, deliver,
feedback) sorts what escaped its handling here: a permanent failure is recorded or dead-lettered
at once with its reason, a transient one is retried with backoff.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionClosedError, ParamValidationError, ReadTimeoutError

from herald.models.failures import Failure

# SNS answers for a push endpoint that will never take a message again: the device goes inactive.
DEVICE_GONE_ERROR_CODES = frozenset(
    {
        "EndpointDisabled",  # SNS: APNs/FCM reported the token invalid, SNS disabled the endpoint
        "NotFound",  # SNS: the endpoint was deleted
    }
)
# Answers about the request itself, from any AWS service Herald calls: the same request is refused
# the same way every time, so retrying only delays its dead letter (by about 15 minutes at normal priority).
PERMANENT_ERROR_CODES = DEVICE_GONE_ERROR_CODES | {
    "MessageRejected",  # SES: rejected recipient or unverified sender
    "InvalidParameter",  # SNS: bad phone number, oversized message
    "InvalidParameterValue",  # SES, SNS, SQS (query protocol)
    "InvalidParameterValueException",  # SQS (JSON protocol)
    "ValidationError",  # SNS, CloudWatch
    "ValidationException",  # DynamoDB: a key over its size limit, an item over 400 KB, a malformed expression
    "InvalidMessageContents",  # SQS: characters a message may not hold
    "OptedOut",  # SNS: the phone number opted out of SMS (Herald checks before it sends)
}
# Errors of the request that never left the machine: botocore refused its parameters.
PERMANENT_EXCEPTIONS = (ParamValidationError,)


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a ClientError, None for anything else."""
    if not isinstance(error, ClientError):
        return None
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def failure_from(error: Exception) -> Failure:
    """Sorts an error: permanent (a code or a parameter no retry can fix), ambiguous, or transient.

    Transient: throttling, 5xx, connection errors and anything unknown, so an unforeseen error is
    retried and then dead-lettered with its reason, never dropped. A read timeout or a connection
    cut before the answer is also `ambiguous`: the provider may have accepted the request.
    """
    if isinstance(error, Failure):
        return error
    if isinstance(error, ClientError):
        code = error_code(error) or "Unknown"
        message = error.response.get("Error", {}).get("Message", "")
        # LocalStack answers a publish to a deleted endpoint with InvalidParameter, AWS and moto with NotFound.
        gone = code in DEVICE_GONE_ERROR_CODES or (
            code == "InvalidParameter" and "no endpoint found" in message.lower()
        )
        return Failure(f"{code}: {message}", permanent=code in PERMANENT_ERROR_CODES, device_gone=gone)
    if isinstance(error, PERMANENT_EXCEPTIONS):
        return Failure(f"{type(error).__name__}: {_first_line(error)}", permanent=True)
    if isinstance(error, ReadTimeoutError | ConnectionClosedError):
        return Failure(f"{type(error).__name__}: {error}", ambiguous=True)
    return Failure(f"{type(error).__name__}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__
