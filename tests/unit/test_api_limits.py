"""Every input field has a limit; one past it gets a 4xx naming the field, and one at it is accepted."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest

import api.app
from herald.models.api import DeviceRegistration, NotificationRequest
from herald.models.domain import MAX_BODY, MAX_DATA_BYTES, MAX_DATA_DEPTH, MAX_PUSH_TOKEN, MAX_RECIPIENTS, MAX_TITLE
from tests.events import load_event

SEND = ("POST", "/notifications")
REGISTER = ("PUT", "/users/ada/devices/phone")
NOTE = {"recipients": ["ada"], "title": "t", "body": "b"}


def nested(levels: int) -> dict[str, Any]:
    """A `data` object `levels` deep, itself included: {"k": {"k": ... {}}}."""
    data: dict[str, Any] = {}
    for _ in range(levels - 1):
        data = {"k": data}
    return data


def call(
    dependencies: api.app.Dependencies,
    context: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """The API function's answer to one request, built from the sample event as API Gateway would send it."""
    event = load_event("api_send_notification")
    resource, parameters = path, {}
    for name, route in (("user_id", "/users/"), ("notification_id", "/notifications/")):
        if path.startswith(route):
            value = path[len(route) :].split("/")[0]
            parameters[name] = value
            resource = resource.replace(route + value, route + "{" + name + "}", 1)
    if "/devices/" in path:
        parameters["device_id"] = path.rsplit("/", 1)[1]
        resource = resource.rsplit("/", 1)[0] + "/{device_id}"
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=parameters or None,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=json.dumps(body) if body is not None else None,
    )
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"] or "null")


# (route, body, headers, query) over a limit -> the field the 4xx must name
OVER_THE_LIMIT: list[tuple[tuple[str, str], Any, dict[str, str], dict[str, str], str]] = [
    # PUT /users/{user_id}/devices/{device_id}
    (("PUT", "/users/" + "u" * 129 + "/devices/phone"), {"channel": "in_app"}, {}, {}, "user_id"),
    (("PUT", "/users/ada/devices/my phone"), {"channel": "in_app"}, {}, {}, "device_id"),
    (REGISTER, {"channel": "fax"}, {}, {}, "channel"),
    (
        REGISTER,
        {"channel": "email", "address": "a" * 64 + "@" + ("b" * 63 + ".") * 2 + "b" * 58 + ".com"},
        {},
        {},
        "address",
    ),
    (REGISTER, {"channel": "email", "address": "a" * 65 + "@example.com"}, {}, {}, "address"),
    (REGISTER, {"channel": "email", "address": "a(b@example.com"}, {}, {}, "address"),
    (REGISTER, {"channel": "email", "address": "caf\u00e9@example.com"}, {}, {}, "address"),
    (REGISTER, {"channel": "email", "address": "ada.example.com"}, {}, {}, "address"),
    (REGISTER, {"channel": "sms", "address": "+1415555010012345"}, {}, {}, "address"),
    (REGISTER, {"channel": "push", "address": "t" * (MAX_PUSH_TOKEN + 1), "platform": "apns"}, {}, {}, "address"),
    (REGISTER, {"channel": "push", "address": "two words", "platform": "apns"}, {}, {}, "address"),
    (REGISTER, {"channel": "push", "address": "token", "platform": "blackberry"}, {}, {}, "platform"),
    (REGISTER, {"channel": "in_app", "nickname": "x"}, {}, {}, "nickname"),
    # DELETE and GET of devices
    (("DELETE", "/users/ada/devices/" + "d" * 129), None, {}, {}, "device_id"),
    (("GET", "/users/ada!/devices"), None, {}, {}, "user_id"),
    # POST /notifications
    (SEND, NOTE | {"recipients": [f"u{n}" for n in range(MAX_RECIPIENTS + 1)]}, {}, {}, "recipients"),
    (SEND, NOTE | {"recipients": []}, {}, {}, "recipients"),
    (SEND, NOTE | {"recipients": ["ada", "a/b"]}, {}, {}, "recipients.1"),
    (SEND, NOTE | {"title": "t" * (MAX_TITLE + 1)}, {}, {}, "title"),
    (SEND, NOTE | {"title": ""}, {}, {}, "title"),
    (SEND, NOTE | {"body": "b" * (MAX_BODY + 1)}, {}, {}, "body"),
    (SEND, NOTE | {"body": "b\uffff"}, {}, {}, "body"),
    (SEND, NOTE | {"data": {"k": "v" * (MAX_DATA_BYTES - 7)}}, {}, {}, "data"),
    (SEND, NOTE | {"data": nested(MAX_DATA_DEPTH + 1)}, {}, {}, "data"),
    (SEND, NOTE | {"priority": "urgent"}, {}, {}, "priority"),
    (SEND, NOTE | {"channels": ["email", "sms", "push", "in_app", "email"]}, {}, {}, "channels"),
    (SEND, NOTE | {"channels": ["fax"]}, {}, {}, "channels.0"),
    (SEND, NOTE | {"sender": "me"}, {}, {}, "sender"),
    (SEND, NOTE | {"topic": "news"}, {}, {}, "topic"),  # recipients or a topic, not both
    (SEND, {"title": "t", "body": "b"}, {}, {}, "topic"),  # nor neither
    (SEND, {"title": "t", "body": "b", "topic": "a/b"}, {}, {}, "topic"),
    (SEND, {"title": "t", "body": "b", "topic": "t" * 129}, {}, {}, "topic"),
    (SEND, NOTE, {"Idempotency-Key": "k" * 256}, {}, "Idempotency-Key"),
    # GET /notifications/{notification_id}, GET /users/{user_id}/inbox
    (("GET", "/notifications/" + "n" * 129), None, {}, {}, "notification_id"),
    (("GET", "/users/ada/inbox"), None, {}, {"limit": "101"}, "limit"),
    (("GET", "/users/ada/inbox"), None, {}, {"limit": "0"}, "limit"),
    (("GET", "/users/ada/inbox"), None, {}, {"cursor": "c" * 2049}, "cursor"),
]


@pytest.mark.parametrize(("route", "body", "headers", "query", "field"), OVER_THE_LIMIT)
def test_one_past_a_limit_gets_a_422_naming_the_field(
    api_dependencies,
    lambda_context,
    route,
    body,
    headers,
    query,
    field,
) -> None:
    # When a request goes one past a field's limit
    method, path = route
    status_code, answer = call(api_dependencies, lambda_context, method, path, body, headers, query or None)

    # Then it is a 422 naming that field, and nothing was stored or queued
    assert status_code == 422, answer
    assert field in [error["field"] for error in answer["errors"]], answer
    assert api_dependencies.intake.sent == []
    assert api_dependencies.registry.devices == {}


def test_every_field_of_every_request_model_has_a_limit_tested() -> None:
    # Given the fields the API reads: each registration's and the notification request's
    registrations = get_args(get_args(DeviceRegistration)[0])
    fields = {name for model in registrations for name in model.model_fields} | set(NotificationRequest.model_fields)
    fields |= {"user_id", "device_id", "notification_id", "limit", "cursor", "Idempotency-Key"}

    # Then the table above goes past a limit of each of them
    tested = {case[-1].split(".")[0] for case in OVER_THE_LIMIT}
    assert fields - tested == set()


AT_THE_LIMIT: list[tuple[tuple[str, str], Any, int]] = [
    (("PUT", "/users/" + "u" * 128 + "/devices/" + "d" * 128), {"channel": "in_app"}, 200),
    (REGISTER, {"channel": "email", "address": "a" * 64 + "@" + ("b" * 63 + ".") * 2 + "b" * 57 + ".com"}, 200),
    (REGISTER, {"channel": "sms", "address": "+141555501001234"}, 200),
    (REGISTER, {"channel": "push", "address": "t" * MAX_PUSH_TOKEN, "platform": "apns"}, 200),
    (
        SEND,
        {
            "recipients": [f"u{n}" for n in range(MAX_RECIPIENTS)],
            "title": "t" * MAX_TITLE,
            "body": "b" * MAX_BODY,
            "data": {"k": "v" * (MAX_DATA_BYTES - 8)},  # {"k":"..."} is 8 bytes around the value
            "channels": ["email", "sms", "push", "in_app"],
        },
        202,
    ),
    (SEND, NOTE | {"data": nested(MAX_DATA_DEPTH)}, 202),
    (SEND, {"topic": "t" * 128, "title": "t", "body": "b"}, 202),
]


@pytest.mark.parametrize(("route", "body", "status"), AT_THE_LIMIT)
def test_a_request_at_every_limit_is_accepted(api_dependencies, lambda_context, route, body, status) -> None:
    # When every field of a request sits exactly at its limit
    status_code, answer = call(api_dependencies, lambda_context, *route, body=body)

    # Then it is accepted
    assert status_code == status, answer
