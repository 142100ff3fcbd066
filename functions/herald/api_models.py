"""What the HTTP API takes and answers. Not the stored items: those live with their stores."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from herald.domain import (
    E164_PATTERN,
    ID_PATTERN,
    MAX_BODY,
    MAX_DATA_BYTES,
    MAX_PUSH_TOKEN,
    MAX_RECIPIENTS,
    MAX_TITLE,
    Channel,
    Device,
    Platform,
    Priority,
)
from herald.queues import QueueDepth

UserId = Annotated[str, Field(pattern=ID_PATTERN, description="A user id: 1-128 of A-Z a-z 0-9 . _ : @ + -")]

# A request body past this is refused (413) before it is parsed. The largest valid request, every
# field at its limit and every character escaped, stays well below it; so does the SQS message (256 KiB).
MAX_REQUEST_BYTES = 128 * 1024

# What SQS refuses in a message (U+FFFE, U+FFFF) and what UTF-8 cannot encode (lone surrogates):
# JSON escapes control characters, but these would reach SQS and DynamoDB as they are.
_UNSENDABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")


# What SES sends to: an ASCII addr-spec (SES has no SMTPUTF8: IDN domains go as punycode), local part
# dot-atom. Looser patterns let through addresses SES then refuses at every delivery ("a(b@c.de").
EMAIL_ADDRESS_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}$"
)
MAX_EMAIL_LOCAL_PART = 64
PUSH_TOKEN_PATTERN = r"^[!-~]+$"  # printable ASCII, no spaces


def _sendable(text: str) -> str:
    if _UNSENDABLE.search(text):
        raise ValueError("must not contain U+FFFE, U+FFFF or unpaired surrogates")
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailRegistration(_Strict):
    channel: Literal["email"]
    address: str = Field(
        pattern=EMAIL_ADDRESS_PATTERN,
        max_length=254,
        description="The email address: ASCII (a domain in punycode), local part at most 64 characters.",
    )

    @field_validator("address")
    @classmethod
    def _local_part(cls, address: str) -> str:
        if len(address.split("@")[0]) > MAX_EMAIL_LOCAL_PART:
            raise ValueError(f"the part before @ must be at most {MAX_EMAIL_LOCAL_PART} characters")
        return address


class SmsRegistration(_Strict):
    channel: Literal["sms"]
    address: str = Field(pattern=E164_PATTERN, description="An E.164 phone number, e.g. +14155550100.")


class PushRegistration(_Strict):
    channel: Literal["push"]
    address: str = Field(
        pattern=PUSH_TOKEN_PATTERN,
        min_length=1,
        max_length=MAX_PUSH_TOKEN,
        description="The APNs or FCM device token: printable ASCII, no spaces.",
    )
    platform: Platform


class InAppRegistration(_Strict):
    channel: Literal["in_app"]


DeviceRegistration = Annotated[
    EmailRegistration | SmsRegistration | PushRegistration | InAppRegistration,
    Field(discriminator="channel"),
]


class DeviceView(BaseModel):
    user_id: str
    device_id: str
    channel: Channel
    address: str | None = None
    platform: Platform | None = None
    created_at: datetime
    updated_at: datetime
    active: bool = Field(
        default=True,
        description="False once SNS reported the push endpoint disabled or gone; registering again revives it.",
    )
    inactive_reason: str | None = None
    inactive_since: datetime | None = None

    @classmethod
    def of(cls, device: Device) -> DeviceView:
        return cls.model_validate(device.model_dump(exclude={"endpoint_arn"}))


class DeviceList(BaseModel):
    devices: list[DeviceView]


class NotificationRequest(_Strict):
    recipients: list[UserId] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(min_length=1, max_length=MAX_BODY)
    data: dict[str, Any] = Field(default_factory=dict, description=f"At most {MAX_DATA_BYTES} bytes as JSON.")
    priority: Priority = Priority.NORMAL
    channels: list[Channel] | None = Field(
        default=None, min_length=1, max_length=len(Channel), description="Only these channels."
    )

    @field_validator("recipients", "channels")
    @classmethod
    def _unique(cls, values: list[Any] | None) -> list[Any] | None:
        return list(dict.fromkeys(values)) if values is not None else None

    @field_validator("title", "body")
    @classmethod
    def _text(cls, text: str) -> str:
        return _sendable(text)

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any]) -> dict[str, Any]:
        text = _sendable(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        if len(text.encode()) > MAX_DATA_BYTES:
            raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
        return data


class NotificationAccepted(BaseModel):
    notification_id: str
    status: Literal["accepted"] = "accepted"


class QueuesView(BaseModel):
    intake: QueueDepth = Field(description="The intake queue, read by fan-out.")
    high: QueueDepth
    normal: QueueDepth
    low: QueueDepth


class ErrorField(BaseModel):
    field: str = Field(description="The field at fault: a body field (dotted), a path or query parameter, or a header.")
    message: str = Field(description="What is wrong, in words: what the field must be.")
    details: str | None = Field(default=None, description="More for a program: the regular expression not matched.")


class ErrorBody(BaseModel):
    """Every 4xx: Herald's own carry `errors`; API Gateway's (403, 413, 429) have only `message`."""

    message: str
    errors: list[ErrorField] = []
