"""Handler of the intake queue: fans each accepted notification out to its recipients' devices."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.clients import client
from herald.adapters.consumer import Consumer, Done, QueueRecord, Retry, Verdict
from herald.adapters.dead_letters import DeadLetterQueue
from herald.adapters.devices import DynamoDeviceRegistry
from herald.adapters.history import DynamoHistory
from herald.adapters.holds import ScheduleQueue
from herald.adapters.profiles import DynamoProfileStore
from herald.adapters.queues import DeliveryTopic
from herald.adapters.status import DynamoStatusStore
from herald.logic.fanout import fan_out
from herald.logic.ports import DeviceRegistry, History, Holds, Publisher, StatusStore
from herald.logic.preferences import DeliveryRules
from herald.models.domain import Notification, now
from herald.observability import logger
from herald.settings import FanoutSettings


@dataclass(frozen=True)
class Dependencies:
    settings: FanoutSettings
    registry: DeviceRegistry
    topic: Publisher
    status: StatusStore
    sqs: Any
    dead_letters: DeadLetterQueue
    # Preferences, quiet hours, locales, history (docs/preferences.md): off where the settings name no table
    rules: DeliveryRules = field(default_factory=DeliveryRules)
    holds: Holds | None = None
    history: History | None = None

    @classmethod
    def from_settings(cls, settings: FanoutSettings) -> Dependencies:
        dynamodb, sqs = client("dynamodb"), client("sqs")
        status = DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days)
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            topic=DeliveryTopic(client("sns"), settings.topic_arn),
            status=status,
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source="intake"),
            rules=DeliveryRules(
                profiles=DynamoProfileStore(dynamodb, settings.preferences_table)
                if settings.preferences_table
                else None,
                required_categories=settings.required(),
            ),
            holds=ScheduleQueue(sqs, settings.schedule_queue_url) if settings.schedule_queue_url else None,
            history=DynamoHistory(dynamodb, settings.history_table, status.expires_at)
            if settings.history_table
            else None,
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(FanoutSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    deadline = now() + timedelta(milliseconds=context.get_remaining_time_in_millis())

    def handle(record: QueueRecord, notification: Notification) -> Verdict:
        owner = f"{context.aws_request_id}/{record.message_id}"
        result = fan_out(notification, d.registry, d.topic, d.status, owner, deadline, d.rules, d.holds, d.history)
        if result.busy_for:
            return Retry("another invocation is fanning this notification out", delay=result.busy_for)
        logger.info(
            "fanned out",
            notification_id=notification.notification_id,
            deliveries=len(result.jobs),
            recipients_without_devices=len(result.without_devices),
            inactive_devices_skipped=len(result.inactive_skipped),
            skipped=len(result.skipped),
            deferred=len(result.deferred),
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
    return consumer.process(event).response()
