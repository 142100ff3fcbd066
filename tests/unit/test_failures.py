"""One classifier for every AWS error Herald's functions catch: permanent, transient or ambiguous."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from herald.logic.failures import failure_from
from herald.models.failures import DeliveryFailed, Failure


def client_error(code: str, operation: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException", "UpdateItem", "Aggregated size of all range keys has exceeded 1024 bytes"),
        client_error("ValidationException", "PutItem", "Item size has exceeded the maximum allowed size"),
        client_error("InvalidMessageContents", "SendMessage", "Invalid characters found"),
        client_error("InvalidParameterValue", "SendMessage", "Message must be shorter than 262144 bytes"),
        client_error("InvalidParameterValueException", "SendMessage", "Value for parameter is invalid"),
        client_error("InvalidParameter", "Publish", "Invalid parameter: PhoneNumber"),
        client_error("MessageRejected", "SendEmail", "Email address is not verified"),
        ParamValidationError(report="Invalid length for parameter Key.sk.S, value: 0, valid min length: 1"),
    ],
)
def test_an_error_about_the_request_itself_is_permanent_whichever_service_raised_it(error):
    # When it is classified, Then no retry is spent on it, and the reason says what was refused
    failure = failure_from(error)
    assert failure.permanent and not failure.ambiguous
    assert failure.reason


@pytest.mark.parametrize(
    "error",
    [
        client_error("ProvisionedThroughputExceededException", "UpdateItem"),
        client_error("ThrottlingException", "Query"),
        client_error("Throttling", "SendEmail"),
        client_error("InternalServerError", "UpdateItem"),
        client_error("ServiceUnavailable", "Publish"),
        client_error("AccessDeniedException", "PutItem"),  # a deployment to fix, then a redrive
        client_error("ResourceNotFoundException", "PutItem"),
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
        RuntimeError("something unforeseen"),
    ],
)
def test_throttling_outages_and_the_unforeseen_are_transient(error):
    failure = failure_from(error)
    assert not failure.permanent and not failure.ambiguous


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://sns.us-east-1.amazonaws.com"),
    ],
)
def test_a_lost_answer_is_ambiguous_and_not_permanent(error):
    failure = failure_from(error)
    assert failure.ambiguous and not failure.permanent


def test_a_failure_already_sorted_by_its_raiser_is_kept_as_it_is():
    raised = DeliveryFailed("device has no phone number", permanent=True)
    assert failure_from(raised) is raised
    assert isinstance(raised, Failure)


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (client_error("EndpointDisabled", "Publish", "Endpoint is disabled"), True),
        (client_error("NotFound", "Publish", "Endpoint does not exist"), True),
        (client_error("InvalidParameter", "Publish", "No endpoint found for the target arn specified"), True),
        (client_error("InvalidParameter", "Publish", "Invalid parameter: Message too long"), False),
    ],
)
def test_a_push_endpoint_sns_reports_gone_means_the_device_is_gone(error, gone):
    failure = failure_from(error)
    assert failure.permanent and failure.device_gone is gone
