"""Handler of the feedback queue: SES's bounces and complaints take the devices of dead addresses out of fan-out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.clients import client
from herald.adapters.consumer import Consumer, Done, QueueRecord, Verdict
from herald.adapters.dead_letters import DeadLetterQueue
from herald.adapters.devices import DynamoDeviceRegistry
from herald.logic.failures import failure_from
from herald.logic.feedback import apply_email_feedback
from herald.logic.ports import DeviceRegistry
from herald.models.domain import Channel
from herald.models.feedback import EmailFeedback, TopicCheck, parse_feedback
from herald.observability import (
    DEVICES_DEACTIVATED,
    EmfOutput,
    InvocationMetrics,
    inject_lambda_context,
    logger,
    to_stdout,
)
from herald.settings import FeedbackSettings


@dataclass(frozen=True)
class Dependencies:
    settings: FeedbackSettings
    registry: DeviceRegistry
    sqs: Any
    dead_letters: DeadLetterQueue
    metrics_output: EmfOutput = to_stdout  # where this function's EMF goes (the local stack collects it)

    @classmethod
    def from_settings(cls, settings: FeedbackSettings) -> Dependencies:
        sqs = client("sqs")
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(client("dynamodb"), settings.devices_table),
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source="feedback"),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(FeedbackSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    metrics = InvocationMetrics(d.metrics_output)

    def handle(record: QueueRecord, feedback: EmailFeedback | TopicCheck) -> Verdict:
        if isinstance(feedback, TopicCheck):
            logger.info("SES confirmed it can publish to the feedback topic")
            return Done()
        result = apply_email_feedback(feedback, d.registry)
        logger.info(
            "email feedback",
            kind=feedback.kind,
            ses_message_id=feedback.mail.message_id,
            dead_addresses=len(result.addresses),
            devices_marked_inactive=len(result.inactive),
        )
        if result.inactive:
            # A rise in complaints is the sender's reputation at stake: the dashboard shows it per reason.
            reason = feedback.kind.lower()
            metrics.count(DEVICES_DEACTIVATED, len(result.inactive), channel=Channel.EMAIL.value, reason=reason)
        return Done()

    consumer = Consumer(
        parse=parse_feedback,
        handle=handle,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=d.settings.queue_url,
        max_receive_count=d.settings.max_receive_count,
        classify=failure_from,
    )
    with metrics:
        return consumer.process(event).response()
