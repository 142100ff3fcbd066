"""A cancel against a fan-out page's one write, under moto with the handlers wired as the template wires them:
exactly one wins, a cancel that wins leaves nothing to send, and a page recorded is always published."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import fanout.app
from herald.models.domain import DeliveryJob, jobs_of
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed
from tests.integration.test_pipeline_under_moto import call_api, register, send, sqs_event, status_of
from tests.integration.test_reliability_under_moto import Crash, deliver_messages, emails_to

ADDRESSES = {"mail": "ada@example.com", "work": "ada@work.example.com"}


class CrashBeforePublish:
    """The fan-out dies after its page's write, before SNS has anything of the page."""

    def publish(self, jobs: list[DeliveryJob]) -> int:
        raise Crash()


class CancelWhilePublishing:
    """A `DELETE /notifications/{id}` arrives while the page is publishing: its answer is kept."""

    def __init__(self, topic: Any, deployed: Deployed):
        self.topic = topic
        self.deployed = deployed
        self.answers: list[int] = []

    def publish(self, jobs: list[DeliveryJob]) -> int:
        self.answers.append(cancel(self.deployed, jobs[0].notification_id))
        published: int = self.topic.publish(jobs)
        return published


def cancel(deployed: Deployed, notification_id: str) -> int:
    path = f"/notifications/{notification_id}"
    status: int = call_api(deployed, "DELETE", path, notification_id=notification_id)["statusCode"]
    return status


def two_emails_to_ada(deployed: Deployed) -> str:
    for device, address in ADDRESSES.items():
        register(deployed, "ada", device, {"channel": "email", "address": address})
    return send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})


def fan_out(deployed: Deployed, messages: list[dict[str, Any]], topic: Any = None) -> dict[str, Any]:
    dependencies = fanout.app.dependencies_from(deployed.environment("FanoutHighFunction"))
    if topic is not None:
        dependencies = dataclasses.replace(dependencies, topic=topic(dependencies.topic))
    result: dict[str, Any] = fanout.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn("HighIntakeQueue")), FakeContext(), dependencies
    )
    return result


def copy_of(message: dict[str, Any], name: str) -> dict[str, Any]:
    """The same intake message handed out again by SQS (a duplicate, or its return after a crash)."""
    return {**message, "MessageId": f"{name}-{message['MessageId']}"}


def test_a_cancel_first_leaves_the_fan_out_and_its_duplicates_nothing_to_publish(deployed: Deployed) -> None:
    # Given a notification to ada's two email addresses, cancelled before its fan-out ran
    notification_id = two_emails_to_ada(deployed)
    assert cancel(deployed, notification_id) == 204
    [intake] = deployed.receive_all("HighIntakeQueue")

    # When its intake message is fanned out, and a duplicate of it too
    assert fan_out(deployed, [intake]) == {"batchItemFailures": []}
    assert fan_out(deployed, [copy_of(intake, "duplicate")]) == {"batchItemFailures": []}

    # Then nothing was published, nothing reached SES, and the status reads cancelled with no delivery
    assert deployed.receive_all("HighQueue") == []
    assert [emails_to(address) for address in ADDRESSES.values()] == [0, 0]
    status = status_of(deployed, notification_id)
    assert status["status"] == "cancelled" and status["deliveries"] == []
    # And a later cancel says it is cancelled still
    assert cancel(deployed, notification_id) == 204


def test_a_cancel_while_the_page_publishes_is_too_late_and_each_delivery_is_sent_once(deployed: Deployed) -> None:
    # Given a notification to ada's two email addresses, and a cancel that arrives while its page publishes
    notification_id = two_emails_to_ada(deployed)
    [intake] = deployed.receive_all("HighIntakeQueue")
    racing: list[CancelWhilePublishing] = []

    def racing_topic(topic: Any) -> CancelWhilePublishing:
        racing.append(CancelWhilePublishing(topic, deployed))
        return racing[-1]

    # When the fan-out runs, then deliver on what it published
    assert fan_out(deployed, [intake], topic=racing_topic) == {"batchItemFailures": []}
    assert deliver_messages(deployed, deployed.receive_all("HighQueue")) == {"batchItemFailures": []}

    # Then the cancel was answered 409 (the page's write came first), and each address got its email once
    assert racing[0].answers == [409]
    assert [emails_to(address) for address in ADDRESSES.values()] == [1, 1]
    assert status_of(deployed, notification_id)["status"] == "delivered"


def test_a_fan_out_that_dies_between_its_write_and_its_publish_is_published_by_its_retry_once(
    deployed: Deployed,
) -> None:
    # Given a notification to ada's two email addresses whose fan-out wrote its page, then died before publishing
    notification_id = two_emails_to_ada(deployed)
    [intake] = deployed.receive_all("HighIntakeQueue")
    with pytest.raises(Crash):
        fan_out(deployed, [intake], topic=lambda _: CrashBeforePublish())
    assert deployed.receive_all("HighQueue") == []

    # When it is cancelled: too late, the page is recorded and will be published
    assert cancel(deployed, notification_id) == 409

    # When the intake message returns, then deliver runs on what the retry published
    assert fan_out(deployed, [copy_of(intake, "returned")]) == {"batchItemFailures": []}
    first_round = deployed.receive_all("HighQueue")
    assert deliver_messages(deployed, first_round) == {"batchItemFailures": []}
    # And when SQS hands out a duplicate of the intake message after all that, and deliver runs again
    assert fan_out(deployed, [copy_of(intake, "duplicate")]) == {"batchItemFailures": []}
    second_round = deployed.receive_all("HighQueue")
    assert deliver_messages(deployed, second_round) == {"batchItemFailures": []}

    # Then both rounds published both deliveries (one message for ada's two addresses), and each address got
    # exactly one email, sent on the first attempt
    assert len(first_round) == len(second_round) == 1
    assert [len(jobs_of(m["Body"])) for m in first_round + second_round] == [2, 2]
    assert [emails_to(address) for address in ADDRESSES.values()] == [1, 1]
    status = status_of(deployed, notification_id)
    assert status["status"] == "delivered"
    assert sorted((d["device_id"], d["status"], d["attempts"]) for d in status["deliveries"]) == [
        ("mail", "sent", 1),
        ("work", "sent", 1),
    ]
