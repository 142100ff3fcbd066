"""Handler of a priority queue: delivers each job through its channel, backing off on failure."""

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

from herald.channels import EmailSender, InAppSender, PushSender, Senders, SmsSender
from herald.clients import client
from herald.delivery import RetryLater, deliver
from herald.domain import Channel, DeliveryJob
from herald.inbox import DynamoInbox
from herald.observability import logger
from herald.queues import Backoff
from herald.settings import DeliverSettings
from herald.status import DynamoStatusStore, StatusStore


@dataclass(frozen=True)
class Dependencies:
    settings: DeliverSettings
    senders: Senders
    status: StatusStore
    backoff: Backoff

    @classmethod
    def from_settings(cls, settings: DeliverSettings) -> Dependencies:
        dynamodb, sns = client("dynamodb"), client("sns")
        status = DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days)
        return cls(
            settings=settings,
            senders={
                Channel.EMAIL: EmailSender(client("ses"), settings.sender_email),
                Channel.SMS: SmsSender(sns),
                Channel.PUSH: PushSender(sns),
                Channel.IN_APP: InAppSender(DynamoInbox(dynamodb, settings.inbox_table), status.expires_at),
            },
            status=status,
            backoff=Backoff(client("sqs"), settings.queue_url),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(DeliverSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> PartialItemFailureResponse:
    d = dependencies or default_dependencies()
    settings = d.settings

    def handle(record: SQSRecord) -> None:
        job = DeliveryJob.model_validate_json(record.body)
        receive_count = int(record.attributes.approximate_receive_count or 1)
        try:
            state = deliver(
                job,
                receive_count,
                d.senders,
                d.status,
                max_receive_count=settings.max_receive_count,
                retry_base=settings.retry_base_seconds,
                retry_cap=settings.retry_cap_seconds,
            )
        except RetryLater as retry:
            logger.warning(
                "delivery failed, will retry",
                notification_id=job.notification_id,
                device_id=job.device_id,
                attempt=receive_count,
                retry_in=retry.delay,
                reason=retry.reason,
            )
            d.backoff.delay(record.receipt_handle, retry.delay)
            raise
        logger.info("delivered", notification_id=job.notification_id, device_id=job.device_id, status=state.value)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
