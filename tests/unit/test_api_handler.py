"""The API function on the sample events: routing, validation and status codes, with fakes behind it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

import api.app
from herald.logic.sending import fingerprint
from herald.models.api import MAX_REQUEST_BYTES, NotificationRequest
from herald.models.domain import Channel, Platform, Priority
from herald.models.idempotency import KEY_PATTERN, IdempotencyRecord, RecordState
from tests.events import load_event
from tests.fakes import (
    FakePushEndpoints,
)


def invoke(event: dict[str, Any], dependencies: api.app.Dependencies, context: Any) -> tuple[int, dict[str, Any]]:
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"])


def test_send_notification_event_is_accepted_recorded_then_queued(api_dependencies, lambda_context):
    # Given the sample POST /notifications
    event = load_event("api_send_notification")

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then it answers 202 with the id of the notification it recorded and then queued
    assert status_code == 202
    assert body["status"] == "accepted"
    [queued] = api_dependencies.intake.sent
    assert queued.notification_id == body["notification_id"]
    assert queued.recipients == ["user-42", "user-43"]
    assert queued.priority is Priority.HIGH
    assert api_dependencies.status.journal == ["status.record_accepted", "intake.send"]


def test_register_device_event_stores_the_device_at_its_path(api_dependencies, lambda_context):
    # Given the sample PUT /users/user-42/devices/laptop-mail
    event = load_event("api_register_device")

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then the device is stored and shown back
    assert status_code == 200
    assert (body["user_id"], body["device_id"], body["channel"]) == ("user-42", "laptop-mail", "email")
    assert api_dependencies.registry.get("user-42", "laptop-mail").channel is Channel.EMAIL


def test_an_invalid_notification_is_answered_422_naming_the_field(api_dependencies, lambda_context):
    # Given the sample POST with too many recipients
    event = load_event("api_send_notification")
    request = json.loads(event["body"])
    request["recipients"] = [f"user-{n}" for n in range(101)]
    event["body"] = json.dumps(request)

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then nothing is queued and the answer names the field
    assert status_code == 422
    assert [error["field"] for error in body["errors"]] == ["recipients"]
    assert api_dependencies.intake.sent == []


def test_a_push_device_on_an_unconfigured_platform_is_answered_422(api_dependencies, lambda_context):
    # Given a deployment without FCM, and the sample PUT carrying an FCM token
    api_dependencies = dataclasses.replace(api_dependencies, endpoints=FakePushEndpoints(platforms=[Platform.APNS]))
    event = load_event("api_register_device")
    event["body"] = json.dumps({"channel": "push", "address": "fcm-token", "platform": "fcm"})

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then it is refused on the platform field and nothing is stored
    assert status_code == 422
    assert body["errors"] == [{"field": "platform", "message": body["message"]}]
    assert api_dependencies.registry.devices == {}


def with_header(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    event["headers"][name] = value
    event["multiValueHeaders"][name] = [value]
    return event


def send_with_key(
    dependencies: api.app.Dependencies,
    context: Any,
    key: str,
    body: dict[str, Any] | None = None,
    api_key_id: str = "a1b2c3d4e5",
) -> tuple[int, str, dict[str, Any]]:
    event = with_header(load_event("api_send_notification"), "Idempotency-Key", key)
    event["requestContext"]["identity"]["apiKeyId"] = api_key_id
    if body is not None:
        event["body"] = json.dumps(body)
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], response["body"], response


def test_a_repeated_idempotency_key_gets_the_first_answer_and_creates_nothing(api_dependencies, lambda_context):
    # Given a notification sent with an Idempotency-Key
    first = send_with_key(api_dependencies, lambda_context, "order-1042-shipped")

    # When the caller repeats it (a timeout on their side, say)
    again = send_with_key(api_dependencies, lambda_context, "order-1042-shipped")

    # Then the repeat gets the first answer, byte for byte, and only one notification was recorded and queued
    assert first[:2] == again[:2]
    assert first[0] == 202
    assert [n.notification_id for n in api_dependencies.intake.sent] == [json.loads(first[1])["notification_id"]]
    assert list(api_dependencies.status.accepted) == [json.loads(first[1])["notification_id"]]


def test_an_idempotency_key_reused_with_another_body_is_422_naming_the_header(api_dependencies, lambda_context):
    # Given a key used for one notification
    send_with_key(api_dependencies, lambda_context, "order-1042-shipped")

    # When it is sent again with another body
    other = {"recipients": ["user-42"], "title": "Other", "body": "b"}
    status_code, body, _ = send_with_key(api_dependencies, lambda_context, "order-1042-shipped", other)

    # Then it is refused on the header, and nothing more is queued
    assert status_code == 422
    assert [e["field"] for e in json.loads(body)["errors"]] == ["Idempotency-Key"]
    assert len(api_dependencies.intake.sent) == 1


def test_a_repeat_while_the_first_is_being_processed_is_409_with_retry_after(api_dependencies, lambda_context):
    # Given the first request with this key is being processed by another invocation (its claim is in the store)
    request = NotificationRequest.model_validate_json(load_event("api_send_notification")["body"])
    at = int(datetime.now(UTC).timestamp())
    store = api_dependencies.idempotency.store
    store.records["a1b2c3d4e5#order-1042-shipped"] = IdempotencyRecord(
        key="a1b2c3d4e5#order-1042-shipped",
        request_hash=fingerprint(request),
        state=RecordState.IN_PROGRESS,
        resource_id="being-accepted",
        expires_at=at + 86_400,
        locked_until=at + 8,
    )

    # When the repeat arrives
    status_code, body, response = send_with_key(api_dependencies, lambda_context, "order-1042-shipped")

    # Then it is told to retry later, naming the header, and nothing is queued
    assert status_code == 409
    assert [e["field"] for e in json.loads(body)["errors"]] == ["Idempotency-Key"]
    assert 1 <= int(response["multiValueHeaders"]["Retry-After"][0]) <= 8
    assert api_dependencies.intake.sent == []


def test_idempotency_keys_of_two_api_keys_do_not_collide(api_dependencies, lambda_context):
    # When two callers (two API keys) happen to use the same key
    one = send_with_key(api_dependencies, lambda_context, "welcome", api_key_id="key-one")
    two = send_with_key(api_dependencies, lambda_context, "welcome", api_key_id="key-two")

    # Then each gets its own notification
    assert (one[0], two[0]) == (202, 202)
    assert json.loads(one[1])["notification_id"] != json.loads(two[1])["notification_id"]
    assert len(api_dependencies.intake.sent) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_refused_naming_the_header(api_dependencies, lambda_context, key):
    # When a key outside 1-255 printable ASCII without spaces is sent
    status_code, body, _ = send_with_key(api_dependencies, lambda_context, key)

    # Then the request is refused on the header and nothing is queued
    assert status_code == 422
    assert [e["field"] for e in json.loads(body)["errors"]] == ["Idempotency-Key"]
    assert api_dependencies.intake.sent == []


def test_the_longest_idempotency_key_is_accepted(api_dependencies, lambda_context):
    status_code, _, _ = send_with_key(api_dependencies, lambda_context, "k" * 255)
    assert status_code == 202


def test_a_body_over_the_size_limit_is_413_before_it_is_parsed(api_dependencies, lambda_context):
    # Given a body one byte over the limit (not even JSON: it must not be read at all)
    event = load_event("api_send_notification")
    event["body"] = "x" * (MAX_REQUEST_BYTES + 1)

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then it is refused as too large, naming the body
    assert status_code == 413
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert api_dependencies.intake.sent == []


@pytest.mark.parametrize(
    ("content_type", "body", "status", "field"),
    [
        ("text/plain", "recipients=ada", 415, "content-type"),
        ("application/x-www-form-urlencoded", "recipients=ada&title=t&body=b", 415, "content-type"),
        ("multipart/form-data", '{"recipients": ["ada"], "title": "t", "body": "b"}', 415, "content-type"),
        ("application/json", '{"recipients": ["ada"], "title": ', 400, "body"),
        ("application/json", "[]", 422, "body"),
    ],
)
def test_a_body_that_is_not_a_json_object_gets_a_clean_4xx(
    api_dependencies, lambda_context, content_type, body, status, field
):
    # Given a POST whose body is of another type, malformed JSON, or JSON but not an object
    event = with_header(load_event("api_send_notification"), "Content-Type", content_type)
    event["body"] = body

    # When the API handles it
    status_code, answer = invoke(event, api_dependencies, lambda_context)

    # Then it gets that 4xx naming the culprit
    assert (status_code, [e["field"] for e in answer["errors"]]) == (status, [field])


def test_an_unknown_route_is_404_with_the_error_body(api_dependencies, lambda_context):
    # Given a path no route serves (API Gateway answers 403 before this; the function must not 5xx)
    event = load_event("api_send_notification")
    event.update(httpMethod="GET", path="/nowhere", resource="/nowhere", body=None)

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then it is a 404 with the usual error body
    assert status_code == 404
    assert body["message"] == "no route GET /nowhere"


def test_a_path_parameter_the_router_cannot_read_is_422_naming_it(api_dependencies, lambda_context):
    # Given a GET whose user id API Gateway routed but is not an id (U+0084, percent-encoded by the caller)
    event = load_event("api_send_notification")
    event.update(
        httpMethod="GET",
        path="/users/\u0084/devices",
        resource="/users/{user_id}/devices",
        pathParameters={"user_id": "\u0084"},
        body=None,
    )

    # When the API handles it
    status_code, body = invoke(event, api_dependencies, lambda_context)

    # Then it is refused naming the parameter, not answered "no route"
    assert status_code == 422
    assert [e["field"] for e in body["errors"]] == ["user_id"]


def test_the_openapi_document_shows_the_idempotency_header_the_key_and_every_error_body():
    # Given the document GET /openapi.json serves
    document = json.loads(api.app.openapi_document())
    send = document["paths"]["/notifications"]["post"]

    # Then POST /notifications takes the optional header, with its format...
    [header] = [p for p in send["parameters"] if p["in"] == "header"]
    assert (header["name"].lower(), header["required"]) == ("idempotency-key", False)
    assert {"type": "string", "pattern": KEY_PATTERN} in header["schema"]["anyOf"]
    # ...documents its 409 with Retry-After, and every route's 4xx carry the one error body
    assert "Retry-After" in send["responses"]["409"]["headers"]
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith("4")}
            assert {"403", "422", "429"} <= set(errors), (method, path)
            assert all(r["content"]["application/json"]["schema"] == error_body for r in errors.values()), path
    # ...and the API key is the document's security scheme
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    assert document["security"] == [{"apiKey": []}]


def test_the_only_query_parameters_accepted_are_those_the_document_lists():
    # Given the query parameters the document declares per route, and those the API function accepts
    document = json.loads(api.app.openapi_document())
    declared = {
        (method.upper(), path): {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }

    # Then they are the same
    accepted = {route: api.app.QUERY_PARAMETERS.get(route, set()) for route in declared}
    assert accepted == declared
