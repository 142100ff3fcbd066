"""Redrive's two paths with botocore's Stubber: the native message-move task, the fallback, and the console options."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from pydantic import ValidationError

import dlq_redrive.app
from herald.adapters.redrive import Redrive, move_task_unsupported
from herald.models.redrive import DeadLetterRoute, RedrivePath
from herald.settings import DlqRedriveSettings
from tests.events import load_event
from tests.fakes import FakeContext

PREFIX = "https://sqs.us-east-1.amazonaws.com/123456789012/"
ARN = "arn:aws:sqs:us-east-1:123456789012:"
ROUTE = DeadLetterRoute("high", f"{PREFIX}herald-HighDLQ", f"{PREFIX}herald-HighQueue")
LANES = ("high", "normal", "low")
SETTINGS = DlqRedriveSettings(
    **{f"{p}_queue_url": f"{PREFIX}herald-{p}" for p in LANES},
    **{f"{p}_dlq_url": f"{PREFIX}herald-{p}-dlq" for p in LANES},
    **{f"{p}_intake_queue_url": f"{PREFIX}herald-{p}-intake" for p in LANES},
    **{f"{p}_intake_dlq_url": f"{PREFIX}herald-{p}-intake-dlq" for p in LANES},
)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def sqs() -> Iterator[tuple[Any, Stubber]]:
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sqs) as stubber:
        yield sqs, stubber
        stubber.assert_no_pending_responses()


def expect_dlq(stubber: Stubber, waiting: int, in_flight: int = 0) -> None:
    stubber.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "QueueArn": f"{ARN}herald-HighDLQ",
                "ApproximateNumberOfMessages": str(waiting),
                "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            }
        },
        {
            "QueueUrl": ROUTE.dlq_url,
            "AttributeNames": ["QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        },
    )


def expect_destination(stubber: Stubber) -> None:
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": f"{ARN}herald-HighQueue"}},
        {"QueueUrl": ROUTE.destination_url, "AttributeNames": ["QueueArn"]},
    )


def expect_task(stubber: Stubber, status: str, moved: int, to_move: int = 3) -> None:
    task = {
        "Status": status,
        "SourceArn": f"{ARN}herald-HighDLQ",
        "DestinationArn": f"{ARN}herald-HighQueue",
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": to_move,
    }
    if status == "RUNNING":
        task["TaskHandle"] = "task-1"
    stubber.add_response(
        "list_message_move_tasks", {"Results": [task]}, {"SourceArn": f"{ARN}herald-HighDLQ", "MaxResults": 1}
    )


def expect_sent_back(stubber: Stubber, dlq_url: str, destination_url: str) -> None:
    """The receive-send-delete path's send of `message(1)` to its destination, then its delete from the DLQ."""
    stubber.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "0", "MessageId": "n1", "MD5OfMessageBody": "x"}], "Failed": []},
        {
            "QueueUrl": destination_url,
            "Entries": [
                {
                    "Id": "0",
                    "MessageBody": "body 1",
                    "MessageAttributes": {"herald-reason": {"DataType": "String", "StringValue": "reason 1"}},
                }
            ],
        },
    )
    stubber.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": "0"}], "Failed": []},
        {"QueueUrl": dlq_url, "Entries": [{"Id": "0", "ReceiptHandle": "r1"}]},
    )


def message(n: int) -> dict[str, Any]:
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"r{n}",
        "Body": f"body {n}",
        "MessageAttributes": {"herald-reason": {"DataType": "String", "StringValue": f"reason {n}"}},
    }


def test_the_native_path_moves_to_an_explicit_destination_at_the_rate_and_reads_progress_back(sqs):
    client, stubber = sqs
    time = FakeTime()
    # Given a DLQ with 3 messages, and an endpoint that runs message-move tasks
    expect_dlq(stubber, waiting=3)
    expect_destination(stubber)
    stubber.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {
            "SourceArn": f"{ARN}herald-HighDLQ",
            "DestinationArn": f"{ARN}herald-HighQueue",
            "MaxNumberOfMessagesPerSecond": 20,
        },
    )
    expect_task(stubber, "RUNNING", moved=1)
    expect_task(stubber, "COMPLETED", moved=3)

    # When it is redriven at 20 messages a second
    result = Redrive(client, time.clock, time.sleep, poll_every=0.5).move(ROUTE, deadline=60, rate=20)

    # Then SQS moved them, and the result says how many, by which task, and that it completed
    assert result.path is RedrivePath.MESSAGE_MOVE_TASK
    assert (result.waiting, result.moved, result.task_handle, result.task_status) == (3, 3, "task-1", "COMPLETED")
    assert result.note is None
    assert time.sleeps == [0.5]


def test_the_wait_for_a_move_task_is_bounded_and_says_the_task_still_runs(sqs):
    client, stubber = sqs
    time = FakeTime()
    # Given a task that is still running when the deadline comes
    expect_dlq(stubber, waiting=1000)
    expect_destination(stubber)
    stubber.add_response("start_message_move_task", {"TaskHandle": "task-1"})
    for moved in (10, 20, 30):
        expect_task(stubber, "RUNNING", moved=moved, to_move=1000)

    # When it is redriven with 2 seconds to wait
    result = Redrive(client, time.clock, time.sleep, poll_every=1).move(ROUTE, deadline=2)

    # Then the answer comes at the deadline, with the progress so far and the handle to follow it
    assert (result.moved, result.task_status, result.task_handle) == (30, "RUNNING", "task-1")
    assert result.note is not None and "still running" in result.note
    assert time.now == 2


def test_an_endpoint_without_move_tasks_gets_receive_send_delete_and_the_reason_is_noted(sqs):
    client, stubber = sqs
    # Given an endpoint that answers StartMessageMoveTask with HTTP 500, as moto's server does
    expect_dlq(stubber, waiting=1)
    expect_destination(stubber)
    stubber.add_client_error("start_message_move_task", service_error_code="500", http_status_code=500)
    stubber.add_response(
        "receive_message",
        {"Messages": [message(1)]},
        {
            "QueueUrl": ROUTE.dlq_url,
            "MaxNumberOfMessages": 10,
            "MessageAttributeNames": ["All"],
            "VisibilityTimeout": 60,
            "WaitTimeSeconds": 1,
        },
    )
    expect_sent_back(stubber, ROUTE.dlq_url, ROUTE.destination_url)
    stubber.add_response("receive_message", {"Messages": []})

    # When it is redriven
    result = Redrive(client).move(ROUTE, deadline=float("inf"))

    # Then the message was copied with its attributes, deleted from the DLQ, and the path says why
    assert (result.path, result.moved, result.task_handle) == (RedrivePath.RECEIVE_SEND_DELETE, 1, None)
    assert result.note is not None and "HTTP 500" in result.note


def expect_empty_dlq(stubber: Stubber) -> None:
    expect_dlq(stubber, waiting=0)
    stubber.add_response("receive_message", {"Messages": []})


def test_the_endpoint_is_asked_for_a_move_task_once_with_the_probe_then_never_again(sqs):
    client, stubber = sqs
    # Given an endpoint without move tasks, a probe client (one attempt) and the redrive's own client
    probe = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(probe) as probing:
        probing.add_client_error("start_message_move_task", service_error_code="500", http_status_code=500)
        expect_dlq(stubber, waiting=0)  # first queue: its attributes, the destination's, then the fallback
        expect_destination(stubber)
        stubber.add_response("receive_message", {"Messages": []})
        expect_empty_dlq(stubber)  # second queue, and a cancel: no move-task call at all
        expect_dlq(stubber, waiting=0)
        redrive = Redrive(client, probe=probe)

        # When two queues are redriven and one cancelled in the same container
        first = redrive.move(ROUTE, deadline=float("inf"))
        second = redrive.move(ROUTE, deadline=float("inf"))
        cancelled = redrive.cancel(ROUTE)

        # Then only the probe was asked, once; every answer says which path and why
        probing.assert_no_pending_responses()
    for result in (first, second):
        assert result.path is RedrivePath.RECEIVE_SEND_DELETE
        assert (
            result.note
            == "this endpoint has no message-move task (asked once: StartMessageMoveTask answered HTTP 500, code 500)"
        )
    assert cancelled.path is RedrivePath.CANCEL and cancelled.note == first.note


def test_once_a_move_task_ran_the_redrive_uses_its_own_retrying_client(sqs):
    client, stubber = sqs
    # Given an endpoint with move tasks, and a probe that must be used only until the first answer
    probe = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(probe) as probing:
        probing.add_response("start_message_move_task", {"TaskHandle": "task-1"})
        for handle in ("task-1", "task-2"):
            expect_dlq(stubber, waiting=0)
            expect_destination(stubber)
            if handle == "task-2":
                stubber.add_response("start_message_move_task", {"TaskHandle": handle})
            expect_task(stubber, "COMPLETED", moved=0, to_move=0)
        redrive = Redrive(client, probe=probe)

        # When two queues are redriven
        results = [redrive.move(ROUTE, deadline=60) for _ in range(2)]

        # Then the probe started the first task, the redrive's own client the second
        probing.assert_no_pending_responses()
    assert [r.task_handle for r in results] == ["task-1", "task-2"]


def test_a_move_task_the_endpoint_refuses_for_a_reason_is_an_error_not_a_fallback(sqs):
    client, stubber = sqs
    # Given an endpoint that implements move tasks but refuses this one
    expect_dlq(stubber, waiting=1)
    expect_destination(stubber)
    stubber.add_client_error(
        "start_message_move_task",
        service_error_code="InvalidParameterValue",
        service_message="Source queue must be configured as a Dead Letter Queue.",
        http_status_code=400,
    )

    # When it is redriven, Then the refusal reaches the operator
    with pytest.raises(ClientError, match="Dead Letter Queue"):
        Redrive(client).move(ROUTE, deadline=60)


def test_a_limit_uses_receive_send_delete_and_stops_at_the_count_at_the_rate(sqs):
    client, stubber = sqs
    time = FakeTime()
    # Given 5 messages waiting
    expect_dlq(stubber, waiting=5)
    for batch in ([message(1), message(2)], [message(3), message(4)]):
        stubber.add_response("receive_message", {"Messages": batch})
        stubber.add_response("send_message_batch", {"Successful": [], "Failed": []})
        stubber.add_response("delete_message_batch", {"Successful": [], "Failed": []})

    # When at most 4 are redriven, 2 a second
    result = Redrive(client, time.clock, time.sleep).move(ROUTE, deadline=60, limit=4, rate=2)

    # Then 4 moved, in two receives of 2, one second apart, and no move task was started
    assert (result.path, result.moved) == (RedrivePath.RECEIVE_SEND_DELETE, 4)
    assert result.note is not None and "limit 4" in result.note
    assert time.sleeps == [1.0, 1.0]


def test_a_dry_run_reads_a_sample_of_reasons_and_hands_the_messages_back_at_once(sqs):
    client, stubber = sqs
    # Given 12 messages in the DLQ
    expect_dlq(stubber, waiting=12)
    stubber.add_response("receive_message", {"Messages": [message(n) for n in range(10)]})
    stubber.add_response(
        "change_message_visibility_batch",
        {"Successful": [{"Id": str(n)} for n in range(10)], "Failed": []},
        {
            "QueueUrl": ROUTE.dlq_url,
            "Entries": [{"Id": str(n), "ReceiptHandle": f"r{n}", "VisibilityTimeout": 0} for n in range(10)],
        },
    )

    # When a dry run looks at it
    result = Redrive(client).inspect(ROUTE)

    # Then it reports the depth and ten reasons, and nothing is sent or deleted
    assert (result.path, result.waiting, result.moved) == (RedrivePath.DRY_RUN, 12, 0)
    assert result.reasons == [f"reason {n}" for n in range(10)]


def test_cancel_stops_the_running_task(sqs):
    client, stubber = sqs
    # Given a running move task
    expect_dlq(stubber, waiting=50)
    expect_task(stubber, "RUNNING", moved=7, to_move=57)
    stubber.add_response("cancel_message_move_task", {"ApproximateNumberOfMessagesMoved": 8}, {"TaskHandle": "task-1"})

    # When it is cancelled, Then the task is told to stop and what it moved is reported
    result = Redrive(client).cancel(ROUTE)
    assert (result.path, result.moved, result.task_status) == (RedrivePath.CANCEL, 8, "CANCELLING")


@pytest.mark.parametrize(
    ("error", "unsupported"),
    [
        (NotImplementedError("The start_message_move_task action has not been implemented"), True),
        (ClientError({"Error": {"Code": "500"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Start"), True),
        (ClientError({"Error": {"Code": "InvalidAction"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Start"), True),
        (
            ClientError({"Error": {"Code": "InvalidParameterValue"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "S"),
            False,
        ),
        (ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Start"), False),
        (ValueError("something else"), False),
    ],
)
def test_which_errors_mean_the_endpoint_has_no_move_task(error: BaseException, unsupported: bool):
    assert move_task_unsupported(error) is unsupported


def test_all_means_each_prioritys_delivery_and_intake_queue_each_into_its_own_queue():
    # When "all" is chosen, Then every DLQ drains into its own queue
    routes = SETTINGS.routes("all")
    assert [(r.name, r.dlq_url.rsplit("/", 1)[1], r.destination_url.rsplit("/", 1)[1]) for r in routes] == [
        ("high", "herald-high-dlq", "herald-high"),
        ("normal", "herald-normal-dlq", "herald-normal"),
        ("low", "herald-low-dlq", "herald-low"),
        ("intake-high", "herald-high-intake-dlq", "herald-high-intake"),
        ("intake-normal", "herald-normal-intake-dlq", "herald-normal-intake"),
        ("intake-low", "herald-low-intake-dlq", "herald-low-intake"),
    ]
    # And "intake" means the three fan-out DLQs; "intake-<priority>" one of them
    assert [r.name for r in SETTINGS.routes("intake")] == ["intake-high", "intake-normal", "intake-low"]
    assert [r.destination_url.rsplit("/", 1)[1] for r in SETTINGS.routes("intake-low")] == ["herald-low-intake"]


def test_the_schedule_dlq_drains_into_the_schedule_queue_and_counts_in_all():
    # Given a deployment with a schedule queue (held notifications and deliveries) and its DLQ
    settings = SETTINGS.model_copy(
        update={"schedule_queue_url": f"{PREFIX}herald-schedule", "schedule_dlq_url": f"{PREFIX}herald-schedule-dlq"}
    )

    # When the console asks for "schedule", and for "all"
    request = dlq_redrive.app.RedriveRequest.model_validate({"priority": "schedule"})
    [route] = settings.routes(request.priority)

    # Then the schedule DLQ goes back into the schedule queue, and "all" holds it as the seventh
    assert (route.dlq_url.rsplit("/", 1)[1], route.destination_url.rsplit("/", 1)[1]) == (
        "herald-schedule-dlq",
        "herald-schedule",
    )
    assert [r.name for r in settings.routes("all")][-1] == "schedule" and len(settings.routes("all")) == 7


def test_the_feedback_dlq_drains_into_the_feedback_queue_and_counts_in_all():
    # Given a deployment with the schedule and feedback queues (SES bounces and complaints) and their DLQs
    settings = SETTINGS.model_copy(
        update={
            "schedule_queue_url": f"{PREFIX}herald-schedule",
            "schedule_dlq_url": f"{PREFIX}herald-schedule-dlq",
            "feedback_queue_url": f"{PREFIX}herald-feedback",
            "feedback_dlq_url": f"{PREFIX}herald-feedback-dlq",
        }
    )

    # When the console asks for "feedback", and for "all"
    request = dlq_redrive.app.RedriveRequest.model_validate({"priority": "feedback"})
    [route] = settings.routes(request.priority)

    # Then the feedback DLQ goes back into the feedback queue (its source), and "all" holds it as the eighth
    assert (route.dlq_url.rsplit("/", 1)[1], route.destination_url.rsplit("/", 1)[1]) == (
        "herald-feedback-dlq",
        "herald-feedback",
    )
    assert [r.name for r in settings.routes("all")][-2:] == ["schedule", "feedback"]
    assert len(settings.routes("all")) == 8
    # And a deployment without a feedback queue has no such route, rather than one to nowhere
    assert SETTINGS.routes("feedback") == []


def test_the_console_moves_a_feedback_dead_letter_back_with_its_body_and_attributes(sqs):
    client, stubber = sqs
    # Given a bounce event parked in the feedback DLQ with its reason
    settings = SETTINGS.model_copy(
        update={"feedback_queue_url": f"{PREFIX}herald-feedback", "feedback_dlq_url": f"{PREFIX}herald-feedback-dlq"}
    )
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": f"{ARN}herald-feedback-dlq", "ApproximateNumberOfMessages": "1"}},
        {
            "QueueUrl": f"{PREFIX}herald-feedback-dlq",
            "AttributeNames": ["QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        },
    )
    stubber.add_response(
        "receive_message",
        {"Messages": [message(1)]},
        {
            "QueueUrl": f"{PREFIX}herald-feedback-dlq",
            "MaxNumberOfMessages": 1,
            "MessageAttributeNames": ["All"],
            "VisibilityTimeout": 60,
            "WaitTimeSeconds": 1,
        },
    )
    expect_sent_back(stubber, f"{PREFIX}herald-feedback-dlq", f"{PREFIX}herald-feedback")

    # When the console redrives "feedback", one message
    dependencies = dlq_redrive.app.Dependencies(settings, Redrive(client))
    result = dlq_redrive.app.lambda_handler({"priority": "feedback", "limit": 1}, FakeContext(), dependencies)

    # Then only the feedback DLQ was read, and its message went back into the feedback queue
    assert list(result["queues"]) == ["feedback"]
    assert (result["queues"]["feedback"]["moved"], result["total_moved"]) == (1, 1)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"priority": "high", "dryrun": True}, "dryrun"),
        ({"priority": "urgent"}, "priority"),
        ({"limit": 0}, "limit"),
        ({"rate": 501}, "rate"),
        ({"dry_run": True, "cancel": True}, "cancel"),
    ],
)
def test_a_console_event_with_a_wrong_option_is_refused_before_anything_moves(event: dict[str, Any], field: str):
    # Given a redrive whose SQS would fail the test if called
    class NoSqs:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"SQS called: {name}")

    dependencies = dlq_redrive.app.Dependencies(SETTINGS, Redrive(NoSqs()))

    # When the console sends the event, Then it is refused naming the option
    with pytest.raises(ValidationError, match=field):
        dlq_redrive.app.lambda_handler(event, FakeContext(), dependencies)


def test_the_sample_event_redrives_the_high_queue_at_a_rate():
    request = dlq_redrive.app.RedriveRequest.model_validate(load_event("dlq_redrive"))
    assert (request.priority, request.rate, request.limit, request.dry_run) == ("high", 50, None, False)
