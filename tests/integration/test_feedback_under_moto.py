"""Dead addresses under moto (issue 10, finding 10): the template's configuration set, topic, queue and
feedback function carry SES's bounces and complaints to the devices; an opted-out number retires its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.sns.models import sns_backends

import deliver.app
import feedback.app
from herald.adapters.channels import OPTED_OUT
from herald.adapters.clients import client
from herald_local.mailbox_simulator import MailboxSimulator, event_destinations
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed, template
from tests.integration.test_pipeline_under_moto import (
    ACCOUNT,
    REGION,
    call_api,
    register,
    run_fanout,
    send,
    sqs_event,
    status_of,
)


def devices_of(deployed: Deployed, user: str) -> dict[str, dict[str, Any]]:
    response = call_api(deployed, "GET", f"/users/{user}/devices", user_id=user)
    return {device["device_id"]: device for device in json.loads(response["body"])["devices"]}


def deliver_with_ses_simulator(deployed: Deployed) -> MailboxSimulator:
    """Runs the high deliver function on its queue, its email sender followed by SES's simulated events."""
    sns = client("sns")
    simulator = MailboxSimulator(
        event_destinations(template(), deployed.stack.resolver),
        lambda topic_arn, message: sns.publish(TopicArn=topic_arn, Message=message),
    )
    dependencies = simulator.hook(
        "DeliverHighFunction", deliver.app.dependencies_from(deployed.environment("DeliverHighFunction"))
    )
    messages = deployed.receive_all("HighQueue")
    result = deliver.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn("HighQueue")), FakeContext(), dependencies
    )
    assert result == {"batchItemFailures": []}
    return simulator


def run_feedback(deployed: Deployed) -> dict[str, Any]:
    messages = deployed.receive_all("FeedbackQueue")
    dependencies = feedback.app.dependencies_from(deployed.environment("FeedbackFunction"))
    result: dict[str, Any] = feedback.app.lambda_handler(
        sqs_event(messages, deployed.stack.arn("FeedbackQueue")), FakeContext(), dependencies
    )
    return result


def test_the_template_makes_the_configuration_set_every_email_is_sent_with(deployed: Deployed) -> None:
    # Given the deployed template, Then SES has its configuration set, its bounces and complaints going to the topic
    name = deployed.environment("DeliverHighFunction")["EMAIL_CONFIGURATION_SET"]
    described = client("ses").describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    [destination] = described["EventDestinations"]
    assert sorted(destination["MatchingEventTypes"]) == ["bounce", "complaint"]
    assert destination["SNSDestination"]["TopicARN"] == deployed.stack.ref("EmailFeedbackTopic")


@pytest.mark.parametrize(
    ("mailbox", "reason"),
    [("bounce", "SES reported a hard bounce"), ("complaint", "SES reported a complaint")],
)
def test_an_email_to_the_simulator_ends_with_the_device_inactive_and_later_notifications_skip_it(
    deployed: Deployed, mailbox: str, reason: str
) -> None:
    # Given ada's email device at SES's simulator address, and her in-app inbox
    register(deployed, "ada", "mail", {"channel": "email", "address": f"{mailbox}+ada@simulator.amazonses.com"})
    register(deployed, "ada", "web", {"channel": "in_app"})
    first = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)

    # When the email is sent, SES publishes its event, and the feedback function reads the queue
    simulator = deliver_with_ses_simulator(deployed)
    assert [event["eventType"] for event in simulator.published] == [mailbox.capitalize()]
    assert run_feedback(deployed) == {"batchItemFailures": []}

    # Then the email itself was sent, and the device now says why it is inactive
    assert {d["device_id"]: d["status"] for d in status_of(deployed, first)["deliveries"]}["mail"] == "sent"
    mail = devices_of(deployed, "ada")["mail"]
    assert mail["active"] is False and str(mail["inactive_reason"]).startswith(reason)
    # and the next notification skips it, saying so
    second = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)
    status = status_of(deployed, second)
    assert [d["device_id"] for d in status["deliveries"]] == ["web"]
    assert status["inactive_devices_skipped"] == ["ada/mail"]


def test_an_email_to_an_ordinary_address_publishes_nothing(deployed: Deployed) -> None:
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)
    assert deliver_with_ses_simulator(deployed).published == []
    assert deployed.receive_all("FeedbackQueue") == []
    assert devices_of(deployed, "ada")["mail"]["active"] is True


def test_an_sms_to_an_opted_out_number_marks_its_device_inactive(deployed: Deployed) -> None:
    # Given ada's phone number, which moto reports opted out (it ends in 99)
    register(deployed, "ada", "phone", {"channel": "sms", "address": "+14155550199"})
    first = send(deployed, {"recipients": ["ada"], "title": "t", "body": "b", "priority": "high"})
    run_fanout(deployed)

    # When the SMS delivery runs
    deliver_with_ses_simulator(deployed)

    # Then nothing was published to SNS, the delivery failed saying why, and the device is inactive
    assert "+14155550199" not in [number for number, _ in sns_backends[ACCOUNT][REGION].sms_messages.values()]
    [delivery] = status_of(deployed, first)["deliveries"]
    assert (delivery["status"], delivery["last_error"]) == ("failed", OPTED_OUT)
    phone = devices_of(deployed, "ada")["phone"]
    assert (phone["active"], phone["inactive_reason"]) == (False, OPTED_OUT)
