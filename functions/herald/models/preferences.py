"""A user's preferences: channels and categories on or off, quiet hours in their time zone, a locale."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from herald.models.domain import Channel

CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_CATEGORIES = 50
# BCP 47 as Herald compares it: a language, then subtags ("fr", "fr-CA", "zh-Hant-TW").
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"  # seconds optional
MAX_TIME_ZONE = 64

Category = Annotated[str, Field(pattern=CATEGORY_PATTERN, description="1-64 of a-z 0-9 _ . - (lowercase)")]
Locale = Annotated[str, Field(pattern=LOCALE_PATTERN, max_length=35, description='A BCP 47 tag, e.g. "fr-CA"')]


class QuietHours(BaseModel):
    """A daily window, in the user's time zone, when normal and low deliveries wait. It may cross midnight."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=CLOCK_PATTERN, description='"HH:MM" or "HH:MM:SS", 24-hour, local')
    end: str = Field(pattern=CLOCK_PATTERN, description='"HH:MM[:SS]"; deliveries held go then')

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


def known_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # a directory name (America) is an OSError
        raise ValueError("not an IANA time zone name (e.g. Europe/Paris)") from error
    return name


class Preferences(BaseModel):
    """What `PUT /users/{user_id}/preferences` takes and what is stored. Anything absent is on."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[Channel, bool] = Field(
        default_factory=dict,
        description='A channel set to false gets nothing (but required categories), e.g. {"sms": false}.',
    )
    categories: dict[Category, dict[Channel, bool]] = Field(
        default_factory=dict,
        max_length=MAX_CATEGORIES,
        description='Per category, channels on or off, e.g. {"marketing": {"email": false}}.',
    )
    time_zone: str | None = Field(
        default=None, max_length=MAX_TIME_ZONE, description="IANA name, e.g. Europe/Paris; needed by quiet_hours."
    )
    quiet_hours: QuietHours | None = None
    locale: Locale | None = Field(default=None, description="The locale templates are rendered in for this user.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str | None) -> str | None:
        return known_time_zone(name) if name is not None else None

    @field_validator("quiet_hours")
    @classmethod
    def _window_has_a_zone(cls, window: QuietHours | None, info: ValidationInfo) -> QuietHours | None:
        # time_zone is declared first, so it is validated (or missing, if invalid) by now
        if window is not None and info.data.get("time_zone") is None:
            raise ValueError("quiet_hours need a valid time_zone")
        return window

    def allows(self, channel: Channel, category: str | None) -> str | None:
        """None if a delivery on `channel` in `category` may go; else why not."""
        if category is not None and self.categories.get(category, {}).get(channel) is False:
            return f"opted out: category {category} on {channel.value}"
        if self.channels.get(channel) is False:
            return f"opted out: channel {channel.value}"
        return None


class PreferencesView(Preferences):
    """What `GET /users/{user_id}/preferences` answers: the stored preferences, and what no one can turn off."""

    required_categories: list[str] = Field(
        default_factory=list, description="Categories the operator marked required: delivered whatever the above says."
    )


def is_category(name: str) -> bool:
    return re.fullmatch(CATEGORY_PATTERN, name) is not None
