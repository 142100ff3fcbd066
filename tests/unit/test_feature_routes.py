"""The API's routes for preferences, templates, scheduled sends and cancel, with fakes behind them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import api.app
from herald.models.domain import now
from herald.models.holds import HeldNotification
from herald.models.status import PageOutcome
from tests.events import load_event

TEMPLATE = {
    "default_locale": "en",
    "locales": {
        "en": {"sms": {"text": "Hi {{ name }}"}, "in_app": {"title": "Hi", "body": "{{ name }}"}},
        "fr": {"sms": {"text": "Salut {{ name }}"}, "in_app": {"title": "Salut", "body": "{{ name }}"}},
    },
}


def call(
    dependencies: api.app.Dependencies, context: Any, method: str, resource: str, body: Any = None, **params: str
) -> tuple[int, Any]:
    """One request as API Gateway sends it: `resource` with {names}, filled from `params`."""
    event = load_event("api_send_notification")
    event.update(
        httpMethod=method,
        resource=resource,
        path=resource.format(**params),
        pathParameters=params or None,
        body=json.dumps(body) if body is not None else None,
    )
    response = api.app.lambda_handler(event, context, dependencies=dependencies)
    return response["statusCode"], json.loads(response["body"] or "null")


def test_preferences_read_back_with_the_required_categories(api_dependencies, lambda_context):
    # Given no preferences yet
    status, body = call(api_dependencies, lambda_context, "GET", "/users/{user_id}/preferences", user_id="ada")
    assert (status, body["channels"], body["required_categories"]) == (200, {}, ["security"])

    # When some are put, Then they read back as stored
    wanted = {
        "channels": {"sms": False},
        "time_zone": "Europe/Paris",
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }
    status, _ = call(api_dependencies, lambda_context, "PUT", "/users/{user_id}/preferences", wanted, user_id="ada")
    assert status == 200
    _, body = call(api_dependencies, lambda_context, "GET", "/users/{user_id}/preferences", user_id="ada")
    assert (body["channels"], body["quiet_hours"]) == ({"sms": False}, {"start": "22:00", "end": "07:00"})


def test_a_template_with_a_syntax_error_is_refused_naming_the_field(api_dependencies, lambda_context):
    # Given a template whose French SMS does not compile
    broken = json.loads(json.dumps(TEMPLATE))
    broken["locales"]["fr"]["sms"]["text"] = "{{ name"

    # When it is put
    status, body = call(api_dependencies, lambda_context, "PUT", "/templates/{template_id}", broken, template_id="w")

    # Then it is a 422 naming that field, and nothing is stored
    assert status == 422
    assert body["errors"][0]["field"] == "locales.fr.sms.text"
    assert api_dependencies.templating.store.get("w") is None


def test_a_templated_notification_is_rendered_and_stored_before_it_is_queued(api_dependencies, lambda_context):
    # Given a stored template
    call(api_dependencies, lambda_context, "PUT", "/templates/{template_id}", TEMPLATE, template_id="welcome")

    # When a notification names it with its variables
    request = {"recipients": ["ada"], "template": "welcome", "variables": {"name": "Ada"}}
    status, body = call(api_dependencies, lambda_context, "POST", "/notifications", request)

    # Then it is accepted, its rendering stored, and the queued message carries the template's outline only
    assert status == 202
    rendering = api_dependencies.templating.content.get(body["notification_id"])
    assert rendering.locales["fr"].sms.text == "Salut Ada"
    [queued] = api_dependencies.intake.sent
    assert (queued.title, queued.template.locales, queued.template.channels) == ("", ["en", "fr"], ["sms", "in_app"])


def test_a_scheduled_notification_is_held_not_queued_and_can_be_cancelled_until_fan_out(
    api_dependencies, lambda_context
):
    # Given a notification scheduled an hour ahead
    send_at = (now() + timedelta(hours=1)).isoformat()
    request = {"recipients": ["ada"], "title": "Later", "body": "b", "send_at": send_at}
    status, body = call(api_dependencies, lambda_context, "POST", "/notifications", request)
    notification_id = body["notification_id"]

    # Then it is held for its first 15-minute hop, not queued, and shows scheduled
    assert status == 202 and api_dependencies.intake.sent == []
    [(held, delay)] = api_dependencies.holds.held
    assert isinstance(held.held, HeldNotification) and delay == 900
    _, record = call(
        api_dependencies, lambda_context, "GET", "/notifications/{notification_id}", notification_id=notification_id
    )
    assert record["status"] == "scheduled"

    # When it is cancelled, twice, Then both answer 204 and it shows cancelled
    for _ in range(2):
        status, _ = call(
            api_dependencies,
            lambda_context,
            "DELETE",
            "/notifications/{notification_id}",
            notification_id=notification_id,
        )
        assert status == 204
    _, record = call(
        api_dependencies, lambda_context, "GET", "/notifications/{notification_id}", notification_id=notification_id
    )
    assert record["status"] == "cancelled" and record["cancelled_at"]
    # And fan-out's record of its first page, made before it publishes anything, finds it cancelled
    accepted = api_dependencies.status.accepted[notification_id]
    write = api_dependencies.status.record_page(accepted, "00.000000", PageOutcome())
    assert not write.written and write.cancelled


def test_a_notification_fanned_out_cannot_be_cancelled_and_an_unknown_one_is_404(api_dependencies, lambda_context):
    # Given a notification whose first page fan-out has recorded (it publishes only after that)
    status, body = call(
        api_dependencies, lambda_context, "POST", "/notifications", {"recipients": ["ada"], "title": "t", "body": "b"}
    )
    accepted = api_dependencies.status.accepted[body["notification_id"]]
    assert api_dependencies.status.record_page(accepted, "00.000000", PageOutcome()).written

    # When it is cancelled, Then it is too late; an unknown id is not found
    status, answer = call(
        api_dependencies,
        lambda_context,
        "DELETE",
        "/notifications/{notification_id}",
        notification_id=body["notification_id"],
    )
    assert status == 409 and answer["errors"][0]["field"] == "notification_id"
    status, _ = call(
        api_dependencies, lambda_context, "DELETE", "/notifications/{notification_id}", notification_id="nope"
    )
    assert status == 404
