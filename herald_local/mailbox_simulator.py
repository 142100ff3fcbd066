"""SES's mailbox simulator and event publishing, for emulators that have neither.

On AWS, an email to bounce@simulator.amazonses.com hard-bounces and one to
complaint@simulator.amazonses.com draws a complaint (a label is allowed: bounce+x@...), and SES
publishes the event to each event destination of the configuration set the email was sent with.
moto publishes bounces only for identity notification topics, with a fixed sample recipient;
LocalStack publishes only Send and Delivery events. So the local stack does it: it wraps each
deliver function's email sender and, after SES accepted an email to one of those addresses,
publishes the event SES would (event publishing format) to the destinations of the function's
configuration set whose event types match, read from the template. The rest of the way (topic,
subscription, feedback queue, FeedbackFunction) is the template's own.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herald.logic.ports import ChannelSender
from herald.models.domain import Channel, DeliveryJob, now
from herald_local.template import HeraldTemplate, Resolver

SIMULATOR_DOMAIN = "simulator.amazonses.com"
# The simulator's mailboxes Herald reacts to, and the event each produces.
MAILBOXES = {"bounce": "Bounce", "complaint": "Complaint"}


def simulated_event_type(address: str | None) -> str | None:
    """ "Bounce" or "Complaint" for the simulator's addresses (with or without a +label), else None."""
    local, _, domain = (address or "").rpartition("@")
    if domain.lower() != SIMULATOR_DOMAIN:
        return None
    return MAILBOXES.get(local.split("+", 1)[0].lower())


@dataclass(frozen=True)
class EventDestination:
    configuration_set: str
    topic_arn: str
    event_types: frozenset[str]  # lower case, as the template writes them: "bounce", "complaint"


def event_destinations(template: HeraldTemplate, resolver: Resolver) -> list[EventDestination]:
    """The template's SES event destinations that publish to SNS, resolved against the provisioned stack."""
    found = []
    for resource in template.resources.values():
        if resource["Type"] != "AWS::SES::ConfigurationSetEventDestination":
            continue
        props = resolver(resource["Properties"])
        destination = props["EventDestination"]
        if not destination.get("Enabled") or "SnsDestination" not in destination:
            continue
        found.append(
            EventDestination(
                configuration_set=props["ConfigurationSetName"],
                topic_arn=destination["SnsDestination"]["TopicARN"],
                event_types=frozenset(kind.lower() for kind in destination["MatchingEventTypes"]),
            )
        )
    return found


def ses_event(event_type: str, address: str, message_id: str, source: str, configuration_set: str) -> dict[str, Any]:
    """The event SES publishes for a simulated bounce or complaint: the fields its documentation shows."""
    at = now().isoformat()
    mail = {
        "timestamp": at,
        "messageId": message_id,
        "source": source,
        "destination": [address],
        "tags": {"ses:configuration-set": [configuration_set]},
    }
    if event_type == "Bounce":
        detail = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": at,
            "feedbackId": str(uuid.uuid4()),
            "reportingMTA": "dns; herald-local",
        }
        return {"eventType": "Bounce", "mail": mail, "bounce": detail}
    complaint = {
        "complainedRecipients": [{"emailAddress": address}],
        "complaintFeedbackType": "abuse",
        "timestamp": at,
        "feedbackId": str(uuid.uuid4()),
    }
    return {"eventType": "Complaint", "mail": mail, "complaint": complaint}


class MailboxSimulator:
    """A DependencyHook: each deliver function's email sender, followed by the events SES would publish."""

    def __init__(self, destinations: list[EventDestination], publish: Callable[[str, str], Any]):
        self._destinations = destinations
        self._publish = publish  # (topic ARN, message) -> SNS Publish
        self.published: list[dict[str, Any]] = []

    def hook(self, function: str, dependencies: Any) -> Any:
        senders = getattr(dependencies, "senders", None)
        settings = getattr(dependencies, "settings", None)
        configuration_set = getattr(settings, "email_configuration_set", "")
        if not senders or Channel.EMAIL not in senders or not configuration_set:
            return dependencies
        wrapped = _SimulatedMailboxes(senders[Channel.EMAIL], self, configuration_set, settings.sender_email)
        return dataclasses.replace(dependencies, senders={**senders, Channel.EMAIL: wrapped})

    def after_send(self, job: DeliveryJob, message_id: str, configuration_set: str, source: str) -> None:
        event_type = simulated_event_type(job.address)
        if event_type is None or job.address is None:
            return
        event = ses_event(event_type, job.address, message_id, source, configuration_set)
        for destination in self._destinations:
            if destination.configuration_set == configuration_set and event_type.lower() in destination.event_types:
                self._publish(destination.topic_arn, json.dumps(event))
                self.published.append(event)


@dataclass(frozen=True)
class _SimulatedMailboxes:
    sender: ChannelSender
    simulator: MailboxSimulator
    configuration_set: str
    source: str

    def send(self, job: DeliveryJob) -> str:
        message_id = self.sender.send(job)
        self.simulator.after_send(job, message_id, self.configuration_set, self.source)
        return message_id
