"""Validation errors say in words what a field must be; the regular expression is only in `details`."""

from __future__ import annotations

import json
from typing import Any

import pytest

import api.app
from api.messages import PATTERN_WORDS, UNKNOWN_PATTERN, in_words
from tests.events import load_event


def patterns_in(document: Any) -> set[str]:
    """Every `pattern` anywhere in an OpenAPI document."""
    if isinstance(document, dict):
        found = {document["pattern"]} if isinstance(document.get("pattern"), str) else set()
        return found.union(*(patterns_in(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(patterns_in(value) for value in document))
    return set()


def test_every_pattern_the_api_has_is_said_in_words():
    # Given every pattern of every route's parameters, headers and bodies, as the OpenAPI document shows them
    patterns = patterns_in(json.loads(api.app.openapi_document()))

    # Then each has its words, and none of them is the pattern itself
    assert patterns, "the document should show the API's patterns"
    assert patterns <= set(PATTERN_WORDS), patterns - set(PATTERN_WORDS)
    for pattern, words in PATTERN_WORDS.items():
        assert words.startswith("must be") and pattern not in words


def put_device(user_id: str, device_id: str, body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("api_register_device")
    event.update(
        body=json.dumps(body),
        path=f"/users/{user_id}/devices/{device_id}",
        pathParameters={"user_id": user_id, "device_id": device_id},
    )
    return event


def send(body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    event = load_event("api_send_notification")
    event["body"] = json.dumps(body)
    if key is not None:
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
    return event


def get_status(notification_id: str) -> dict[str, Any]:
    event = load_event("api_send_notification")
    event.update(
        httpMethod="GET",
        path=f"/notifications/{notification_id}",
        resource="/notifications/{notification_id}",
        pathParameters={"notification_id": notification_id},
        body=None,
    )
    return event


def on_route(
    method: str, resource: str, parameters: dict[str, str], query: dict[str, str] | None = None
) -> dict[str, Any]:
    """A request without a body to one of the API's routes (topics, inbox, deliveries)."""
    event = load_event("api_send_notification")
    path = resource
    for name, value in parameters.items():
        path = path.replace(f"{{{name}}}", value)
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=parameters,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=None,
    )
    return event


NOTE = {"recipients": ["ada"], "title": "t", "body": "b"}
CASES = [
    ("sms without +", put_device("ada", "phone", {"channel": "sms", "address": "14155550100"}), "address", "E.164"),
    ("email", put_device("ada", "mail", {"channel": "email", "address": "ada at example.com"}), "address", "email"),
    (
        "push token with a space",
        put_device("ada", "iphone", {"channel": "push", "address": "<apns token>", "platform": "apns"}),
        "address",
        "device token",
    ),
    ("user id too long", put_device("u" * 129, "web", {"channel": "in_app"}), "user_id", "1 to 128"),
    ("device id with a space", put_device("ada", "my phone", {"channel": "in_app"}), "device_id", "1 to 128"),
    ("user id the router refuses", put_device("\u0084", "web", {"channel": "in_app"}), "user_id", "1 to 128"),
    ("notification id", get_status("n" * 129), "notification_id", "1 to 128"),
    ("recipient", send({**NOTE, "recipients": ["ada lovelace"]}), "recipients.0", "1 to 128"),
    ("Idempotency-Key with a space", send(NOTE, key="has space"), "Idempotency-Key", "1 to 255"),
    (
        "topic with a space",
        on_route("PUT", "/topics/{topic}/subscribers/{user_id}", {"topic": "release notes", "user_id": "ada"}),
        "topic",
        "1 to 128",
    ),
    ("topic of a notification", send({"topic": "release notes", "title": "t", "body": "b"}), "topic", "1 to 128"),
]


@pytest.mark.parametrize(("case", "event", "field", "said"), CASES, ids=[c[0] for c in CASES])
def test_a_value_off_its_pattern_is_told_what_it_must_be(api_dependencies, lambda_context, case, event, field, said):
    # When the API gets a value that does not match its field's pattern
    response = api.app.lambda_handler(event, lambda_context, dependencies=api_dependencies)
    body = json.loads(response["body"])

    # Then it is a 422 naming the field, saying in words what it must be, the regex only in details
    assert response["statusCode"] == 422
    [error] = [e for e in body["errors"] if e["field"] == field]
    assert error["message"].startswith("must be") and said in error["message"]
    assert "pattern" not in error["message"] and "^" not in error["message"]
    assert error["details"].startswith("pattern: ^")
    assert error["message"] == PATTERN_WORDS[error["details"].removeprefix("pattern: ")]


def test_the_sms_number_without_a_plus_gets_the_words_the_issue_asked_for(api_dependencies, lambda_context):
    # When an SMS device is registered with a number without +
    event = put_device("ada", "phone", {"channel": "sms", "address": "14155550100"})
    body = json.loads(api.app.lambda_handler(event, lambda_context, dependencies=api_dependencies)["body"])

    # Then the answer says what an E.164 number is
    assert body["errors"] == [
        {
            "field": "address",
            "message": "must be an E.164 phone number: + then 7 to 15 digits, the first not 0, e.g. +14155550100",
            "details": "pattern: ^\\+[1-9][0-9]{6,14}$",
        }
    ]


def test_errors_other_than_a_pattern_keep_pydantics_words_and_no_details():
    assert in_words({"type": "too_long", "msg": "List should have at most 100 items"}) == (
        "List should have at most 100 items",
        None,
    )
    assert in_words({"type": "string_pattern_mismatch", "ctx": {"pattern": "^x$"}}) == (UNKNOWN_PATTERN, "pattern: ^x$")


DEEP = {"a": {"b": {}}}
for _ in range(32):
    DEEP = {"a": DEEP}
LIMITS = [
    ("data nested too deep", send({**NOTE, "data": DEEP}), 422, "data", "must nest at most 32 levels"),
    (
        "NaN in data",
        {**send(NOTE), "body": '{"recipients": ["ada"], "title": "t", "body": "b", "data": {"score": NaN}}'},
        400,
        "data.score",
        "NaN is not a JSON number",
    ),
    (
        "cursor too long",
        on_route("GET", "/topics/{topic}/subscribers", {"topic": "news"}, {"cursor": "c" * 2049}),
        422,
        "cursor",
        "at most 2048 characters",
    ),
]


@pytest.mark.parametrize(("case", "event", "status", "field", "said"), LIMITS, ids=[c[0] for c in LIMITS])
def test_the_limits_without_a_pattern_are_said_in_words_too(
    api_dependencies, lambda_context, case, event, status, field, said
):
    # When the API gets a value past one of its limits that no regex states (depth, JSON numbers, length)
    response = api.app.lambda_handler(event, lambda_context, dependencies=api_dependencies)
    body = json.loads(response["body"])

    # Then it names the field and says what is wrong in words, with no pattern and no details
    assert response["statusCode"] == status, body
    [error] = [e for e in body["errors"] if e["field"] == field]
    assert said in error["message"] and "^" not in error["message"]
    assert "details" not in error
