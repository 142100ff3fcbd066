"""Every 202 can be processed: the API takes exactly the JSON fan-out and deliver parse, and writes nothing
for a body it refuses (issue 10, finding 2)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import api.app
from herald.models.domain import MAX_DATA_DEPTH, Channel, DeliveryJob, Notification
from tests.events import load_event
from tests.fakes import make_device


def post(dependencies: api.app.Dependencies, context: Any, text: str, **headers: str) -> tuple[int, dict[str, Any]]:
    """POST /notifications with this exact body text, as API Gateway hands it over."""
    event = load_event("api_send_notification")
    event["body"] = text
    for name, value in headers.items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"])


def with_data(data_text: str) -> str:
    return '{"recipients": ["ada"], "title": "t", "body": "b", "data": ' + data_text + "}"


def nested_text(levels: int) -> str:
    """`data` as text, `levels` deep: built as text so no encoder's recursion limit gets in the way."""
    return '{"k": ' * (levels - 1) + "{}" + "}" * (levels - 1)


def assert_nothing_written(dependencies: api.app.Dependencies) -> None:
    assert dependencies.status.accepted == {}  # no summary item
    assert dependencies.intake.sent == []  # no intake message
    assert dependencies.idempotency.store.records == {}  # no idempotency record
    assert dependencies.status.journal == []


@pytest.mark.parametrize("levels", [MAX_DATA_DEPTH + 1, 202, 255, 256, 5000, 15000])
@pytest.mark.parametrize("inner", ["objects", "arrays"])
def test_data_nested_past_the_limit_is_refused_422_naming_data_and_nothing_is_written(
    api_dependencies, lambda_context, levels, inner
):
    # Given a notification whose data nests past the limit (in objects, or in arrays), sent with an Idempotency-Key
    arrays = '{"k": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
    text = with_data(nested_text(levels) if inner == "objects" else arrays)

    # When the API handles it
    status_code, answer = post(api_dependencies, lambda_context, text, **{"Idempotency-Key": f"deep-{levels}"})

    # Then it is a 422 naming data, and no summary item, idempotency record or intake message exists
    assert status_code == 422, answer
    assert [error["field"] for error in answer["errors"]] == ["data"]
    assert str(MAX_DATA_DEPTH) in answer["errors"][0]["message"]
    assert_nothing_written(api_dependencies)


def test_a_body_nested_past_the_limit_outside_any_object_is_refused_naming_body(api_dependencies, lambda_context):
    # When the body is an array nested 10,000 deep, Then it is refused naming the body, nothing written
    status_code, answer = post(api_dependencies, lambda_context, "[" * 10_000 + "]" * 10_000)
    assert status_code == 422
    assert [error["field"] for error in answer["errors"]] == ["body"]
    assert_nothing_written(api_dependencies)


def test_data_at_the_depth_limit_is_accepted_and_fan_out_and_deliver_can_parse_what_was_queued(
    api_dependencies, lambda_context
):
    # Given data nested exactly at the limit
    text = with_data(nested_text(MAX_DATA_DEPTH))

    # When the API accepts it
    status_code, answer = post(api_dependencies, lambda_context, text)
    assert status_code == 202, answer

    # Then the intake message parses as fan-out parses it, and so does the delivery job it becomes
    [queued] = api_dependencies.intake.sent
    notification = Notification.model_validate_json(queued.model_dump_json())
    assert notification == queued
    job = DeliveryJob.for_device(notification, make_device("ada", "web", Channel.IN_APP))
    assert DeliveryJob.model_validate_json(job.model_dump_json()) == job


@pytest.mark.parametrize(
    ("text", "field", "constant"),
    [
        (with_data('{"score": NaN}'), "data.score", "NaN"),
        (with_data('{"limits": [1, Infinity]}'), "data.limits.1", "Infinity"),
        (with_data('{"a": {"b": -Infinity}}'), "data.a.b", "-Infinity"),
        ('{"recipients": ["ada"], "title": "t", "body": "b", "priority": NaN}', "priority", "NaN"),
    ],
)
def test_nan_and_infinity_are_not_json_and_get_a_400_naming_the_field(
    api_dependencies, lambda_context, text, field, constant
):
    # When a body carries a number JSON does not have (Python's json module would read it)
    status_code, answer = post(api_dependencies, lambda_context, text, **{"Idempotency-Key": "nan-1"})

    # Then it is a 400 naming where it is, and nothing is written
    assert status_code == 400, answer
    assert answer["errors"] == [{"field": field, "message": f"{constant} is not a JSON number (RFC 8259)"}]
    assert_nothing_written(api_dependencies)


def test_nan_written_as_a_string_is_just_a_string(api_dependencies, lambda_context):
    status_code, _ = post(api_dependencies, lambda_context, with_data('{"score": "NaN"}'))
    assert status_code == 202
    [queued] = api_dependencies.intake.sent
    assert queued.data == {"score": "NaN"}


def test_a_base64_body_is_checked_the_same_way(api_dependencies, lambda_context):
    # Given the body API Gateway base64-encoded, carrying Infinity
    event = load_event("api_send_notification")
    event["body"] = base64.b64encode(with_data('{"x": Infinity}').encode()).decode()
    event["isBase64Encoded"] = True

    # When the API handles it, Then it is refused naming the field
    response = api.app.lambda_handler(event, lambda_context, dependencies=api_dependencies)
    assert response["statusCode"] == 400
    assert [e["field"] for e in json.loads(response["body"])["errors"]] == ["data.x"]
    assert_nothing_written(api_dependencies)


def test_a_device_registration_is_held_to_the_same_json(api_dependencies, lambda_context):
    # When a device registration carries NaN, Then it is a 400 naming it and no device is stored
    event = load_event("api_register_device")
    event["body"] = '{"channel": "in_app", "weight": NaN}'
    response = api.app.lambda_handler(event, lambda_context, dependencies=api_dependencies)
    assert response["statusCode"] == 400
    assert [e["field"] for e in json.loads(response["body"])["errors"]] == ["weight"]
    assert api_dependencies.registry.devices == {}
