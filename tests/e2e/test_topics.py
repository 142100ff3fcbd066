"""Topics end to end on the local stack: subscriptions over HTTP, a broadcast to every subscriber's devices,
and the status of a notification no API call accepted."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from herald.adapters.clients import client
from herald.models.domain import Notification, Priority, now
from tests.e2e.conftest import Herald, eventually

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_topic_broadcast_is_delivered_to_every_subscribers_devices(herald: Herald) -> None:
    # Given 12 subscribers of a topic, each with an in-app device and the first three also with an email
    # device, and a user with a device who did not subscribe
    topic, users = unique("news"), [unique("reader") for _ in range(12)]
    for n, user in enumerate(users):
        assert herald.put_device(user, "web", {"channel": "in_app"}).status_code == 200
        if n < 3:
            assert (
                herald.put_device(user, "mail", {"channel": "email", "address": f"{user}@example.com"}).status_code
                == 200
            )
        response = herald.http.put(f"{herald.url}/topics/{topic}/subscribers/{user}", timeout=10)
        assert response.status_code == 200, response.text
    outsider = unique("outsider")
    herald.put_device(outsider, "web", {"channel": "in_app"})
    listed = herald.http.get(f"{herald.url}/topics/{topic}/subscribers", params={"limit": 100}, timeout=10).json()
    assert sorted(s["user_id"] for s in listed["subscribers"]) == sorted(users)

    # When a backend broadcasts a notification to the topic
    code = uuid.uuid4().hex[:6]
    notification_id = herald.send({"topic": topic, "title": "Digest", "body": code, "priority": "normal"})

    # Then it is delivered: 15 deliveries sent, each subscriber's inbox holds it once, each email arrived once
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=60)
    assert (status["topic"], status["counts"], status["delivery_count"]) == (topic, {"sent": 15}, 15)
    for user in users:
        inbox = herald.http.get(f"{herald.url}/users/{user}/inbox", timeout=10).json()["items"]
        assert [item["notification_id"] for item in inbox] == [notification_id], user
    emails = Counter(m.to for m in herald.providers.emails() if code in m.body)
    assert emails == {(f"{user}@example.com",): 1 for user in users[:3]}
    assert herald.http.get(f"{herald.url}/users/{outsider}/inbox", timeout=10).json()["items"] == []
    # And its deliveries are listed page by page, each once
    listed_deliveries, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = herald.http.get(f"{herald.url}/notifications/{notification_id}/deliveries", params=params, timeout=10)
        assert page.status_code == 200, page.text
        listed_deliveries += page.json()["deliveries"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(listed_deliveries) == 15 and {d["status"] for d in listed_deliveries} == {"sent"}


def test_unsubscribed_users_are_left_out_of_later_broadcasts(herald: Herald) -> None:
    # Given two subscribers of a topic, one of whom then unsubscribes
    topic, stays, leaves = unique("alerts"), unique("stays"), unique("leaves")
    for user in (stays, leaves):
        herald.put_device(user, "web", {"channel": "in_app"})
        herald.http.put(f"{herald.url}/topics/{topic}/subscribers/{user}", timeout=10)
    assert herald.http.delete(f"{herald.url}/topics/{topic}/subscribers/{leaves}", timeout=10).status_code == 204
    assert herald.http.delete(f"{herald.url}/topics/{topic}/subscribers/{leaves}", timeout=10).status_code == 404

    # When a broadcast goes to the topic
    notification_id = herald.send({"topic": topic, "title": "t", "body": "b", "priority": "high"})

    # Then only the one still subscribed gets it
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=60)
    assert [d["user_id"] for d in status["deliveries"]] == [stays]


def test_a_notification_an_operator_queued_without_the_api_reads_200_not_502(herald: Herald) -> None:
    # Given a user with an in-app device, and a notification an operator put on the high intake queue by hand
    # (it has no accepted record: the API never saw it)
    user = unique("operator")
    herald.put_device(user, "web", {"channel": "in_app"})
    notification = Notification(
        notification_id=unique("by-hand"),
        recipients=[user],
        title="t",
        body="b",
        priority=Priority.HIGH,
        accepted_at=now(),
    )
    queue = herald.stack.functions["FanoutHighFunction"].environment["QUEUE_URL"]
    client("sqs").send_message(QueueUrl=queue, MessageBody=notification.model_dump_json())

    # When it has been fanned out and delivered, Then GET /notifications/{id} answers 200 with its status
    status = eventually(
        lambda: herald.http.get(f"{herald.url}/notifications/{notification.notification_id}", timeout=10),
        # a 404 until its fan-out writes its first page; never a 5xx
        lambda response: (
            response.status_code >= 500 or (response.status_code == 200 and response.json()["status"] == "delivered")
        ),
        timeout=30,
    )
    assert status.status_code == 200, status.text
    assert (status.json()["status"], status.json()["priority"]) == ("delivered", "high")
