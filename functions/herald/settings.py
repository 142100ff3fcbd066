"""Each function's settings: read once from the environment the template gives it, validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from herald.models.domain import Priority
from herald.models.redrive import DeadLetterRoute


class Settings(BaseModel):
    """Base for the settings of one function. Field names match the template's variables."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        values = {name: source[name.upper()] for name in cls.model_fields if name.upper() in source}
        return cls.model_validate(values)


class TablesSettings(Settings):
    devices_table: str
    status_table: str
    inbox_table: str
    status_retention_days: int = Field(default=30, ge=1)


class ChoicesSettings(Settings):
    """Preferences, templates, schedules and history (docs/preferences.md ...). An empty name turns that part off."""

    preferences_table: str = ""
    templates_table: str = ""
    history_table: str = ""
    schedule_queue_url: str = ""
    required_categories: str = ""  # comma-separated: categories no preference can turn off

    def required(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.required_categories.split(",") if name.strip())


class IntakeUrls(Settings):
    """Each priority's intake queue, where notifications wait for that priority's fan-out."""

    high_intake_queue_url: str
    normal_intake_queue_url: str
    low_intake_queue_url: str

    def intake_queue_url(self, priority: Priority) -> str:
        return str(getattr(self, f"{priority.value}_intake_queue_url"))


class QueueUrls(IntakeUrls):
    """Each priority's lane: its intake queue, its delivery queue, and their dead-letter queues; and the
    schedule queue's and the feedback queue's (SES bounces and complaints), empty where the deployment has none."""

    high_intake_dlq_url: str
    normal_intake_dlq_url: str
    low_intake_dlq_url: str
    high_queue_url: str
    normal_queue_url: str
    low_queue_url: str
    high_dlq_url: str
    normal_dlq_url: str
    low_dlq_url: str
    schedule_queue_url: str = ""
    schedule_dlq_url: str = ""
    feedback_queue_url: str = ""
    feedback_dlq_url: str = ""

    def intake_dlq_url(self, priority: Priority) -> str:
        return str(getattr(self, f"{priority.value}_intake_dlq_url"))

    def queue_url(self, priority: Priority) -> str:
        return str(getattr(self, f"{priority.value}_queue_url"))

    def dlq_url(self, priority: Priority) -> str:
        return str(getattr(self, f"{priority.value}_dlq_url"))


class ApiSettings(TablesSettings, QueueUrls, ChoicesSettings):
    subscribers_table: str
    idempotency_table: str
    apns_platform_application_arn: str = ""
    fcm_platform_application_arn: str = ""


class ConsumerSettings(Settings):
    """A function that consumes a queue: the queue, its DLQ and the redrive policy's receive limit."""

    queue_url: str
    dlq_url: str
    max_receive_count: int = Field(default=5, ge=1)


class FanoutSettings(TablesSettings, ConsumerSettings, ChoicesSettings):
    """A fan-out function reads one priority's intake queue and queues its continuations there too."""

    priority: Priority
    topic_arn: str
    subscribers_table: str
    page_deliveries: int = Field(default=1000, ge=1, le=10_000)  # jobs one page publishes at most
    page_users: int = Field(default=1000, ge=1, le=10_000)  # users one page reads at most
    device_lookups: int = Field(default=16, ge=1, le=64)  # device queries in flight at once
    parallel_publishes: int = Field(default=8, ge=1, le=64)  # PublishBatch calls in flight at once


class ScheduleSettings(ConsumerSettings, IntakeUrls):
    """The schedule function: reads the schedule queue (`queue_url`), releases a notification into its
    priority's intake queue and deliveries to the topic."""

    topic_arn: str


class DeliverSettings(TablesSettings, ConsumerSettings):
    priority: Priority
    sender_email: str
    email_configuration_set: str = ""  # SES publishes bounces and complaints of what is sent with it
    retry_base_seconds: int = Field(default=2, ge=0)
    retry_cap_seconds: int = Field(default=900, ge=0, le=43200)
    # Provider calls of one batch run concurrently: at most this many at once, and per channel.
    parallel_sends: int = Field(default=10, ge=1, le=64)
    email_parallel_sends: int = Field(default=10, ge=1)
    sms_parallel_sends: int = Field(default=5, ge=1)
    push_parallel_sends: int = Field(default=10, ge=1)
    in_app_parallel_sends: int = Field(default=10, ge=1)


class FeedbackSettings(TablesSettings, ConsumerSettings):
    """The feedback function's: its queue (SES bounces and complaints, by way of their topic) and the devices."""


class DlqRedriveSettings(QueueUrls):
    """The redrive function's settings: every DLQ Herald has, and the queue each one drains into."""

    def routes(self, selection: str) -> list[DeadLetterRoute]:
        """`selection` is a priority (its delivery queue's DLQ), "intake-<priority>" (that priority's
        fan-out DLQ), "intake" (the three fan-out DLQs), "schedule" (the schedule function's DLQ), "feedback"
        (the feedback function's: SES bounces and complaints), or "all" of them (eight; fewer where the
        deployment has no schedule or feedback queue)."""
        routes = [DeadLetterRoute(p.value, self.dlq_url(p), self.queue_url(p)) for p in Priority]
        routes += [
            DeadLetterRoute(f"intake-{p.value}", self.intake_dlq_url(p), self.intake_queue_url(p)) for p in Priority
        ]
        if self.schedule_dlq_url and self.schedule_queue_url:
            routes.append(DeadLetterRoute("schedule", self.schedule_dlq_url, self.schedule_queue_url))
        if self.feedback_dlq_url and self.feedback_queue_url:
            routes.append(DeadLetterRoute("feedback", self.feedback_dlq_url, self.feedback_queue_url))
        if selection == "all":
            return routes
        if selection == "intake":
            return [route for route in routes if route.name.startswith("intake-")]
        return [route for route in routes if route.name == selection]
