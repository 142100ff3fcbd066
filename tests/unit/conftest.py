"""Fixtures of the unit tier: the sample events' payloads as models, and a Lambda context."""

from __future__ import annotations

import pytest

from herald.domain import DeliveryJob, Notification
from tests.events import load_event
from tests.fakes import FakeContext


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
