"""Handler of the intake queue: fans each accepted notification out to its recipients' devices."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.clients import client
from herald.devices import DeviceRegistry, DynamoDeviceRegistry
from herald.domain import Notification
from herald.fanout import Publisher, fan_out
from herald.observability import logger
from herald.queues import DeliveryTopic
from herald.settings import FanoutSettings
from herald.status import DynamoStatusStore, StatusStore


@dataclass(frozen=True)
class Dependencies:
    registry: DeviceRegistry
    topic: Publisher
    status: StatusStore

    @classmethod
    def from_settings(cls, settings: FanoutSettings) -> Dependencies:
        dynamodb = client("dynamodb")
        return cls(
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            topic=DeliveryTopic(client("sns"), settings.topic_arn),
            status=DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days),
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
) -> PartialItemFailureResponse:
    d = dependencies or default_dependencies()

    def handle(record: SQSRecord) -> None:
        notification = Notification.model_validate_json(record.body)
        result = fan_out(notification, d.registry, d.topic, d.status)
        logger.info(
            "fanned out",
            notification_id=notification.notification_id,
            deliveries=len(result.jobs),
            recipients_without_devices=len(result.without_devices),
        )

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
