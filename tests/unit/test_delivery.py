"""Delivering one job: the retry schedule and the outcome recorded for every kind of failure."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from herald.channels import DeliveryFailed
from herald.delivery import SQS_MAX_VISIBILITY, RetryLater, deliver, retry_delay
from herald.domain import Channel, DeliveryJob, DeliveryState
from tests.fakes import Attempt, FakeSender, FakeStatusStore

MAX_RECEIVE_COUNT = 5
BASE, CAP = 2, 60


def client_error(code: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Publish")


def deliver_with(job: DeliveryJob, sender: FakeSender, status: FakeStatusStore, receive_count: int) -> DeliveryState:
    return deliver(
        job,
        receive_count,
        {job.channel: sender},
        status,
        max_receive_count=MAX_RECEIVE_COUNT,
        retry_base=BASE,
        retry_cap=CAP,
    )


# ---------------------------------------------------------------- retry_delay


@pytest.mark.parametrize(
    ("receive_count", "seconds"),
    [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60)],
)
def test_retry_delay_doubles_from_the_base_up_to_the_cap(receive_count, seconds):
    # When the attempt `receive_count` failed, with base 2 s and cap 60 s
    delay = retry_delay(receive_count, base=BASE, cap=CAP)

    # Then the next attempt waits base * 2^(receive_count - 1), at most the cap
    assert delay == seconds


def test_retry_delay_never_exceeds_the_twelve_hours_sqs_allows():
    # Given a cap above SQS's longest visibility timeout
    cap = 10 * SQS_MAX_VISIBILITY

    # When a late attempt fails
    delay = retry_delay(40, base=BASE, cap=cap)

    # Then the delay is what ChangeMessageVisibility accepts
    assert delay == SQS_MAX_VISIBILITY == 12 * 60 * 60


def test_retry_delay_of_a_huge_receive_count_stays_at_the_cap():
    # When the receive count is absurdly large
    delay = retry_delay(10_000, base=BASE, cap=CAP)

    # Then the exponent does not blow up and the cap holds
    assert delay == CAP


# ---------------------------------------------------------------- deliver


def test_success_records_sent_with_the_provider_message_id(job):
    # Given a sender the provider accepts
    sender, status = FakeSender(), FakeStatusStore()

    # When the job is delivered on its first receive
    state = deliver_with(job, sender, status, receive_count=1)

    # Then it was sent once and recorded sent with the provider's id
    assert state is DeliveryState.SENT
    assert sender.sent == [job]
    assert status.attempts == [Attempt(job.delivery_id, DeliveryState.SENT, None, "provider-1")]
    record = status.delivery(job.notification_id, job.delivery_id)
    assert record.provider_message_id == "provider-1"
    assert record.sent_at is not None


def test_the_job_goes_to_the_sender_of_its_own_channel(job):
    # Given senders for two channels
    in_app, email = FakeSender(), FakeSender()
    status = FakeStatusStore()

    # When an in_app job is delivered
    deliver(job, 1, {Channel.IN_APP: in_app, Channel.EMAIL: email}, status, MAX_RECEIVE_COUNT, BASE, CAP)

    # Then only the in_app sender saw it
    assert in_app.sent == [job]
    assert email.tried == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (DeliveryFailed("inbox throttled"), "inbox throttled"),
        (client_error("Throttling", "Rate exceeded"), "Throttling: Rate exceeded"),
        (EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com"), "EndpointConnectionError"),
        (TimeoutError("read timed out"), "TimeoutError: read timed out"),
    ],
)
def test_transient_failure_is_retried_after_the_backoff_and_recorded_retrying(job, error, reason):
    # Given a sender failing in a way a retry can fix
    sender, status = FakeSender(error=error), FakeStatusStore()

    # When the third attempt fails
    with pytest.raises(RetryLater) as raised:
        deliver_with(job, sender, status, receive_count=3)

    # Then the queue is asked to bring it back after 2 * 2^2 s, and the delivery is retrying
    assert raised.value.delay == 8
    assert reason in raised.value.reason
    [attempt] = status.attempts
    assert attempt.state is DeliveryState.RETRYING
    assert reason in attempt.error


def test_failure_on_the_last_allowed_receive_is_dead_lettered_and_released_at_once(job):
    # Given a sender that keeps failing
    sender, status = FakeSender(error=DeliveryFailed("inbox throttled")), FakeStatusStore()

    # When the attempt that reaches the queue's maxReceiveCount fails
    with pytest.raises(RetryLater) as raised:
        deliver_with(job, sender, status, receive_count=MAX_RECEIVE_COUNT)

    # Then the delivery is recorded dead-lettered and the message made visible now, for the DLQ to take
    assert raised.value.delay == 0
    assert status.attempts == [Attempt(job.delivery_id, DeliveryState.DEAD_LETTERED, "inbox throttled", None)]


def test_failure_one_receive_before_the_last_is_still_a_retry(job):
    # Given a sender that keeps failing
    sender, status = FakeSender(error=DeliveryFailed("inbox throttled")), FakeStatusStore()

    # When the attempt before the last one fails
    with pytest.raises(RetryLater) as raised:
        deliver_with(job, sender, status, receive_count=MAX_RECEIVE_COUNT - 1)

    # Then it waits its backoff and stays retrying
    assert raised.value.delay == retry_delay(MAX_RECEIVE_COUNT - 1, BASE, CAP) > 0
    assert status.attempts[0].state is DeliveryState.RETRYING


@pytest.mark.parametrize(
    "error",
    [
        DeliveryFailed("device has no email address", permanent=True),
        client_error("EndpointDisabled", "Endpoint is disabled"),
        client_error("MessageRejected", "Email address is not verified"),
    ],
)
@pytest.mark.parametrize("receive_count", [1, MAX_RECEIVE_COUNT])
def test_permanent_failure_is_recorded_failed_and_not_retried(job, error, receive_count):
    # Given a sender failing in a way no retry can fix
    sender, status = FakeSender(error=error), FakeStatusStore()

    # When the job is delivered, on any attempt
    state = deliver_with(job, sender, status, receive_count=receive_count)

    # Then it returns (the message is deleted) with the delivery failed and the reason kept
    assert state is DeliveryState.FAILED
    [attempt] = status.attempts
    assert attempt.state is DeliveryState.FAILED
    assert attempt.error
    assert status.delivery(job.notification_id, job.delivery_id).last_error == attempt.error


def test_endpoint_disabled_records_the_provider_code_as_the_reason(job):
    # Given SNS answering that the push token was reported invalid
    sender = FakeSender(error=client_error("EndpointDisabled", "Endpoint is disabled"))
    status = FakeStatusStore()

    # When the job is delivered
    deliver_with(job, sender, status, receive_count=1)

    # Then the reason names the code, so an operator sees why
    assert status.attempts[0].error == "EndpointDisabled: Endpoint is disabled"


def test_retry_then_success_counts_both_attempts(job):
    # Given a delivery that failed once
    status = FakeStatusStore()
    with pytest.raises(RetryLater):
        deliver_with(job, FakeSender(error=DeliveryFailed("inbox throttled")), status, receive_count=1)

    # When the second receive succeeds
    deliver_with(job, FakeSender(), status, receive_count=2)

    # Then the delivery is sent after two attempts
    record = status.delivery(job.notification_id, job.delivery_id)
    assert record.status is DeliveryState.SENT
    assert record.attempts == 2
