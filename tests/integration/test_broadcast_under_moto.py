"""Topics and paged fan-out under moto: the handlers wired as the template wires them, status read back."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import api.app
import deliver.app
import fanout.app
from herald.adapters.clients import client
from herald.models.domain import Notification, Priority, now
from tests.events import load_event
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed
from tests.integration.test_pipeline_under_moto import call_api, register, send, sqs_event, status_of


def subscribe(deployed: Deployed, topic: str, user: str) -> dict[str, Any]:
    path = f"/topics/{topic}/subscribers/{user}"
    return call_api(deployed, "PUT", path, topic=topic, user_id=user)


def fan_out_lane(deployed: Deployed, lane: str, page_deliveries: int) -> int:
    """The lane's fan-out function, with pages of `page_deliveries`, until its intake queue is empty."""
    environment = deployed.environment(f"Fanout{lane}Function") | {
        "PAGE_DELIVERIES": str(page_deliveries),
        "PAGE_USERS": str(page_deliveries),
    }
    dependencies = fanout.app.dependencies_from(environment)
    invocations = 0
    while messages := deployed.receive_all(f"{lane}IntakeQueue"):
        result = fanout.app.lambda_handler(
            sqs_event(messages, deployed.stack.arn(f"{lane}IntakeQueue")), FakeContext(), dependencies
        )
        assert result == {"batchItemFailures": []}
        invocations += 1
    return invocations


def deliver_lane(deployed: Deployed, lane: str) -> None:
    dependencies = deliver.app.dependencies_from(deployed.environment(f"Deliver{lane}Function"))
    while messages := deployed.receive_all(f"{lane}Queue"):
        for start in range(0, len(messages), 10):  # batches of 10, as a mapping hands them out
            event = sqs_event(messages[start : start + 10], deployed.stack.arn(f"{lane}Queue"))
            context = FakeContext(aws_request_id=str(uuid.uuid4()))  # each invocation its own, as on Lambda
            assert deliver.app.lambda_handler(event, context, dependencies) == {"batchItemFailures": []}


def items_of(deployed: Deployed, notification_id: str) -> list[str]:
    items = client("dynamodb").query(
        TableName=deployed.stack.ref("StatusTable"),
        KeyConditionExpression="notification_id = :n",
        ExpressionAttributeValues={":n": {"S": notification_id}},
    )["Items"]
    return [item["sk"]["S"] for item in items]


def test_a_broadcast_reaches_every_subscribers_devices_and_its_status_is_read_from_pages_and_tallies(
    deployed: Deployed,
) -> None:
    # Given 24 subscribers of "news" with an in-app device each (the first 6 with a second one), and a
    # registered user who did not subscribe
    users = [f"reader-{n:02d}" for n in range(24)]
    for n, user in enumerate(users):
        register(deployed, user, "web", {"channel": "in_app"})
        if n < 6:
            register(deployed, user, "tablet", {"channel": "in_app"})
        assert subscribe(deployed, "news", user)["statusCode"] == 200
    register(deployed, "outsider", "web", {"channel": "in_app"})

    # When a low-priority broadcast to "news" is sent, fanned out with pages of 4 deliveries, and delivered
    notification_id = send(deployed, {"topic": "news", "title": "Digest", "body": "This week", "priority": "low"})
    assert deployed.bodies("HighIntakeQueue") == deployed.bodies("NormalIntakeQueue") == []
    fan_out_lane(deployed, "Low", page_deliveries=4)
    deliver_lane(deployed, "Low")

    # Then every subscriber's devices got one inbox item, and the outsider none
    inbox = client("dynamodb").scan(TableName=deployed.stack.ref("InboxTable"))["Items"]
    delivered = Counter((item["user_id"]["S"], json.loads(item["item"]["S"])["device_id"]) for item in inbox)
    assert set(delivered.values()) == {1} and len(delivered) == 30
    assert {user for user, _ in delivered} == set(users)
    # And the status counts all 30 sent, from the pages' plans and the deliver invocations' tallies
    status = status_of(deployed, notification_id)
    assert (status["status"], status["topic"], status["counts"]) == ("delivered", "news", {"sent": 30})
    assert status["delivery_count"] == 30 and status["fanout_pages"] >= 16
    # (the pages in the notification's partition; its deliveries and tallies spread over its chains' partitions,
    # chain 0's in the notification's own)
    sort_keys = items_of(deployed, notification_id)
    chains = [sort_keys] + [items_of(deployed, f"{notification_id}#{chain:02d}") for chain in range(1, 16)]
    assert "page#root" in sort_keys
    assert sum(key.startswith("recipient#") for keys in chains for key in keys) == 24  # a recipient's devices in one
    assert sum(any(key.startswith("tally#") for key in keys) for keys in chains) > 1
    assert not any(key.startswith("page#") for keys in chains[1:] for key in keys)
    # And the deliveries route lists each delivery once, sent, 7 at a time
    listed, cursor = [], None
    while True:
        path = f"/notifications/{notification_id}/deliveries"
        query = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        response = call_api_with_query(deployed, path, query, notification_id=notification_id)
        listed += response["deliveries"]
        cursor = response["next_cursor"]
        if cursor is None:
            break
    assert sorted((d["user_id"], d["device_id"]) for d in listed) == sorted(delivered)
    assert {d["status"] for d in listed} == {"sent"}
    assert all(d["queued_at"] is not None for d in listed)


def call_api_with_query(deployed: Deployed, path: str, query: dict[str, str], **parameters: str) -> dict[str, Any]:
    event = load_event("api_send_notification")
    resource = path
    for name, value in parameters.items():
        resource = resource.replace(value, "{" + name + "}")
    event.update(
        httpMethod="GET",
        path=path,
        resource=resource,
        pathParameters=parameters,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()},
        body=None,
    )
    dependencies = api.app.dependencies_from(deployed.environment("ApiFunction"))
    response = api.app.lambda_handler(event, FakeContext(), dependencies)
    assert response["statusCode"] == 200, response
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_a_notification_queued_by_an_operator_without_the_api_reads_as_a_status_not_a_502(deployed: Deployed) -> None:
    # Given a user with an in-app device, and a notification an operator put straight on the high intake queue
    # (so it has no accepted record in the status table)
    register(deployed, "ada", "web", {"channel": "in_app"})
    notification = Notification(
        notification_id="operator-1", recipients=["ada"], title="t", body="b", priority=Priority.HIGH, accepted_at=now()
    )
    client("sqs").send_message(
        QueueUrl=deployed.stack.ref("HighIntakeQueue"), MessageBody=notification.model_dump_json()
    )

    # When it is fanned out and delivered
    fan_out_lane(deployed, "High", page_deliveries=1000)
    deliver_lane(deployed, "High")

    # Then GET /notifications/{id} answers 200 with what its fan-out page kept of the request
    status = status_of(deployed, "operator-1")
    assert (status["status"], status["priority"]) == ("delivered", "high")
    assert [(d["user_id"], d["status"]) for d in status["deliveries"]] == [("ada", "sent")]
    assert status["accepted_at"] is not None


def test_a_summary_item_missing_every_field_reads_as_a_status_not_a_5xx(deployed: Deployed) -> None:
    # Given status items no Herald function would write: a bare summary, and a summary whose request is not JSON
    table = deployed.stack.ref("StatusTable")
    dynamodb = client("dynamodb")
    dynamodb.put_item(TableName=table, Item={"notification_id": {"S": "bare"}, "sk": {"S": "notification"}})
    dynamodb.put_item(
        TableName=table,
        Item={"notification_id": {"S": "garbled"}, "sk": {"S": "notification"}, "request": {"S": "{not json"}},
    )
    dynamodb.put_item(
        TableName=table,
        Item={
            "notification_id": {"S": "odd"},
            "sk": {"S": "notification"},
            "request": {"S": json.dumps({"priority": "urgent", "recipients": "ada"})},
        },
    )

    # When their status is read, Then each answers 200, as accepted
    for notification_id in ("bare", "garbled", "odd"):
        assert status_of(deployed, notification_id)["status"] == "accepted"
