"""Reliability under moto: claims stop second sends, poison records and last attempts reach their DLQ
with a reason, and a push endpoint SNS disabled takes its device out of later fan-outs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

import deliver.app
import dlq_redrive.app
import fanout.app
from herald.adapters.clients import client
from herald.adapters.dead_letters import DEAD_LETTERED_AT_ATTRIBUTE, REASON_ATTRIBUTE, SOURCE_ATTRIBUTE
from herald.logic.delivery import UNPARKED_COPY
from herald.logic.ports import ChannelSender
from herald.models.domain import Channel, DeliveryJob, jobs_of
from tests.fakes import FakeContext, FakeSender
from tests.integration.conftest import Deployed
from tests.integration.test_pipeline_under_moto import (
    ACCOUNT,
    REGION,
    register,
    run_fanout,
    send,
    sqs_event,
    status_of,
)


class Crash(BaseException):
    """The process dies: what a BaseException models for the handler."""


class CrashAfterSend:
    """Calls the real provider, then dies before the status is written."""

    def __init__(self, sender: ChannelSender):
        self.sender = sender

    def send(self, job: DeliveryJob) -> str:
        self.sender.send(job)
        raise Crash()


def deliver_dependencies(deployed: Deployed, priority: str = "high", **senders: ChannelSender) -> Any:
    dependencies = deliver.app.dependencies_from(deployed.environment(f"Deliver{priority.capitalize()}Function"))
    if senders:
        wrapped = {**dependencies.senders, **{Channel(name): sender for name, sender in senders.items()}}
        dependencies = dataclasses.replace(dependencies, senders=wrapped)
    return dependencies


def deliver_messages(
    deployed: Deployed, messages: list[dict[str, Any]], priority: str = "high", dependencies: Any = None, **context: Any
) -> dict[str, Any]:
    queue = f"{priority.capitalize()}Queue"
    result: dict[str, Any] = deliver.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn(queue)),
        FakeContext(**context),
        dependencies or deliver_dependencies(deployed, priority),
    )
    return result


def emails_to(address: str) -> int:
    return sum(address in m.destinations["ToAddresses"] for m in ses_backends[ACCOUNT][REGION].sent_messages)


def test_a_duplicated_sqs_delivery_produces_one_send(deployed: Deployed) -> None:
    # Given one email delivery waiting in the high queue, and a duplicate copy of its message
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})
    run_fanout(deployed)
    [message] = deployed.receive_all("HighQueue")
    duplicate = {**message, "MessageId": "duplicate-of-" + message["MessageId"]}

    # When the deliver function gets both, one after the other
    deliver_messages(deployed, [message])
    second = deliver_messages(deployed, [duplicate])

    # Then SES got one email and the duplicate succeeded without sending
    assert second == {"batchItemFailures": []}
    assert emails_to("ada@example.com") == 1
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 1)


def test_a_crash_after_send_produces_one_send_and_a_visible_outcome(deployed: Deployed) -> None:
    # Given an email delivery, and an invocation that dies after SES accepted the email
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})
    run_fanout(deployed)
    [message] = deployed.receive_all("HighQueue")
    real = deliver_dependencies(deployed)
    crashing = deliver_dependencies(deployed, email=CrashAfterSend(real.senders[Channel.EMAIL]))
    with pytest.raises(Crash):
        # its claim lasts as long as its invocation could: 0 s left, so it has expired when the message returns
        deliver_messages(deployed, [message], dependencies=crashing, remaining_millis=0)

    # When the message comes back after its visibility timeout, to a new invocation
    returned = {**message, "Attributes": {**message["Attributes"], "ApproximateReceiveCount": "2"}}
    result = deliver_messages(deployed, [returned])

    # Then SES still has one email, the message is done, and the status says the outcome is unknown
    assert result == {"batchItemFailures": []}
    assert emails_to("ada@example.com") == 1
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert delivery["status"] == "failed"
    assert delivery["last_error"].startswith("outcome unknown")


def test_a_fan_out_retried_after_a_partial_publish_never_sends_twice(deployed: Deployed) -> None:
    # Given a notification to a user with two in-app devices, fanned out and delivered once
    register(deployed, "ada", "web", {"channel": "in_app"})
    register(deployed, "ada", "tablet", {"channel": "in_app"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    [intake] = deployed.receive_all("HighIntakeQueue")
    fanout_dependencies = fanout.app.dependencies_from(deployed.environment("FanoutHighFunction"))
    event = sqs_event([intake], deployed.stack.arn("HighIntakeQueue"))
    # a first fan-out that died after publishing
    with pytest.raises(Crash):
        crashing_topic = dataclasses.replace(fanout_dependencies, topic=PublishThenCrash(fanout_dependencies.topic))
        fanout.app.lambda_handler(event, FakeContext(), crashing_topic)
    first_round = deployed.receive_all("HighQueue")
    assert deliver_messages(deployed, first_round) == {"batchItemFailures": []}

    # When the intake message returns and fan-out runs again, and deliver runs on what it published
    assert fanout.app.lambda_handler(event, FakeContext(), fanout_dependencies) == {"batchItemFailures": []}
    second_round = deployed.receive_all("HighQueue")
    assert [len(jobs_of(m["Body"])) for m in second_round] == [2]  # ada's two devices, one message
    deliver_messages(deployed, second_round)

    # Then each device has one delivery, sent once, and the notification is delivered
    status = status_of(deployed, notification_id)
    assert status["status"] == "delivered"
    assert sorted((d["device_id"], d["attempts"]) for d in status["deliveries"]) == [("tablet", 1), ("web", 1)]


class PublishThenCrash:
    def __init__(self, topic: Any):
        self.topic = topic

    def publish(self, jobs: list[DeliveryJob]) -> int:
        self.topic.publish(jobs)
        raise Crash()


@pytest.mark.parametrize("queue", ["HighIntakeQueue", "LowIntakeQueue", "HighQueue", "NormalQueue", "LowQueue"])
def test_a_poison_message_on_each_queue_ends_in_its_dlq_with_its_reason_while_its_batch_mates_succeed(
    deployed: Deployed, queue: str
) -> None:
    # Given a good message and a poison one in the queue
    register(deployed, "ada", "web", {"channel": "in_app"})
    intake = queue.endswith("IntakeQueue")
    priority = queue.removesuffix("Queue").removesuffix("Intake").lower()
    send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": priority})
    if not intake:
        run_fanout(deployed)
    sqs = client("sqs")
    sqs.send_message(QueueUrl=deployed.stack.ref(queue), MessageBody='{"notification_id": 42}')
    messages = deployed.receive_all(queue)
    assert len(messages) == 2

    # When its consumer handles the batch
    if intake:
        dependencies = fanout.app.dependencies_from(deployed.environment(f"Fanout{priority.capitalize()}Function"))
        result = fanout.app.lambda_handler(sqs_event(messages, deployed.stack.arn(queue)), FakeContext(), dependencies)
    else:
        result = deliver_messages(deployed, messages, priority=priority)

    # Then no record fails the batch, the good one went on, and the poison one waits in the DLQ saying why
    assert result == {"batchItemFailures": []}
    dlq = queue.replace("Queue", "DeadLetterQueue")
    [parked] = deployed.receive_all(dlq)
    assert parked["Body"] == '{"notification_id": 42}'
    assert parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"].startswith("invalid message: notification_id")
    source = f"intake-{priority}" if intake else priority
    assert parked["MessageAttributes"][SOURCE_ATTRIBUTE]["StringValue"] == source
    if intake:
        assert len(deployed.receive_all(f"{priority.capitalize()}Queue")) == 1


def test_a_push_endpoint_sns_disabled_marks_the_device_inactive_and_later_fan_outs_skip_it(deployed: Deployed) -> None:
    # Given a user with a push device whose endpoint SNS has disabled (the token was reported invalid)
    register(deployed, "ada", "pixel", {"channel": "push", "address": "fcm-token-1", "platform": "fcm"})
    register(deployed, "ada", "web", {"channel": "in_app"})
    [endpoint_arn] = sns_backends[ACCOUNT][REGION].platform_endpoints
    client("sns").set_endpoint_attributes(EndpointArn=endpoint_arn, Attributes={"Enabled": "false"})
    first = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)

    # When the deliver function tries the push delivery
    deliver_messages(deployed, deployed.receive_all("HighQueue"))

    # Then that delivery failed for good naming SNS's answer, and the next notification skips the device, saying so
    push = next(d for d in status_of(deployed, first)["deliveries"] if d["device_id"] == "pixel")
    assert push["status"] == "failed" and push["last_error"].startswith("EndpointDisabled")
    second = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)
    status = status_of(deployed, second)
    assert [d["device_id"] for d in status["deliveries"]] == ["web"]
    assert status["inactive_devices_skipped"] == ["ada/pixel"]
    assert [json.loads(m["Body"])["device_id"] for m in deployed.receive_all("HighQueue")] == ["web"]


def test_a_long_planned_list_spills_into_extra_items_and_reads_back_whole(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a status store that keeps at most 60 bytes of planned deliveries in the page item, and whose
    # planned-deliveries chunks hold about 3 entries each
    monkeypatch.setattr("herald.adapters.status.INLINE_PLANNED_BYTES", 60)
    monkeypatch.setattr("herald.adapters.status.PLANNED_CHUNK_BYTES", 60)
    for index in range(8):
        register(deployed, "ada", f"device-{index}", {"channel": "in_app"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "low"})

    # When fan-out records the 8 deliveries it published
    run_fanout(deployed)

    # Then GET shows all 8, queued, from the extra items
    status = status_of(deployed, notification_id)
    assert sorted(d["device_id"] for d in status["deliveries"]) == [f"device-{i}" for i in range(8)]
    assert {d["status"] for d in status["deliveries"]} == {"queued"}
    items = client("dynamodb").query(
        TableName=deployed.stack.ref("StatusTable"),
        KeyConditionExpression="notification_id = :n",
        ExpressionAttributeValues={":n": {"S": notification_id}},
    )["Items"]
    assert sum(item["sk"]["S"].startswith("planned#") for item in items) >= 2


def test_a_delivery_item_caught_half_written_reads_as_queued_not_as_an_error(deployed: Deployed) -> None:
    # Given a fanned-out notification, and its delivery item as moto can show it mid-update: keys only
    register(deployed, "ada", "web", {"channel": "in_app"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)
    client("dynamodb").put_item(
        TableName=deployed.stack.ref("StatusTable"),
        Item={"notification_id": {"S": notification_id}, "sk": {"S": "recipient#ada"}},
    )

    # When the status is read, Then it answers, the delivery still queued
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert (delivery["device_id"], delivery["status"]) == ("web", "queued")


def test_a_job_whose_dynamodb_write_fails_validation_goes_to_its_dlq_on_its_first_receive_with_the_reason(
    deployed: Deployed,
) -> None:
    # Given a push delivery job whose status item key DynamoDB refuses: a sort key ("recipient#<user>") over
    # 1,024 bytes (push: its claim is the first write; an in-app first try makes none, its inbox item is the record)
    job = DeliveryJob(
        notification_id="n-long-key",
        user_id="u" * 1100,
        device_id="d" * 10,
        channel=Channel.PUSH,
        endpoint_arn="arn:aws:sns:us-east-1:123456789012:endpoint/GCM/herald/1",
        title="t",
        body="b",
        priority="high",
        accepted_at="2026-11-30T08:00:00+00:00",
    )
    client("sqs").send_message(QueueUrl=deployed.stack.ref("HighQueue"), MessageBody=job.model_dump_json())
    [message] = deployed.receive_all("HighQueue")
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"

    # When the deliver function handles it, the first time it is received
    result = deliver_messages(deployed, [message])

    # Then it is not handed back for four more receives: it waits in the DLQ at once, saying why
    assert result == {"batchItemFailures": []}
    [parked] = deployed.receive_all("HighDeadLetterQueue")
    reason = parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith("failed permanently on receive 1:")
    assert "ValidationException" in reason and "1024" in reason
    assert deployed.receive_all("HighQueue") == []


def test_a_stray_copy_of_a_dead_lettered_job_is_refused_and_only_the_operators_redrive_revives_it(
    deployed: Deployed,
) -> None:
    # Given an email delivery whose last allowed attempt failed (SES throttled), so Herald parked it in the DLQ
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})
    run_fanout(deployed)
    [message] = deployed.receive_all("HighQueue")
    throttled = FakeSender(error=ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "SendEmail"))
    last = {**message, "Attributes": {**message["Attributes"], "ApproximateReceiveCount": "5"}}
    deliver_messages(deployed, [last], dependencies=deliver_dependencies(deployed, email=throttled))
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert delivery["status"] == "dead_lettered"

    # When a second SQS copy of the original job arrives (SQS delivers at least once)
    stray = {**message, "MessageId": "stray-copy-of-" + message["MessageId"]}
    result = deliver_messages(deployed, [stray])

    # Then it is not sent: the delivery is still dead-lettered, no redrive counted, and the copy waits in the
    # DLQ beside the first, saying why (had the first's parking failed, it would be the one left)
    assert result == {"batchItemFailures": []}
    assert emails_to("ada@example.com") == 0
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert (delivery["status"], delivery["redrives"]) == ("dead_lettered", 0)
    parked = deployed.receive_all("HighDeadLetterQueue")
    reasons = sorted(m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in parked)
    assert reasons == [UNPARKED_COPY, "last attempt failed: Throttling: slow"]
    sqs = client("sqs")
    for m in parked:  # visible again for the redrive
        sqs.change_message_visibility(
            QueueUrl=deployed.stack.ref("HighDeadLetterQueue"), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )

    # When the operator redrives the high DLQ, and the deliver function gets the redriven messages
    redriven = dlq_redrive.app.lambda_handler(
        {"priority": "high"},
        FakeContext(),
        dlq_redrive.app.dependencies_from(deployed.environment("DlqRedriveFunction")),
    )
    assert redriven["total_moved"] == 2
    back = deployed.receive_all("HighQueue")
    assert all(DEAD_LETTERED_AT_ATTRIBUTE in m["MessageAttributes"] for m in back)
    for m in back:  # one after the other: moto's conditional writes are not atomic under concurrent requests
        assert deliver_messages(deployed, [m]) == {"batchItemFailures": []}

    # Then the first of them revives it: sent once, one redrive counted
    assert emails_to("ada@example.com") == 1
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert (delivery["status"], delivery["redrives"]) == ("sent", 1)
