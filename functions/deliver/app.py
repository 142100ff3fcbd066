"""Handler of a priority queue: delivers each job through its channel, backing off on failure."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.channels import EmailSender, InAppSender, PushSender, SmsSender
from herald.adapters.clients import client, provider_client
from herald.adapters.consumer import Consumer, DeadLetter, Done, QueueRecord, Retry, Verdict
from herald.adapters.dead_letters import DeadLetterQueue, parked_at
from herald.adapters.devices import DynamoDeviceRegistry
from herald.adapters.inbox import DynamoInbox
from herald.adapters.status import DynamoStatusStore
from herald.adapters.templates import DynamoRenderedContent
from herald.logic.delivery import UNPARKED_COPY, Outcome, Received, Result, RetryPolicy, deliver_together
from herald.logic.failures import failure_from
from herald.logic.ports import DeviceRegistry, RenderedContent, Senders, StatusStore
from herald.logic.tallies import TallySheet
from herald.models.domain import Channel, DeliveryJob, group_key, jobs_of, now
from herald.observability import (
    ACCEPTED_TO_SENT_LATENCY,
    DELIVERIES_DEAD_LETTERED,
    DELIVERIES_FAILED,
    DELIVERIES_RETRIED,
    DELIVERIES_SENT,
    EmfOutput,
    InvocationMetrics,
    inject_lambda_context,
    logger,
    to_stdout,
)
from herald.settings import DeliverSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Dependencies:
    settings: DeliverSettings
    senders: Senders
    status: StatusStore
    devices: DeviceRegistry
    sqs: Any
    dead_letters: DeadLetterQueue
    policy: RetryPolicy
    content: RenderedContent | None = None  # templated notifications' renderings (StatusTable)
    metrics_output: EmfOutput = to_stdout  # where this function's EMF goes (the local stack collects it)

    @classmethod
    def from_settings(cls, settings: DeliverSettings) -> Dependencies:
        dynamodb, sqs, sns = client("dynamodb"), client("sqs"), provider_client("sns")
        status = DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days)
        return cls(
            settings=settings,
            senders={
                Channel.EMAIL: EmailSender(
                    provider_client("ses"), settings.sender_email, settings.email_configuration_set
                ),
                Channel.SMS: SmsSender(sns),
                Channel.PUSH: PushSender(sns),
                Channel.IN_APP: InAppSender(DynamoInbox(dynamodb, settings.inbox_table), status.expires_at),
            },
            status=status,
            devices=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source=settings.priority.value),
            policy=RetryPolicy(
                max_attempts=settings.max_receive_count,
                base=settings.retry_base_seconds,
                cap=settings.retry_cap_seconds,
            ),
            content=DynamoRenderedContent(dynamodb, settings.status_table, settings.status_retention_days),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(DeliverSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """A group's provider calls side by side (its unit holds a send slot for each), each in a copy of the
    invocation's context; a crash in one propagates once all have returned, as Lambda's would stop them all."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [future.result() for future in futures]


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    d = dependencies or default_dependencies()
    settings = d.settings
    metrics = InvocationMetrics(d.metrics_output)
    # A claim lasts as long as this invocation may run: after that, Lambda has stopped it.
    deadline = now() + timedelta(milliseconds=context.get_remaining_time_in_millis())
    tally = TallySheet(context.aws_request_id)

    def handle_group(unit: list[tuple[QueueRecord, DeliveryJob]]) -> list[Verdict]:
        # A recipient's deliveries in this batch: claimed in one status write, sent at once, recorded in one.
        received = [
            Received(job, record.receive_count, parked_at(record.message_attributes), record.message_id)
            for record, job in unit
        ]
        results = deliver_together(
            received,
            deadline,
            d.senders,
            d.status,
            d.devices,
            d.policy,
            tally=tally,
            content=d.content,
            run_all=all_at_once,
        )
        return [verdict(record, job, result) for (record, job), result in zip(unit, results, strict=True)]

    def verdict(record: QueueRecord, job: DeliveryJob, result: Result) -> Verdict:
        where: dict[str, object] = {
            "notification_id": job.notification_id,
            "device_id": job.device_id,
            "attempt": record.receive_count,
        }
        if result.outcome is Outcome.RETRY:
            logger.warning("delivery will be retried", retry_in=result.retry_in, reason=result.reason, extra=where)
            return Retry(result.reason or "", delay=result.retry_in)
        if result.outcome is Outcome.DEAD_LETTER:
            return DeadLetter(result.reason or "")
        if result.outcome is Outcome.FAILED:
            metrics.count(DELIVERIES_FAILED, channel=job.channel.value, priority=job.priority.value)
            logger.warning("delivery failed for good", reason=result.reason, extra=where)
        else:
            if result.outcome is Outcome.SENT:
                metrics.count(DELIVERIES_SENT, channel=job.channel.value, priority=job.priority.value)
                latency = (now() - job.accepted_at).total_seconds() * 1000
                metrics.sample(ACCEPTED_TO_SENT_LATENCY, MetricUnit.Milliseconds, latency, priority=job.priority.value)
            logger.info("delivered", outcome=result.outcome.value, extra=where)
        return Done()

    def observe(record: QueueRecord, job: DeliveryJob, verdict: Verdict) -> None:
        # Retries and dead letters as the consumer settled them: a handler that raised included.
        if isinstance(verdict, Retry):
            metrics.count(DELIVERIES_RETRIED, channel=job.channel.value, priority=job.priority.value)
        elif isinstance(verdict, DeadLetter) and verdict.reason != UNPARKED_COPY:
            # A stray copy of a delivery already dead-lettered is parked too, but the delivery counted once.
            metrics.count(DELIVERIES_DEAD_LETTERED, channel=job.channel.value, priority=job.priority.value)

    consumer = Consumer(
        parse_all=jobs_of,  # a message holds one delivery, or a recipient's deliveries on one channel
        group_of=group_key,  # claimed and recorded together: a recipient's deliveries of a notification on a channel
        handle_group=handle_group,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=settings.queue_url,
        max_receive_count=settings.max_receive_count,
        classify=failure_from,
        parallel=settings.parallel_sends,
        lane_of=lambda job: job.channel.value,
        lane_limits={
            Channel.EMAIL.value: settings.email_parallel_sends,
            Channel.SMS.value: settings.sms_parallel_sends,
            Channel.PUSH.value: settings.push_parallel_sends,
            Channel.IN_APP.value: settings.in_app_parallel_sends,
        },
        observe=observe,
    )
    with metrics:
        outcome = consumer.process(event)
        for page in tally.tallies():
            try:
                d.status.record_tally(page.notification_id, page.page, tally.invocation, page.counts, page.recovered)
            except Exception:
                # Its records come back (those parked in the DLQ excepted), and whoever claims them once this
                # invocation is over makes up the changes this tally would have held.
                logger.exception("could not write a tally; its records come back", notification_id=page.notification_id)
                outcome.failed += [
                    m for m in sorted(page.message_ids) if m not in outcome.failed and m not in outcome.parked
                ]
        return outcome.response()
