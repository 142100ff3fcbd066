"""Each handler under moto, wired as the template wires it: api -> intake -> fanout -> topic -> queues
-> deliver -> providers, and dlq_redrive."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

import api.app
import deliver.app
import dlq_redrive.app
import fanout.app
from herald.adapters.clients import client
from herald.adapters.dead_letters import DEAD_LETTERED_AT_ATTRIBUTE
from herald.models.domain import Channel, now
from tests.events import load_event
from tests.fakes import FakeContext, FakeSender
from tests.integration.conftest import Deployed

ACCOUNT, REGION = "123456789012", "us-east-1"


def call_api(
    deployed: Deployed,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    **path_parameters: str,
) -> dict[str, Any]:
    event = load_event("api_send_notification")
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    resource = path
    for name, value in path_parameters.items():
        resource = resource.replace(value, "{" + name + "}")
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=path_parameters or None,
        body=json.dumps(body) if body is not None else None,
    )
    dependencies = api.app.dependencies_from(deployed.environment("ApiFunction"))
    response: dict[str, Any] = api.app.lambda_handler(event, FakeContext(), dependencies)
    return response


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """What Lambda's event source mapping hands the function for these received messages."""
    template = load_event("deliver")["Records"][0]
    records = []
    for message in messages:
        record = json.loads(json.dumps(template))
        record.update(
            messageId=message["MessageId"],
            receiptHandle=message["ReceiptHandle"],
            body=message["Body"],
            eventSourceARN=queue_arn,
        )
        record["attributes"]["ApproximateReceiveCount"] = message["Attributes"]["ApproximateReceiveCount"]
        if "MessageAttributes" in message:  # as Lambda shows them: camelCase
            record["messageAttributes"] = {
                name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                for name, value in message["MessageAttributes"].items()
            }
        records.append(record)
    return {"Records": records}


def register(deployed: Deployed, user: str, device: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"/users/{user}/devices/{device}"
    return call_api(deployed, "PUT", path, body, user_id=user, device_id=device)


def send(deployed: Deployed, body: dict[str, Any]) -> str:
    response = call_api(deployed, "POST", "/notifications", body)
    assert response["statusCode"] == 202, response
    notification_id: str = json.loads(response["body"])["notification_id"]
    return notification_id


def run_fanout(deployed: Deployed) -> dict[str, Any]:
    """Each priority's fan-out function on what waits in its intake queue (pages it queues included)."""
    failures: list[dict[str, str]] = []
    while True:
        ran = False
        for lane in ("High", "Normal", "Low"):
            messages = deployed.receive_all(f"{lane}IntakeQueue")
            if not messages:
                continue
            ran = True
            dependencies = fanout.app.dependencies_from(deployed.environment(f"Fanout{lane}Function"))
            result = fanout.app.lambda_handler(
                sqs_event(messages, deployed.stack.arn(f"{lane}IntakeQueue")), FakeContext(), dependencies
            )
            failures += result["batchItemFailures"]
        if not ran or failures:
            return {"batchItemFailures": failures}


def run_deliver(deployed: Deployed, priority: str) -> dict[str, Any]:
    queue = f"{priority.capitalize()}Queue"
    messages = deployed.receive_all(queue)
    function = f"Deliver{priority.capitalize()}Function"
    dependencies = deliver.app.dependencies_from(deployed.environment(function))
    result: dict[str, Any] = deliver.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn(queue)), FakeContext(), dependencies
    )
    return result


def status_of(deployed: Deployed, notification_id: str) -> dict[str, Any]:
    path = f"/notifications/{notification_id}"
    response = call_api(deployed, "GET", path, notification_id=notification_id)
    assert response["statusCode"] == 200, response
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_api_records_accepts_and_queues_a_notification(deployed: Deployed) -> None:
    # Given a user with an in-app device
    assert register(deployed, "ada", "web", {"channel": "in_app"})["statusCode"] == 200

    # When a backend sends a notification through the API handler
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Hello", "body": "World"})

    # Then it is recorded as accepted and waits in the intake queue
    assert status_of(deployed, notification_id)["status"] == "accepted"
    [queued] = deployed.bodies("NormalIntakeQueue")  # its priority's lane
    assert queued["notification_id"] == notification_id
    assert queued["priority"] == "normal"
    assert deployed.bodies("HighIntakeQueue") == deployed.bodies("LowIntakeQueue") == []


def test_every_channel_reaches_its_provider(deployed: Deployed) -> None:
    # Given one user with an email, an sms, a push and an in-app device
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    register(deployed, "ada", "phone", {"channel": "sms", "address": "+14155550100"})
    register(deployed, "ada", "ios", {"channel": "push", "address": "apns-token-1", "platform": "apns"})
    register(deployed, "ada", "web", {"channel": "in_app"})
    notification_id = send(
        deployed, {"recipients": ["ada", "bob"], "title": "Code", "body": "1234", "priority": "high"}
    )

    # When fan-out and the high-priority deliver function run on what their queues hold
    assert run_fanout(deployed) == {"batchItemFailures": []}
    assert run_deliver(deployed, "high") == {"batchItemFailures": []}

    # Then every delivery is sent, and each provider holds what it was given
    status = status_of(deployed, notification_id)
    assert status["status"] == "delivered"
    assert status["recipients_without_devices"] == ["bob"]
    assert sorted((d["device_id"], d["status"], d["attempts"]) for d in status["deliveries"]) == [
        ("ios", "sent", 1),
        ("mail", "sent", 1),
        ("phone", "sent", 1),
        ("web", "sent", 1),
    ]
    [email] = ses_backends[ACCOUNT][REGION].sent_messages
    assert email.destinations["ToAddresses"] == ["ada@example.com"] and email.subject == "Code"
    sns = sns_backends[ACCOUNT][REGION]
    assert [(number, text) for number, text in sns.sms_messages.values()] == [("+14155550100", "Code: 1234")]
    [endpoint] = sns.platform_endpoints.values()
    [push] = endpoint.messages.values()
    assert json.loads(json.loads(push)["APNS"])["aps"]["alert"] == {"title": "Code", "body": "1234"}
    inbox = call_api(deployed, "GET", "/users/ada/inbox", user_id="ada")
    assert [item["notification_id"] for item in json.loads(inbox["body"])["items"]] == [notification_id]


def test_an_in_app_delivery_is_recorded_by_its_inbox_item_alone(deployed: Deployed) -> None:
    # Given a user with an in-app device, and a notification to it fanned out, its job delivered twice
    # (an SQS duplicate: the same job, each on its first receive)
    register(deployed, "ada", "web", {"channel": "in_app"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Hi", "body": "there", "priority": "high"})
    run_fanout(deployed)
    [message] = deployed.receive_all("HighQueue")
    dependencies = deliver.app.dependencies_from(deployed.environment("DeliverHighFunction"))
    event = sqs_event([message, {**message, "MessageId": "copy-of-" + message["MessageId"]}], "arn")

    # When the deliver function handles the batch
    assert deliver.app.lambda_handler(event, FakeContext(), dependencies) == {"batchItemFailures": []}

    # Then the status table holds no item of the delivery: no claim, no outcome (and no page record: a
    # one-recipient notification's is ada's history item)
    dynamodb = client("dynamodb")
    table = deployed.environment("DeliverHighFunction")["STATUS_TABLE"]
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="notification_id = :n",
        ExpressionAttributeValues={":n": {"S": notification_id}},
    )["Items"]
    assert sorted(item["sk"]["S"] for item in items) == ["notification"]
    # And the inbox holds one item, stamped with when it was written
    inbox_table = deployed.environment("DeliverHighFunction")["INBOX_TABLE"]
    [stored] = dynamodb.query(
        TableName=inbox_table,
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": "ada"}},
    )["Items"]
    assert int(stored["delivered_at"]["N"]) > 0
    # And the API reads the delivery sent from it, on the notification and on its deliveries route
    status = status_of(deployed, notification_id)
    assert status["status"] == "delivered"
    assert status["counts"] == {"sent": 1}
    [delivery] = status["deliveries"]
    assert (delivery["device_id"], delivery["status"], delivery["attempts"]) == ("web", "sent", 1)
    assert delivery["sent_at"] is not None
    path = f"/notifications/{notification_id}/deliveries"
    listed = json.loads(call_api(deployed, "GET", path, notification_id=notification_id)["body"])
    assert [(d["device_id"], d["status"]) for d in listed["deliveries"]] == [("web", "sent")]


def test_an_in_app_delivery_reads_queued_until_its_inbox_item_is_written(deployed: Deployed) -> None:
    # Given an in-app notification fanned out, its job still in the queue
    register(deployed, "ada", "web", {"channel": "in_app"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Hi", "body": "there"})
    run_fanout(deployed)

    # When its status is read, Then the delivery is queued: no inbox item says otherwise
    status = status_of(deployed, notification_id)
    assert status["status"] == "in_progress"
    assert [(d["device_id"], d["status"]) for d in status["deliveries"]] == [("web", "queued")]


def test_each_priority_reaches_only_its_own_queue(deployed: Deployed) -> None:
    # Given a user with one device and one notification per priority
    register(deployed, "ada", "web", {"channel": "in_app"})
    sent = {
        p: send(deployed, {"recipients": ["ada"], "title": p, "body": p, "priority": p})
        for p in ("high", "normal", "low")
    }

    # When fan-out publishes them to the topic
    run_fanout(deployed)

    # Then the topic's filtered subscriptions put each in its own priority's queue only
    for priority in ("high", "normal", "low"):
        queued = deployed.bodies(f"{priority.capitalize()}Queue")
        assert [job["notification_id"] for job in queued] == [sent[priority]], priority


def test_fanout_honours_the_channel_filter(deployed: Deployed) -> None:
    # Given a user with an email and an in-app device
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    register(deployed, "ada", "web", {"channel": "in_app"})

    # When a notification asks for in-app only
    notification_id = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "channels": ["in_app"]})
    run_fanout(deployed)

    # Then only the in-app device gets a delivery
    assert [job["device_id"] for job in deployed.bodies("NormalQueue")] == ["web"]
    assert [d["device_id"] for d in status_of(deployed, notification_id)["deliveries"]] == ["web"]


def test_a_failed_delivery_is_reported_and_backed_off(deployed: Deployed) -> None:
    # Given an email device whose provider times out
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)
    environment = dict(deployed.environment("DeliverHighFunction"))
    messages = deployed.receive_all("HighQueue")
    dependencies = deliver.app.dependencies_from(environment)
    senders = {**dependencies.senders, Channel.EMAIL: FakeSender(error=TimeoutError("SES timed out"))}
    # and a jitter that draws the longest backoff, 2 s for a first failed attempt
    policy = dataclasses.replace(dependencies.policy, draw=lambda: 0.999)
    dependencies = dataclasses.replace(dependencies, senders=senders, policy=policy)

    # When the deliver function runs
    result = deliver.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn("HighQueue")), FakeContext(), dependencies
    )

    # Then the record is a batch item failure, its status says retrying, and it is invisible for the backoff
    assert result == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    [delivery] = status_of(deployed, notification_id)["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("retrying", 1)
    assert "SES timed out" in delivery["last_error"]
    assert deployed.receive_all("HighQueue") == []  # hidden by the 2 s backoff


def test_dlq_redrive_moves_dead_letters_back_to_their_queue(deployed: Deployed) -> None:
    # Given two messages in the high DLQ and one in the low DLQ
    sqs = client("sqs")
    for queue, body in (("HighDeadLetterQueue", "a"), ("HighDeadLetterQueue", "b"), ("LowDeadLetterQueue", "c")):
        sqs.send_message(
            QueueUrl=deployed.stack.ref(queue),
            MessageBody=body,
            MessageAttributes={"priority": {"DataType": "String", "StringValue": "x"}},
        )
    dependencies = dlq_redrive.app.dependencies_from(deployed.environment("DlqRedriveFunction"))

    # When the operator redrives the high priority with the sample console event
    result = dlq_redrive.app.lambda_handler(load_event("dlq_redrive"), FakeContext(), dependencies)

    # Then both high messages are back in the high queue, attributes kept, and low is untouched
    assert (result["queues"]["high"]["moved"], result["total_moved"]) == (2, 2)
    back = deployed.receive_all("HighQueue")
    assert sorted(m["Body"] for m in back) == ["a", "b"]
    assert all(m["MessageAttributes"]["priority"]["StringValue"] == "x" for m in back)
    assert deployed.receive_all("HighDeadLetterQueue") == []
    assert [m["Body"] for m in deployed.receive_all("LowDeadLetterQueue")] == ["c"]


def test_queue_depths_count_visible_in_flight_and_dead_lettered(deployed: Deployed) -> None:
    # Given one visible and one in-flight message on high, a dead letter on low, two on the low intake DLQ:
    # one Herald parked an hour ago (with its attribute), one the redrive policy moved (no attribute); and a
    # bounce event the feedback function parked two hours ago
    sqs = client("sqs")
    for body in ("1", "2"):
        sqs.send_message(QueueUrl=deployed.stack.ref("HighQueue"), MessageBody=body)
    sqs.receive_message(QueueUrl=deployed.stack.ref("HighQueue"), MaxNumberOfMessages=1, VisibilityTimeout=60)
    sqs.send_message(QueueUrl=deployed.stack.ref("LowDeadLetterQueue"), MessageBody="3")
    an_hour_ago = (now() - timedelta(hours=1)).isoformat()
    sqs.send_message(
        QueueUrl=deployed.stack.ref("LowIntakeDeadLetterQueue"),
        MessageBody="parked by Herald",
        MessageAttributes={DEAD_LETTERED_AT_ATTRIBUTE: {"DataType": "String", "StringValue": an_hour_ago}},
    )
    sqs.send_message(QueueUrl=deployed.stack.ref("LowIntakeDeadLetterQueue"), MessageBody="moved by the policy")
    sqs.send_message(QueueUrl=deployed.stack.ref("HighIntakeQueue"), MessageBody="a notification")
    two_hours_ago = (now() - timedelta(hours=2)).isoformat()
    sqs.send_message(
        QueueUrl=deployed.stack.ref("FeedbackDeadLetterQueue"),
        MessageBody="a bounce",
        MessageAttributes={DEAD_LETTERED_AT_ATTRIBUTE: {"DataType": "String", "StringValue": two_hours_ago}},
    )

    # When GET /queues is called, twice
    first = json.loads(call_api(deployed, "GET", "/queues")["body"])
    second = json.loads(call_api(deployed, "GET", "/queues")["body"])

    # Then the figures say so; the oldest dead letter's age comes from Herald's attribute, else SentTimestamp
    intake_age = first["intake"]["low"].pop("oldest_dead_letter_age_seconds")
    assert 3600 <= intake_age <= 3630
    low_age = first["low"].pop("oldest_dead_letter_age_seconds")
    feedback_age = first["feedback"].pop("oldest_dead_letter_age_seconds")
    assert 7200 <= feedback_age <= 7230
    assert 0 <= low_age <= 30  # sent moments ago: a second or two on a loaded machine
    nothing = {
        "visible": 0,
        "in_flight": 0,
        "delayed": None,
        "dead_lettered": 0,
        "oldest_dead_letter_age_seconds": None,
    }
    assert first == {
        "intake": {
            "high": nothing | {"visible": 1},
            "normal": nothing,
            "low": {"visible": 0, "in_flight": 0, "delayed": None, "dead_lettered": 2},
        },
        "high": nothing | {"visible": 1, "in_flight": 1},
        "normal": nothing,
        "low": {"visible": 0, "in_flight": 0, "delayed": None, "dead_lettered": 1},
        # the schedule queue also counts what waits out its delay (nothing held here)
        "schedule": nothing | {"delayed": 0},
        # the feedback queue (SES bounces and complaints) and its DLQ
        "feedback": {"visible": 0, "in_flight": 0, "delayed": None, "dead_lettered": 1},
    }
    # ...and peeking left the dead letters where they were, visible
    assert second["intake"]["low"]["oldest_dead_letter_age_seconds"] >= 3600
    assert sorted(m["Body"] for m in deployed.receive_all("LowIntakeDeadLetterQueue")) == [
        "moved by the policy",
        "parked by Herald",
    ]


def test_a_push_token_registered_again_by_another_user_takes_over_its_endpoint(deployed: Deployed) -> None:
    # Given ada's phone registered for push (found by the API fuzzer: the second registration was a 502)
    push = {"channel": "push", "address": "apns-token-shared", "platform": "apns"}
    first = register(deployed, "ada", "iphone", push)

    # When grace signs in on the same phone, and the app registers its token for her
    second = register(deployed, "grace", "iphone", push)

    # Then both answers are 200 and grace's device uses the one endpoint SNS has for that token
    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    [endpoint] = [e for e in sns_backends[ACCOUNT][REGION].platform_endpoints.values() if e.token == push["address"]]
    devices = client("dynamodb").scan(TableName=deployed.environment("ApiFunction")["DEVICES_TABLE"])["Items"]
    graces = [d for d in devices if d["user_id"]["S"] == "grace"]
    assert [d["endpoint_arn"]["S"] for d in graces] == [endpoint.arn]
