"""The API's topic routes, broadcasts, and a notification's deliveries page by page, with fakes behind them."""

from __future__ import annotations

import json
from typing import Any

import api.app
from herald.logic.fanout import PageLimits, fan_out
from herald.models.domain import Channel, Priority
from tests.events import load_event
from tests.fakes import FakeDeviceRegistry, FakeIntakeQueue, FakePublisher, make_device


def request(
    dependencies: api.app.Dependencies,
    context: Any,
    method: str,
    resource: str,
    parameters: dict[str, str] | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """The API's answer to one request, shaped as API Gateway's proxy event for `resource`."""
    path = resource
    for name, value in (parameters or {}).items():
        path = path.replace("{" + name + "}", value)
    event = load_event("api_send_notification")
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=parameters,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=json.dumps(body) if body is not None else None,
    )
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"]) if response["body"] else None


SUBSCRIBER = "/topics/{topic}/subscribers/{user_id}"


def test_subscribing_is_idempotent_and_unsubscribing_an_unknown_subscriber_is_404(api_dependencies, lambda_context):
    # When ada subscribes to "news" twice, then unsubscribes twice
    at = {"topic": "news", "user_id": "ada"}
    first = request(api_dependencies, lambda_context, "PUT", SUBSCRIBER, at)
    again = request(api_dependencies, lambda_context, "PUT", SUBSCRIBER, at)
    gone = request(api_dependencies, lambda_context, "DELETE", SUBSCRIBER, at)
    unknown = request(api_dependencies, lambda_context, "DELETE", SUBSCRIBER, at)

    # Then both subscriptions answer the same first one, the first unsubscription 204, the second 404
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert (first[1]["topic"], first[1]["user_id"]) == ("news", "ada")
    assert (gone[0], unknown[0]) == (204, 404)
    assert api_dependencies.subscribers.topics["news"] == {}


def test_a_topics_subscribers_are_listed_a_page_at_a_time(api_dependencies, lambda_context):
    # Given five subscribers of "news" and one of "sports"
    for user in ("a", "b", "c", "d", "e"):
        request(api_dependencies, lambda_context, "PUT", SUBSCRIBER, {"topic": "news", "user_id": user})
    request(api_dependencies, lambda_context, "PUT", SUBSCRIBER, {"topic": "sports", "user_id": "z"})

    # When they are listed two at a time, following each page's cursor
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = request(
            api_dependencies, lambda_context, "GET", "/topics/{topic}/subscribers", {"topic": "news"}, query=query
        )
        assert status == 200
        seen += [s["user_id"] for s in page["subscribers"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Then every subscriber of "news" came once, in three pages
    assert sorted(seen) == ["a", "b", "c", "d", "e"] and pages == 3


def test_a_notification_to_a_topic_is_accepted_and_queued_on_its_prioritys_lane(api_dependencies, lambda_context):
    # When a backend sends a low-priority notification to a topic
    body = {"topic": "news", "title": "Weekly digest", "body": "...", "priority": "low"}
    status, answer = request(api_dependencies, lambda_context, "POST", "/notifications", body=body)

    # Then it is accepted and queued for fan-out with its topic and no recipients
    assert status == 202
    [queued] = api_dependencies.intake.sent
    assert (queued.notification_id, queued.topic, queued.recipients) == (answer["notification_id"], "news", None)
    assert queued.priority is Priority.LOW


def test_a_notification_with_both_recipients_and_a_topic_or_neither_is_422_naming_both(
    api_dependencies, lambda_context
):
    for body in (
        {"recipients": ["ada"], "topic": "news", "title": "t", "body": "b"},
        {"title": "t", "body": "b"},
    ):
        # When it is sent
        status, answer = request(api_dependencies, lambda_context, "POST", "/notifications", body=body)

        # Then it is refused, naming both fields, and nothing is queued
        assert status == 422, answer
        assert sorted(e["field"] for e in answer["errors"]) == ["recipients", "topic"]
        assert api_dependencies.intake.sent == []


def test_the_deliveries_of_a_notification_are_listed_a_page_at_a_time(api_dependencies, lambda_context):
    # Given a notification fanned out to a user with 5 in-app devices
    registry = FakeDeviceRegistry(make_device("ada", f"device-{n}", Channel.IN_APP) for n in range(5))
    _, answer = request(
        api_dependencies,
        lambda_context,
        "POST",
        "/notifications",
        body={"recipients": ["ada"], "title": "t", "body": "b"},
    )
    [queued] = api_dependencies.intake.sent
    store = api_dependencies.status
    fan_out(
        queued,
        registry,
        api_dependencies.subscribers,
        FakePublisher(),
        store,
        FakeIntakeQueue(),
        PageLimits(),
    )
    path = "/notifications/{notification_id}/deliveries"
    at = {"notification_id": answer["notification_id"]}

    # When its deliveries are listed two at a time
    first = request(api_dependencies, lambda_context, "GET", path, at, query={"limit": "2"})
    second = request(
        api_dependencies, lambda_context, "GET", path, at, query={"limit": "2", "cursor": first[1]["next_cursor"]}
    )

    # Then each page holds two, queued, and the next page starts where the first ended
    assert first[0] == second[0] == 200
    assert [d["device_id"] for d in first[1]["deliveries"] + second[1]["deliveries"]] == [
        f"device-{n}" for n in range(4)
    ]
    assert {d["status"] for d in first[1]["deliveries"]} == {"queued"}
    # And an unknown notification is a 404
    missing = request(api_dependencies, lambda_context, "GET", path, {"notification_id": "nobody"})
    assert missing[0] == 404


def test_the_openapi_document_describes_topics_broadcasts_and_the_deliveries_route():
    # Given the document GET /openapi.json serves
    document = json.loads(api.app.openapi_document())

    # Then it has the topic routes and the deliveries route, with their paging parameters...
    assert {"put", "delete"} <= set(document["paths"]["/topics/{topic}/subscribers/{user_id}"])
    for path in ("/topics/{topic}/subscribers", "/notifications/{notification_id}/deliveries"):
        parameters = {p["name"] for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}
        assert parameters == {"limit", "cursor"}, path
    # ...and a notification request takes a topic or recipients
    request = document["components"]["schemas"]["NotificationRequest"]["properties"]
    assert {"topic", "recipients"} <= set(request)
