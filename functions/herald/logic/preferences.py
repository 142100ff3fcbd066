"""Per-device decisions at fan-out: opted out (skip), in quiet hours (defer), which template locale.

Fan-out asks once per page of recipients (`DeliveryRules.for_recipients`: one batched read of
their preferences) and then once per device (`RecipientRules.route`), so its own code changes at
one place. Required categories (an operator's list, e.g. security) bypass every opt-out; high
priority never waits for quiet hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from herald.logic.ports import ProfileStore
from herald.logic.quiet_hours import window_end
from herald.logic.templates import choose_locale
from herald.models.domain import Device, Notification, Priority, now
from herald.models.preferences import Preferences


class RequiredCategoryOptOut(ValueError):
    """A user tried to opt out of a category the operator marked required: answered 422 naming it."""

    def __init__(self, category: str):
        super().__init__(f"category {category} is required: it cannot be turned off")
        self.field = f"categories.{category}"


def check_preferences(preferences: Preferences, required: Iterable[str]) -> None:
    for category in required:
        if False in preferences.categories.get(category, {}).values():
            raise RequiredCategoryOptOut(category)


@dataclass(frozen=True)
class Route:
    """What becomes of one delivery: sent now, skipped with a reason, or held until a time."""

    skip_reason: str | None = None
    defer_until: datetime | None = None
    content_locale: str | None = None


@dataclass(frozen=True)
class RecipientRules:
    notification: Notification
    preferences: dict[str, Preferences]
    required: frozenset[str]
    at: datetime

    def route(self, device: Device) -> Route:
        notification = self.notification
        preferences = self.preferences.get(device.user_id)
        template = notification.template
        if template is not None and device.channel not in template.channels:
            return Route(skip_reason=f"template {template.template_id} has no {device.channel.value} content")
        required = notification.category is not None and notification.category in self.required
        if preferences is not None and not required:
            reason = preferences.allows(device.channel, notification.category)
            if reason is not None:
                return Route(skip_reason=reason)
        locale = None
        if template is not None:
            wanted = preferences.locale if preferences else None
            locale = choose_locale(wanted, template.locales, template.default_locale)
        until = None
        if (
            preferences is not None
            and preferences.quiet_hours is not None
            and preferences.time_zone is not None
            and notification.priority is not Priority.HIGH
        ):
            until = window_end(preferences.quiet_hours, preferences.time_zone, self.at)
        return Route(defer_until=until, content_locale=locale)


@dataclass(frozen=True)
class DeliveryRules:
    """The rules fan-out applies; with no store, every delivery goes (and templates take their default locale)."""

    profiles: ProfileStore | None = None
    required_categories: frozenset[str] = field(default_factory=frozenset)
    clock: Callable[[], datetime] = now

    def for_recipients(self, notification: Notification, user_ids: list[str]) -> RecipientRules:
        preferences = self.profiles.get_many(user_ids) if self.profiles is not None and user_ids else {}
        return RecipientRules(notification, preferences, self.required_categories, self.clock())
