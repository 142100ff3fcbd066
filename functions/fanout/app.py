"""Handler of the intake queue: fans each accepted notification out to its recipients' devices."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.clients import client
from herald.consumer import Consumer, Done, QueueRecord, Retry, Verdict
from herald.dead_letters import DeadLetterQueue
from herald.devices import DeviceRegistry, DynamoDeviceRegistry
from herald.domain import Notification, now
from herald.fanout import Publisher, fan_out
from herald.observability import (
    DELIVERIES_SKIPPED,
    FANOUT_SIZE,
    EmfOutput,
    InvocationMetrics,
    inject_lambda_context,
    logger,
    to_stdout,
)
from herald.queues import DeliveryTopic
from herald.settings import FanoutSettings
from herald.status import DynamoStatusStore, StatusStore


@dataclass(frozen=True)
class Dependencies:
    settings: FanoutSettings
    registry: DeviceRegistry
    topic: Publisher
    status: StatusStore
    sqs: Any
    dead_letters: DeadLetterQueue
    metrics_output: EmfOutput = to_stdout  # where this function's EMF goes (the local stack collects it)

    @classmethod
    def from_settings(cls, settings: FanoutSettings) -> Dependencies:
        dynamodb, sqs = client("dynamodb"), client("sqs")
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            topic=DeliveryTopic(client("sns"), settings.topic_arn),
            status=DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days),
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source="intake"),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(FanoutSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    metrics = InvocationMetrics(d.metrics_output)
    deadline = now() + timedelta(milliseconds=context.get_remaining_time_in_millis())

    def handle(record: QueueRecord, notification: Notification) -> Verdict:
        owner = f"{context.aws_request_id}/{record.message_id}"
        result = fan_out(notification, d.registry, d.topic, d.status, owner, deadline)
        if result.busy_for:
            return Retry("another invocation is fanning this notification out", delay=result.busy_for)
        if not result.already_done:
            priority = notification.priority.value
            metrics.sample(FANOUT_SIZE, MetricUnit.Count, len(result.jobs), priority=priority)
            for channel, skipped in result.skipped_by_channel.items():
                metrics.count(DELIVERIES_SKIPPED, skipped, channel=channel.value, priority=priority)
        logger.info(
            "fanned out",
            notification_id=notification.notification_id,
            deliveries=len(result.jobs),
            recipients_without_devices=len(result.without_devices),
            inactive_devices_skipped=len(result.inactive_skipped),
            duplicate=result.already_done,
        )
        return Done()

    consumer = Consumer(
        parse=Notification.model_validate_json,
        handle=handle,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=d.settings.queue_url,
        max_receive_count=d.settings.max_receive_count,
    )
    with metrics:
        return consumer.process(event).response()
