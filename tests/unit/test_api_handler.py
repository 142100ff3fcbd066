"""The API function on the sample events: routing, validation and status codes, with fakes behind it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import api.app
from herald.domain import Channel, Platform, Priority
from herald.settings import ApiSettings
from tests.events import load_event
from tests.fakes import FakeDeviceRegistry, FakeIntakeQueue, FakePushEndpoints, FakeStatusStore

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-"
SETTINGS = ApiSettings(
    devices_table="herald-devices",
    status_table="herald-status",
    inbox_table="herald-inbox",
    intake_queue_url=QUEUE + "IntakeQueue",
    **{f"{p.value}_queue_url": QUEUE + p.value for p in Priority},
    **{f"{p.value}_dlq_url": QUEUE + p.value + "-dlq" for p in Priority},
)


@pytest.fixture
def dependencies() -> api.app.Dependencies:
    journal: list[str] = []
    return api.app.Dependencies(
        settings=SETTINGS,
        registry=FakeDeviceRegistry(),
        endpoints=FakePushEndpoints(),
        status=FakeStatusStore(journal=journal),
        inbox=None,
        intake=FakeIntakeQueue(journal=journal),
        sqs=None,
    )


def invoke(event: dict[str, Any], dependencies: api.app.Dependencies, context: Any) -> tuple[int, dict[str, Any]]:
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"])


def test_send_notification_event_is_accepted_recorded_then_queued(dependencies, lambda_context):
    # Given the sample POST /notifications
    event = load_event("api_send_notification")

    # When the API handles it
    status_code, body = invoke(event, dependencies, lambda_context)

    # Then it answers 202 with the id of the notification it recorded and then queued
    assert status_code == 202
    assert body["status"] == "accepted"
    [queued] = dependencies.intake.sent
    assert queued.notification_id == body["notification_id"]
    assert queued.recipients == ["user-42", "user-43"]
    assert queued.priority is Priority.HIGH
    assert dependencies.status.journal == ["status.record_accepted", "intake.send"]


def test_register_device_event_stores_the_device_at_its_path(dependencies, lambda_context):
    # Given the sample PUT /users/user-42/devices/laptop-mail
    event = load_event("api_register_device")

    # When the API handles it
    status_code, body = invoke(event, dependencies, lambda_context)

    # Then the device is stored and shown back
    assert status_code == 200
    assert (body["user_id"], body["device_id"], body["channel"]) == ("user-42", "laptop-mail", "email")
    assert dependencies.registry.get("user-42", "laptop-mail").channel is Channel.EMAIL


def test_an_invalid_notification_is_answered_422_naming_the_field(dependencies, lambda_context):
    # Given the sample POST with too many recipients
    event = load_event("api_send_notification")
    request = json.loads(event["body"])
    request["recipients"] = [f"user-{n}" for n in range(101)]
    event["body"] = json.dumps(request)

    # When the API handles it
    status_code, body = invoke(event, dependencies, lambda_context)

    # Then nothing is queued and the answer names the field
    assert status_code == 422
    assert [error["field"] for error in body["errors"]] == ["recipients"]
    assert dependencies.intake.sent == []


def test_a_push_device_on_an_unconfigured_platform_is_answered_422(dependencies, lambda_context):
    # Given a deployment without FCM, and the sample PUT carrying an FCM token
    dependencies = dataclasses.replace(dependencies, endpoints=FakePushEndpoints(platforms=[Platform.APNS]))
    event = load_event("api_register_device")
    event["body"] = json.dumps({"channel": "push", "address": "fcm-token", "platform": "fcm"})

    # When the API handles it
    status_code, body = invoke(event, dependencies, lambda_context)

    # Then it is refused on the platform field and nothing is stored
    assert status_code == 422
    assert body["errors"] == [{"field": "platform", "message": body["message"]}]
    assert dependencies.registry.devices == {}
