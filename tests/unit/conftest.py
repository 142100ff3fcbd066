"""Fixtures of the unit tier: the sample events' payloads as models, and a Lambda context."""

from __future__ import annotations

import pytest

import api.app
from herald.logic.idempotency import IdempotentRequests
from herald.logic.templates import Templating
from herald.models.domain import Channel, DeliveryJob, Notification, Priority
from herald.settings import ApiSettings
from tests.events import load_event
from tests.fakes import (
    FakeContext,
    FakeDeviceRegistry,
    FakeHistory,
    FakeHolds,
    FakeIdempotencyStore,
    FakeIntakeQueue,
    FakeProfileStore,
    FakePushEndpoints,
    FakeRenderedContent,
    FakeStatusStore,
    FakeSubscribers,
    FakeTemplateStore,
)


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def notification() -> Notification:
    """The accepted notification of events/fanout.json: recipients user-42 and user-43, high priority."""
    return Notification.model_validate_json(load_event("fanout")["Records"][0]["body"])


@pytest.fixture
def job() -> DeliveryJob:
    """The in_app delivery of events/deliver.json, to user-42's device web-inbox."""
    return DeliveryJob.model_validate_json(load_event("deliver")["Records"][0]["body"])


@pytest.fixture
def push_job(job: DeliveryJob) -> DeliveryJob:
    """The same delivery through mobile push (device pixel): claimed and recorded on every try, as every
    channel but in_app is (herald.logic.delivery.SELF_RECORDING)."""
    arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/herald/7"
    return job.model_copy(update={"channel": Channel.PUSH, "device_id": "pixel", "endpoint_arn": arn})


QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-"
SETTINGS = ApiSettings(
    devices_table="herald-devices",
    status_table="herald-status",
    inbox_table="herald-inbox",
    idempotency_table="herald-idempotency",
    subscribers_table="herald-subscribers",
    **{f"{p.value}_intake_queue_url": QUEUE + p.value + "-intake" for p in Priority},
    **{f"{p.value}_intake_dlq_url": QUEUE + p.value + "-intake-dlq" for p in Priority},
    **{f"{p.value}_queue_url": QUEUE + p.value for p in Priority},
    **{f"{p.value}_dlq_url": QUEUE + p.value + "-dlq" for p in Priority},
)


@pytest.fixture
def api_dependencies() -> api.app.Dependencies:
    """The API function's dependencies, all fakes; the status store and intake queue share one journal."""
    journal: list[str] = []
    status = FakeStatusStore(journal=journal)
    return api.app.Dependencies(
        settings=SETTINGS,
        registry=FakeDeviceRegistry(),
        endpoints=FakePushEndpoints(),
        status=status,
        reader=status,
        subscribers=FakeSubscribers(),
        inbox=None,
        intake=FakeIntakeQueue(journal=journal),
        idempotency=IdempotentRequests(FakeIdempotencyStore()),
        sqs=None,
        profiles=FakeProfileStore(),
        templating=Templating(FakeTemplateStore(), FakeRenderedContent()),
        holds=FakeHolds(journal=journal),
        history=FakeHistory(),
        required_categories=frozenset({"security"}),
    )
