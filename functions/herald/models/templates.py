"""Templates: content per channel and per locale, as stored, and as rendered for one notification."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from herald.models.domain import MAX_BODY, MAX_DATA_BYTES, MAX_TITLE, Channel
from herald.models.preferences import Locale

TEMPLATE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_LOCALES = 10
MAX_HTML = 20_000  # characters of an email's HTML part, source and rendered
MAX_SMS = 1600  # SNS splits longer texts into ten 160-character parts at most
MAX_VARIABLES_BYTES = 8192
# Every locale's rendering is stored in one DynamoDB item (400 KB at most): rendered content past this is a 422.
MAX_RENDERED_BYTES = 300_000

TemplateId = Annotated[str, Field(pattern=TEMPLATE_ID_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailContent(_Strict):
    subject: str = Field(min_length=1, max_length=MAX_TITLE)
    html: str = Field(min_length=1, max_length=MAX_HTML, description="HTML part; variables are HTML-escaped.")
    text: str = Field(min_length=1, max_length=MAX_BODY, description="Plain-text part, sent alongside the HTML.")


class SmsContent(_Strict):
    text: str = Field(min_length=1, max_length=MAX_SMS)


class PushContent(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(min_length=1, max_length=MAX_BODY)


class InAppContent(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(min_length=1, max_length=MAX_BODY)
    data: dict[str, Any] = Field(
        default_factory=dict, description=f"Its string values are templates too; at most {MAX_DATA_BYTES} bytes."
    )

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_DATA_BYTES:
            raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
        return data


class ChannelContents(_Strict):
    """One locale's content: at least one channel. A device of a channel without content is skipped."""

    email: EmailContent | None = None
    sms: SmsContent | None = None
    push: PushContent | None = None
    in_app: InAppContent | None = None

    @model_validator(mode="after")
    def _some_channel(self) -> ChannelContents:
        if not self.channels():
            raise ValueError("give content for at least one of email, sms, push, in_app")
        return self

    def channels(self) -> list[Channel]:
        return [channel for channel in Channel if getattr(self, channel.value) is not None]


class TemplateDocument(_Strict):
    """What `PUT /templates/{template_id}` takes. Every locale must have the same channels."""

    default_locale: Locale = Field(description="Used when a recipient's locale (and its language) has no content.")
    locales: dict[Locale, ChannelContents] = Field(min_length=1, max_length=MAX_LOCALES)

    @model_validator(mode="after")
    def _coherent(self) -> TemplateDocument:
        if self.default_locale not in self.locales:
            raise ValueError(f"default_locale {self.default_locale} has no entry in locales")
        shapes = {tuple(contents.channels()) for contents in self.locales.values()}
        if len(shapes) > 1:
            raise ValueError("every locale must have content for the same channels")
        return self

    def channels(self) -> list[Channel]:
        return self.locales[self.default_locale].channels()


class TemplateView(TemplateDocument):
    template_id: str
    updated_at: datetime


class Rendering(BaseModel):
    """A notification's template rendered at accept time: every locale, every channel."""

    template_id: str
    locales: dict[str, ChannelContents]
