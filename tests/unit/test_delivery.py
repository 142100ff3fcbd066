"""Delivering one job: the backoff table, the claim, and the outcome recorded for every kind of failure."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from herald.logic.delivery import (
    OUTCOME_UNKNOWN,
    SQS_MAX_VISIBILITY,
    UNPARKED_COPY,
    Outcome,
    Result,
    RetryPolicy,
    backoff_ceiling,
    deliver,
    retry_delay,
)
from herald.models.domain import Channel, DeliveryJob, DeliveryState, now
from herald.models.failures import DeliveryFailed
from tests.fakes import Attempt, FakeDeviceRegistry, FakeInboxSender, FakeSender, FakeStatusStore, make_device

MAX_ATTEMPTS = 5
BASE, CAP = 2, 60
PUSH_ARN = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/herald/7"
# Draws the top of the jitter range, so a test reads the ceiling exactly.
LONGEST = RetryPolicy(max_attempts=MAX_ATTEMPTS, base=BASE, cap=CAP, draw=lambda: 0.999999)


def client_error(code: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Publish")


def deadline(seconds: int = 30) -> datetime:
    return now() + timedelta(seconds=seconds)


def deliver_with(
    job: DeliveryJob,
    sender: FakeSender,
    status: FakeStatusStore,
    attempt: int,
    devices: FakeDeviceRegistry | None = None,
    parked_at: datetime | None = None,
) -> Result:
    registry = devices if devices is not None else FakeDeviceRegistry()
    return deliver(job, attempt, deadline(), {job.channel: sender}, status, registry, LONGEST, parked_at)


# ---------------------------------------------------------------- the backoff table


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60)],
)
def test_backoff_ceiling_doubles_from_the_base_up_to_the_cap(attempt, ceiling):
    assert backoff_ceiling(attempt, base=BASE, cap=CAP) == ceiling


@pytest.mark.parametrize(
    ("priority", "base", "cap", "ceilings"),
    [
        ("high", 2, 60, [2, 4, 8, 16, 32]),
        ("normal", 10, 900, [10, 20, 40, 80, 160]),
        ("low", 60, 3600, [60, 120, 240, 480, 960]),
    ],
)
def test_each_prioritys_default_settings_give_its_table_of_delays(priority, base, cap, ceilings):
    # Given the template's default base and cap of a priority, When attempts 1..5 fail, Then these are the ceilings
    assert [backoff_ceiling(attempt, base, cap) for attempt in range(1, 6)] == ceilings, priority


def test_backoff_never_exceeds_the_twelve_hours_sqs_allows_nor_overflows():
    assert backoff_ceiling(40, base=BASE, cap=10 * SQS_MAX_VISIBILITY) == SQS_MAX_VISIBILITY == 12 * 60 * 60
    assert backoff_ceiling(10_000, base=BASE, cap=CAP) == CAP


@pytest.mark.parametrize(("draw", "delay"), [(0.0, 0), (0.25, 2), (0.5, 4), (0.999999, 8)])
def test_full_jitter_spreads_the_delay_uniformly_from_zero_to_the_ceiling(draw, delay):
    # Given the third attempt failed (ceiling 8 s), When the jitter draws `draw`, Then the delay is draw * (8 + 1)
    assert retry_delay(3, BASE, CAP, draw=lambda: draw) == delay


def test_jittered_delays_stay_within_bounds_and_differ_between_messages():
    # Given many failed third attempts with a real random source
    source = random.Random(7)
    delays = [retry_delay(3, BASE, CAP, draw=source.random) for _ in range(500)]

    # Then every delay is within [0, 8] and they spread out instead of retrying in lockstep
    assert min(delays) >= 0 and max(delays) <= 8
    assert len(set(delays)) == 9


# ---------------------------------------------------------------- deliver


def test_success_claims_then_records_sent_with_the_provider_message_id(push_job):
    # Given a sender the provider accepts and a journal of status calls
    journal: list[str] = []
    sender, status = FakeSender(), FakeStatusStore(journal=journal)

    # When the push job is delivered on its first receive
    result = deliver_with(push_job, sender, status, attempt=1)

    # Then it was claimed, sent once and recorded sent with the provider's id
    assert result.outcome is Outcome.SENT
    assert journal == ["status.claim_deliveries", "status.record_outcomes"]
    assert sender.sent == [push_job]
    assert status.attempts == [Attempt(push_job.delivery_id, DeliveryState.SENT, None, "provider-1")]
    record = status.delivery(push_job.notification_id, push_job.delivery_id)
    assert (record.attempts, record.provider_message_id) == (1, "provider-1")


# ---------------------------------------------------------------- in-app: the inbox item is the record


def test_an_in_app_first_try_makes_no_status_write_and_reads_sent_from_its_inbox_item(job):
    # Given the inbox (it keeps one item per delivery) and a journal of status calls
    journal: list[str] = []
    inbox = FakeInboxSender()
    status = FakeStatusStore(journal=journal, inbox=inbox)

    # When the in-app job is delivered on its first receive
    result = deliver_with(job, inbox, status, attempt=1)

    # Then the item is written once and nothing else: no claim, no outcome; the status reads it sent
    assert result.outcome is Outcome.SENT
    assert inbox.sent == [job]
    assert journal == []
    assert status.delivery_writes == []
    record = status.delivery(job.notification_id, job.delivery_id)
    assert (record.status, record.attempts) == (DeliveryState.SENT, 1)
    assert record.sent_at is not None


def test_a_copy_of_an_in_app_delivery_finds_its_item_and_is_done_without_a_second_item(job):
    # Given an in-app delivery sent on its first try
    inbox = FakeInboxSender()
    status = FakeStatusStore(inbox=inbox)
    deliver_with(job, inbox, status, attempt=1)

    # When an SQS duplicate of its message arrives, first receive too
    again = deliver_with(job, inbox, status, attempt=1)

    # Then the inbox found the item: done, one item, still no status write
    assert again.outcome is Outcome.ALREADY_DONE
    assert (len(inbox.sent), len(inbox.tried), len(inbox.items)) == (1, 2, 1)
    assert status.delivery_writes == []


def test_an_in_app_first_try_that_fails_is_claimed_and_recorded_then_its_retry_records_sent(job):
    # Given an inbox that is throttled on the first try
    inbox = FakeInboxSender(error=DeliveryFailed("inbox throttled"))
    status = FakeStatusStore(inbox=inbox)

    # When the first try fails
    first = deliver_with(job, inbox, status, attempt=1)

    # Then it is recorded retrying (a claim and an outcome, its attempt counted), to come back
    assert first.outcome is Outcome.RETRY
    assert [kind for kind, _, _ in status.delivery_writes] == ["claim", "record"]
    record = status.delivery(job.notification_id, job.delivery_id)
    assert (record.status, record.attempts, record.last_error) == (DeliveryState.RETRYING, 1, "inbox throttled")

    # And when the retry finds the inbox working, it is claimed, sent and recorded as any channel's
    inbox.error = None
    second = deliver_with(job, inbox, status, attempt=2)
    assert second.outcome is Outcome.SENT
    record = status.delivery(job.notification_id, job.delivery_id)
    assert (record.status, record.attempts, record.last_error) == (DeliveryState.SENT, 2, None)
    assert status.attempts[-1].state is DeliveryState.SENT


def test_an_in_app_first_try_that_fails_for_good_is_recorded_failed(job):
    # Given an inbox write refused for good (an item over DynamoDB's size, say)
    inbox = FakeInboxSender(error=DeliveryFailed("item too large", permanent=True))
    status = FakeStatusStore(inbox=inbox)

    # When it is delivered
    result = deliver_with(job, inbox, status, attempt=1)

    # Then it ends failed, and the status says so
    assert result.outcome is Outcome.FAILED
    record = status.delivery(job.notification_id, job.delivery_id)
    assert (record.status, record.last_error) == (DeliveryState.FAILED, "item too large")


def test_an_in_app_first_try_that_fails_while_another_copy_holds_its_claim_leaves_the_record_to_it(job):
    # Given a copy of the delivery that holds its claim (a retry under way), and a first try that fails
    inbox = FakeInboxSender(error=DeliveryFailed("inbox throttled"))
    status = FakeStatusStore(inbox=inbox)
    status.claim_delivery(job, "request-1/message-1", deadline(20))

    # When the first try fails
    result = deliver_with(job, inbox, status, attempt=1)

    # Then it writes nothing over the holder's claim and comes back once that claim could have expired
    assert result.outcome is Outcome.RETRY
    assert 20 <= result.retry_in <= 21
    assert status.attempts == []


def test_a_retry_of_an_in_app_delivery_whose_first_try_reached_the_inbox_is_done(job):
    # Given a first try that wrote the item but whose answer was lost (recorded retrying)
    inbox = FakeInboxSender()
    status = FakeStatusStore(inbox=inbox)
    inbox.items[(job.notification_id, job.delivery_id)] = (job, now())
    status.claim_delivery(job, "request-1/message-1", deadline(-1))
    status.record_outcome(job, "request-1/message-1", DeliveryState.RETRYING, "TimeoutError")

    # When the retry comes
    result = deliver_with(job, inbox, status, attempt=2)

    # Then the inbox finds the item: done, recorded sent, no second item
    assert result.outcome is Outcome.ALREADY_DONE
    assert inbox.sent == [] and len(inbox.items) == 1
    assert status.attempts[-1].state is DeliveryState.SENT


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (DeliveryFailed("inbox throttled"), "inbox throttled"),
        (client_error("Throttling", "Rate exceeded"), "Throttling: Rate exceeded"),
        (client_error("ServiceUnavailable", "try later"), "ServiceUnavailable: try later"),
        (EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com"), "EndpointConnectionError"),
        (TimeoutError("read timed out"), "TimeoutError: read timed out"),
    ],
)
def test_transient_failure_is_retried_after_its_backoff_and_recorded_retrying(job, error, reason):
    # Given a sender failing in a way a retry can fix
    sender, status = FakeSender(error=error), FakeStatusStore()

    # When the first attempt fails
    result = deliver_with(job, sender, status, attempt=1)

    # Then the queue is asked to bring it back within the first backoff, and the delivery is retrying
    assert (result.outcome, result.retry_in) == (Outcome.RETRY, 2)
    assert reason in (result.reason or "")
    [attempt] = status.attempts
    assert attempt.state is DeliveryState.RETRYING
    assert reason in (attempt.error or "")


def test_failure_of_the_last_allowed_attempt_is_dead_lettered_with_its_reason(job):
    # Given a sender that keeps failing
    sender, status = FakeSender(error=DeliveryFailed("inbox throttled")), FakeStatusStore()

    # When the last allowed attempt fails
    result = deliver_with(job, sender, status, attempt=MAX_ATTEMPTS)

    # Then the message goes to the DLQ with the reason, and the status says dead_lettered before anyone looks there
    assert result.outcome is Outcome.DEAD_LETTER
    assert result.reason == "last attempt failed: inbox throttled"
    assert status.attempts == [Attempt(job.delivery_id, DeliveryState.DEAD_LETTERED, "inbox throttled", None)]


@pytest.mark.parametrize(
    "error",
    [
        DeliveryFailed("device has no email address", permanent=True),
        client_error("MessageRejected", "Email address is not verified"),
        client_error("InvalidParameter", "Invalid phone number"),
    ],
)
@pytest.mark.parametrize("attempt", [1, MAX_ATTEMPTS])
def test_permanent_failure_is_recorded_failed_and_not_retried(job, error, attempt):
    # Given a sender failing in a way no retry can fix
    sender, status = FakeSender(error=error), FakeStatusStore()

    # When the job is delivered, on any attempt
    result = deliver_with(job, sender, status, attempt=attempt)

    # Then the message is done with the delivery failed and the reason kept
    assert result.outcome is Outcome.FAILED
    [attempt_record] = status.attempts
    assert attempt_record.state is DeliveryState.FAILED
    assert status.delivery(job.notification_id, job.delivery_id).last_error == attempt_record.error == result.reason


@pytest.mark.parametrize("code", ["EndpointDisabled", "NotFound"])
def test_a_push_endpoint_sns_reports_gone_fails_the_delivery_and_marks_the_device_inactive(job, code):
    # Given a push device whose SNS endpoint was disabled (token invalid) or deleted
    push = job.model_copy(update={"channel": Channel.PUSH, "device_id": "pixel", "endpoint_arn": PUSH_ARN})
    devices = FakeDeviceRegistry([make_device(push.user_id, "pixel", Channel.PUSH, endpoint_arn=PUSH_ARN)])
    sender, status = FakeSender(error=client_error(code, "Endpoint is disabled")), FakeStatusStore()

    # When the job is delivered
    result = deliver_with(push, sender, status, attempt=1, devices=devices)

    # Then it fails for good naming the code, and later fan-outs will skip the device
    assert result.outcome is Outcome.FAILED
    assert status.attempts[0].error == f"{code}: Endpoint is disabled"
    device = devices.get(push.user_id, "pixel")
    assert device is not None and not device.active
    assert device.inactive_reason == f"{code}: Endpoint is disabled"


def test_a_duplicate_of_a_sent_delivery_is_not_sent_again(push_job):
    # Given a delivery already sent
    sender, status = FakeSender(), FakeStatusStore()
    deliver_with(push_job, sender, status, attempt=1)

    # When SQS hands the same push_job over again (a duplicate, or a fan-out retried after a partial publish)
    again = deliver_with(push_job, sender, status, attempt=1)

    # Then it is done without a second provider call
    assert again.outcome is Outcome.ALREADY_DONE
    assert len(sender.tried) == 1


def test_a_duplicate_while_another_attempt_holds_the_claim_waits_for_the_claim_to_expire(push_job):
    # Given another invocation that claimed the delivery for 20 more seconds
    sender, status = FakeSender(), FakeStatusStore()
    status.claim_delivery(push_job, "request-1/message-1", deadline(20))

    # When a duplicate of the push_job arrives
    result = deliver(push_job, 1, deadline(), {push_job.channel: sender}, status, FakeDeviceRegistry(), LONGEST)

    # Then the provider is not called and the duplicate comes back once the claim could have expired
    assert result.outcome is Outcome.RETRY
    assert 20 <= result.retry_in <= 21
    assert sender.tried == []


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS, Channel.PUSH])
def test_after_a_crash_after_send_a_non_idempotent_channel_is_not_sent_again(job, channel):
    # Given an invocation that claimed the delivery, called the provider and died before recording it
    crashed = job.model_copy(update={"channel": channel, "address": "ada@example.com", "endpoint_arn": PUSH_ARN})
    sender, status = FakeSender(), FakeStatusStore()
    status.claim_delivery(crashed, "request-1/message-1", deadline(-1))

    # When the message returns after the claim expired
    result = deliver_with(crashed, sender, status, attempt=2)

    # Then the provider is not called a second time: the delivery ends failed, saying the outcome is unknown
    assert sender.tried == []
    assert result.outcome is Outcome.FAILED
    assert status.delivery(job.notification_id, job.delivery_id).last_error == OUTCOME_UNKNOWN


def test_after_a_crash_an_in_app_delivery_is_written_again_because_the_inbox_write_is_idempotent(job):
    # Given an in_app delivery whose invocation died holding the claim
    sender, status = FakeSender(), FakeStatusStore()
    status.claim_delivery(job, "request-1/message-1", deadline(-1))

    # When the message returns after the claim expired
    result = deliver_with(job, sender, status, attempt=2)

    # Then the inbox item is written (again: same key, one item) and the delivery is sent
    assert result.outcome is Outcome.SENT
    assert sender.sent == [job]


def test_a_crash_during_the_provider_call_propagates_and_leaves_the_claim_held(push_job):
    # Given a provider call that ends the process (a BaseException, as when the runtime dies)
    class Crash(BaseException):
        pass

    sender, status = FakeSender(error=Crash()), FakeStatusStore()

    # When the push_job is delivered
    with pytest.raises(Crash):
        deliver_with(push_job, sender, status, attempt=1)

    # Then nothing is recorded after the claim: the delivery stays "sending" until the claim expires
    assert status.delivery(push_job.notification_id, push_job.delivery_id).status is DeliveryState.SENDING
    assert status.attempts == []


def test_a_redriven_delivery_is_tried_again_and_its_status_says_it_was_redriven(job):
    # Given a delivery dead-lettered after its last attempt
    status = FakeStatusStore()
    deliver_with(job, FakeSender(error=DeliveryFailed("inbox throttled")), status, attempt=MAX_ATTEMPTS)

    # When the operator redrives it and it arrives as a new message, still carrying the mark of its parking
    result = deliver_with(job, FakeSender(), status, attempt=1, parked_at=now())

    # Then it is sent, and the record counts one redrive and both attempts
    assert result.outcome is Outcome.SENT
    record = status.delivery(job.notification_id, job.delivery_id)
    assert (record.status, record.redrives, record.attempts) == (DeliveryState.SENT, 1, 2)
    assert record.redriven_at is not None


def test_a_redriven_delivery_gets_a_fresh_round_of_attempts(job):
    # Given a delivery dead-lettered after its last attempt, then redriven as a new message
    status = FakeStatusStore()
    deliver_with(job, FakeSender(error=DeliveryFailed("inbox throttled")), status, attempt=MAX_ATTEMPTS)
    failing = FakeSender(error=DeliveryFailed("inbox throttled"))

    # When its first four attempts of the new round fail, and then the fifth
    parked = now()
    results = [deliver_with(job, failing, status, attempt=n, parked_at=parked) for n in range(1, 6)]

    # Then it backs off 2, 4, 8, 16 s and only the fifth is dead-lettered again
    assert [(r.outcome, r.retry_in) for r in results[:4]] == [(Outcome.RETRY, d) for d in (2, 4, 8, 16)]
    assert results[4].outcome is Outcome.DEAD_LETTER


def test_a_stray_copy_of_a_dead_lettered_job_is_refused_and_no_redrive_is_counted(push_job):
    # Given a delivery dead-lettered after its last attempt (its message parked in the DLQ)
    status = FakeStatusStore()
    deliver_with(push_job, FakeSender(error=DeliveryFailed("push throttled")), status, attempt=MAX_ATTEMPTS)
    sender = FakeSender()

    # When a second SQS copy of the original job arrives: it was never parked, so it carries no mark
    result = deliver_with(push_job, sender, status, attempt=1)

    # Then it is not sent but parked beside the first, for the operator; the status still says dead-lettered
    assert (result.outcome, result.reason) == (Outcome.DEAD_LETTER, UNPARKED_COPY)
    assert sender.tried == []
    record = status.delivery(push_job.notification_id, push_job.delivery_id)
    assert (record.status, record.redrives, record.attempts) == (DeliveryState.DEAD_LETTERED, 0, 1)


def test_a_stray_first_copy_of_a_dead_lettered_in_app_delivery_reaches_the_inbox_and_reads_sent(job):
    # Given an in-app delivery dead-lettered after its last attempt
    inbox = FakeInboxSender(error=DeliveryFailed("inbox throttled"))
    status = FakeStatusStore(inbox=inbox)
    deliver_with(job, inbox, status, attempt=MAX_ATTEMPTS)
    inbox.error = None

    # When a second SQS copy of the original job arrives, unmarked, on its first receive
    result = deliver_with(job, inbox, status, attempt=1)

    # Then, unlike another channel's, it is not parked: its first try writes the item (a copy could only find
    # the same one), and the status reads the delivery sent from it
    assert result.outcome is Outcome.SENT
    assert len(inbox.items) == 1
    assert status.delivery(job.notification_id, job.delivery_id).status is DeliveryState.SENT


def test_a_parked_copy_from_an_earlier_round_does_not_revive_a_later_dead_letter(job):
    # Given a delivery dead-lettered, redriven, and dead-lettered again
    status = FakeStatusStore()
    failing = FakeSender(error=DeliveryFailed("inbox throttled"))
    deliver_with(job, failing, status, attempt=MAX_ATTEMPTS)
    first_parking = status.dead_lettered_at[(job.notification_id, job.delivery_id)]
    deliver_with(job, failing, status, attempt=MAX_ATTEMPTS, parked_at=first_parking)
    sender = FakeSender()

    # When a copy marked with the first parking (a duplicate of the first redrive) arrives
    result = deliver_with(job, sender, status, attempt=1, parked_at=first_parking)

    # Then it is refused too; only the message parked the second time can revive the delivery
    assert result.outcome is Outcome.ALREADY_DONE and sender.tried == []
    assert deliver_with(job, sender, status, attempt=1, parked_at=now()).outcome is Outcome.SENT


def test_a_message_that_kept_its_old_receive_count_backs_off_from_the_start_of_its_round(job):
    # Given a delivery retried twice by Herald's count, whose message SQS says it received 3 times
    status = FakeStatusStore()
    failing = FakeSender(error=DeliveryFailed("inbox throttled"))
    deliver_with(job, failing, status, attempt=1)

    # When the message returns counting 3 receives (one was a duplicate that never reached an attempt)
    result = deliver_with(job, failing, status, attempt=3)

    # Then it waits as a second attempt does
    assert (result.outcome, result.retry_in) == (Outcome.RETRY, 4)


def test_a_deleted_endpoint_reported_as_invalid_parameter_also_marks_the_device_inactive(job):
    # Given LocalStack's answer for a publish to a deleted endpoint
    push = job.model_copy(update={"channel": Channel.PUSH, "device_id": "pixel", "endpoint_arn": PUSH_ARN})
    devices = FakeDeviceRegistry([make_device(push.user_id, "pixel", Channel.PUSH, endpoint_arn=PUSH_ARN)])
    error = client_error(
        "InvalidParameter", "Invalid parameter: TargetArn Reason: No endpoint found for the target arn"
    )

    # When the job is delivered
    result = deliver_with(push, FakeSender(error=error), FakeStatusStore(), attempt=1, devices=devices)

    # Then it fails for good and the device is inactive
    assert result.outcome is Outcome.FAILED
    device = devices.get(push.user_id, "pixel")
    assert device is not None and not device.active


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ],
)
def test_a_lost_answer_from_a_non_idempotent_provider_is_not_sent_again(job, error):
    # Given an email whose provider call timed out reading the answer (SES may have sent it)
    email = job.model_copy(update={"channel": Channel.EMAIL, "address": "ada@example.com"})
    sender, status = FakeSender(error=error), FakeStatusStore()

    # When it is delivered
    result = deliver_with(email, sender, status, attempt=1)

    # Then it ends failed saying the outcome is unknown, and is not retried
    assert result.outcome is Outcome.FAILED
    assert (result.reason or "").startswith("outcome unknown: the provider's answer was lost")


def test_a_lost_answer_from_the_inbox_is_retried_because_its_write_is_idempotent(job):
    # Given an in_app delivery whose DynamoDB write timed out reading the answer
    sender = FakeSender(error=ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"))

    # When it is delivered
    result = deliver_with(job, sender, FakeStatusStore(), attempt=1)

    # Then it is simply retried
    assert result.outcome is Outcome.RETRY
