"""Whatever the API accepts, fan-out and deliver can parse: the request, the intake message and the
delivery job are one contract (issue 10, finding 2), checked on generated requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api.app
from herald.adapters.channels import push_payload
from herald.logic.idempotency import IdempotentRequests
from herald.models.domain import ID_PATTERN, MAX_DATA_DEPTH, Channel, DeliveryJob, Notification, Platform
from tests.events import load_event
from tests.fakes import (
    FakeContext,
    FakeDeviceRegistry,
    FakeIdempotencyStore,
    FakeIntakeQueue,
    FakePushEndpoints,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)
from tests.unit.conftest import SETTINGS

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities included: the API must refuse those
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=20,
)


def chain(levels: int, leaf: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": leaf}
    for _ in range(levels - 1):
        data = {"k": data}
    return data


DATA = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4) | st.builds(
    chain,
    st.integers(min_value=1, max_value=260),
    SCALARS,  # past where the parsers stop
)
REQUESTS = st.fixed_dictionaries(
    {
        "recipients": st.lists(st.from_regex(ID_PATTERN, fullmatch=True), min_size=1, max_size=3),
        "title": st.text(min_size=1, max_size=30),
        "body": st.text(min_size=1, max_size=30),
        "data": DATA,
    },
    optional={"priority": st.sampled_from(["high", "normal", "low"]), "channels": st.just(["push", "in_app"])},
)
DEVICES = [
    make_device("ada", "web", Channel.IN_APP),
    make_device("ada", "mail", Channel.EMAIL, address="ada@example.com"),
    make_device("ada", "phone", Channel.SMS, address="+14155550100"),
    make_device(
        "ada", "iphone", Channel.PUSH, address="t", platform=Platform.APNS, endpoint_arn="arn:aws:sns:::endpoint/x"
    ),
]


def fresh_api() -> api.app.Dependencies:
    status = FakeStatusStore()
    return api.app.Dependencies(
        settings=SETTINGS,
        registry=FakeDeviceRegistry(),
        endpoints=FakePushEndpoints(),
        status=status,
        reader=status,
        subscribers=FakeSubscribers(),
        inbox=None,
        intake=FakeIntakeQueue(),
        idempotency=IdempotentRequests(FakeIdempotencyStore()),
        sqs=None,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=REQUESTS)
def test_whatever_the_api_accepts_round_trips_through_the_intake_message_and_every_delivery_job(request):
    # Given a generated request, sent as JSON text the way Python writes it (NaN and Infinity included)
    event = load_event("api_send_notification")
    event["body"] = json.dumps(request)
    dependencies = fresh_api()

    # When the API answers it
    response = api.app.lambda_handler(event, FakeContext(), dependencies=dependencies)

    # Then it either refuses it, writing nothing...
    assert response["statusCode"] in (202, 400, 422), response
    if response["statusCode"] != 202:
        assert dependencies.intake.sent == [] and dependencies.status.accepted == {}
        return
    # ...or what it queued parses back as fan-out reads it, unchanged
    [queued] = dependencies.intake.sent
    intake_message = queued.model_dump_json()
    notification = Notification.model_validate_json(intake_message)
    assert notification == queued
    assert notification.data == json.loads(event["body"])["data"]
    # and every delivery job fan-out makes of it parses back as deliver reads it, the push payload included
    for device in DEVICES:
        job = DeliveryJob.for_device(notification, device)
        assert DeliveryJob.model_validate_json(job.model_dump_json()) == job
        json.loads(json.dumps(push_payload(job), allow_nan=False))


@pytest.mark.parametrize("levels", [1, MAX_DATA_DEPTH])
def test_the_deepest_data_the_api_takes_survives_fan_out_and_delivery_parsing(levels):
    # A direct check of the boundary the generated requests cross at random
    data = chain(levels, 1.5)
    notification = Notification.model_validate(
        {
            "notification_id": "n",
            "recipients": ["ada"],
            "title": "t",
            "body": "b",
            "data": data,
            "accepted_at": "2026-01-01T00:00:00Z",
        }
    )
    assert Notification.model_validate_json(notification.model_dump_json()).data == data
