"""Handler of a priority's intake queue: fans each notification out a page at a time, queueing the next page."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.adapters.clients import client
from herald.adapters.consumer import Consumer, Done, QueueRecord, Verdict
from herald.adapters.dead_letters import DeadLetterQueue
from herald.adapters.devices import DynamoDeviceRegistry
from herald.adapters.history import DynamoHistory
from herald.adapters.holds import ScheduleQueue
from herald.adapters.profiles import DynamoProfileStore
from herald.adapters.queues import DeliveryTopic, IntakeQueue
from herald.adapters.status import DynamoStatusStore, HistoryPages
from herald.adapters.topics import DynamoSubscribers
from herald.logic.failures import failure_from
from herald.logic.fanout import (
    FanoutResult,
    PageLimits,
    PagePlan,
    begin_page,
    fan_out,
    finish_page,
    publish_together,
)
from herald.logic.ports import DeviceRegistry, History, Holds, Intake, Publisher, StatusStore, Subscribers
from herald.logic.preferences import DeliveryRules
from herald.models.domain import Notification, now
from herald.observability import (
    DELIVERIES_DEFERRED,
    DELIVERIES_SKIPPED,
    FANOUT_SIZE,
    EmfOutput,
    InvocationMetrics,
    inject_lambda_context,
    logger,
    to_stdout,
)
from herald.settings import FanoutSettings

# A page starts only within this share of the invocation's time: a page is bounded (PageLimits; about a
# second on AWS), so no invocation runs past half its timeout. Later records are queued again as new messages.
START_PAGES_WITHIN = 0.25


@dataclass(frozen=True)
class Dependencies:
    settings: FanoutSettings
    registry: DeviceRegistry
    subscribers: Subscribers
    topic: Publisher
    status: StatusStore
    continuations: Intake
    sqs: Any
    dead_letters: DeadLetterQueue
    # Preferences, quiet hours, locales, history (docs/preferences.md): off where the settings name no table
    rules: DeliveryRules = field(default_factory=DeliveryRules)
    holds: Holds | None = None
    history: History | None = None
    metrics_output: EmfOutput = to_stdout  # where this function's EMF goes (the local stack collects it)

    @classmethod
    def from_settings(cls, settings: FanoutSettings) -> Dependencies:
        dynamodb, sqs = client("dynamodb"), client("sqs")
        pages_in_history = HistoryPages(dynamodb, settings.history_table)
        status = DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days, pages_in_history)
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            subscribers=DynamoSubscribers(dynamodb, settings.subscribers_table),
            topic=DeliveryTopic(client("sns"), settings.topic_arn, parallel=settings.parallel_publishes),
            status=status,
            continuations=IntakeQueue(sqs, settings.queue_url),
            sqs=sqs,
            dead_letters=DeadLetterQueue(sqs, settings.dlq_url, source=f"intake-{settings.priority.value}"),
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

    @property
    def limits(self) -> PageLimits:
        s = self.settings
        return PageLimits(deliveries=s.page_deliveries, users=s.page_users, lookups=s.device_lookups)


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
    remaining = timedelta(milliseconds=context.get_remaining_time_in_millis())
    last_start = now() + remaining * START_PAGES_WITHIN

    # Each record's page planned and recorded before any is published, so the small pages of the batch share their
    # PublishBatch calls. A record whose planning raised is planned again, alone, when it is handled.
    plans: dict[str, FanoutResult | PagePlan] = {}

    def prepare(work: list[tuple[QueueRecord, Notification]]) -> None:
        if len(work) < 2:
            return
        for record, notification in work:
            if now() > last_start:
                break  # the rest are queued again as new messages, when handled
            try:
                plans[record.message_id] = begin_page(
                    notification,
                    d.registry,
                    d.subscribers,
                    d.status,
                    d.continuations,
                    d.limits,
                    d.rules,
                )
            except Exception:
                logger.exception("could not plan a page; it is planned again on its own", message_id=record.message_id)
        publish_together([plan for plan in plans.values() if isinstance(plan, PagePlan)], d.topic)

    def handle(record: QueueRecord, notification: Notification) -> Verdict:
        step = plans.pop(record.message_id, None)
        if isinstance(step, PagePlan):
            # Planned and recorded already: publishing (if the shared publish did not) and what follows are left.
            result = finish_page(step, d.topic, d.status, d.continuations, d.holds, d.history)
        elif now() > last_start:
            # Left for a fresh invocation, as a new message: reported failed, the record would count a
            # receive each time, and a page left over five times would end in the DLQ unread.
            d.continuations.send(notification)
            return Done()
        elif step is None:
            result = fan_out(
                notification,
                d.registry,
                d.subscribers,
                d.topic,
                d.status,
                d.continuations,
                d.limits,
                rules=d.rules,
                holds=d.holds,
                history=d.history,
            )
        else:
            result = step
        outcome = result.outcome
        if outcome is not None and not outcome.chains and not result.repeated:
            # One sample per page recorded (a topic's root page publishes nothing; a page published again by
            # a copy of its message was counted by the copy that recorded it).
            priority = notification.priority.value
            metrics.sample(FANOUT_SIZE, MetricUnit.Count, len(result.jobs), priority=priority)
            # Inactive devices and those the recipients' preferences (or a template) leave out: both skipped.
            for channel, skipped in outcome.skipped_by_channel.items():
                metrics.count(DELIVERIES_SKIPPED, skipped, channel=channel.value, priority=priority)
            for skip in outcome.skipped:
                metrics.count(DELIVERIES_SKIPPED, channel=skip.channel.value, priority=priority)
            for deferred in outcome.deferred:
                metrics.count(DELIVERIES_DEFERRED, channel=deferred.job.channel.value, priority=priority)
        logger.info(
            "fanned out",
            notification_id=notification.notification_id,
            page=notification.page_key,
            deliveries=len(result.jobs),
            recipients_without_devices=outcome.without_devices_count if outcome else 0,
            inactive_devices_skipped=outcome.inactive_skipped_count if outcome else 0,
            skipped=len(result.skipped),
            deferred=len(result.deferred),
            continued=bool(outcome and outcome.next),
            repeated=result.repeated,
            cancelled=result.cancelled,
        )
        return Done()

    consumer = Consumer(
        parse=Notification.model_validate_json,
        handle=handle,
        dead_letters=d.dead_letters,
        sqs=d.sqs,
        queue_url=d.settings.queue_url,
        max_receive_count=d.settings.max_receive_count,
        classify=failure_from,
        prepare=prepare,
    )
    with metrics:
        return consumer.process(event).response()
