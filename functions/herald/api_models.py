"""What the HTTP API takes and answers. Not the stored items: those live with their stores."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from herald.domain import (
    E164_PATTERN,
    EMAIL_PATTERN,
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailRegistration(_Strict):
    channel: Literal["email"]
    address: str = Field(pattern=EMAIL_PATTERN, max_length=254, description="The email address.")


class SmsRegistration(_Strict):
    channel: Literal["sms"]
    address: str = Field(pattern=E164_PATTERN, description="An E.164 phone number, e.g. +14155550100.")


class PushRegistration(_Strict):
    channel: Literal["push"]
    address: str = Field(min_length=1, max_length=MAX_PUSH_TOKEN, description="The APNs or FCM device token.")
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
    channels: list[Channel] | None = Field(default=None, min_length=1, description="Only these channels.")

    @field_validator("recipients")
    @classmethod
    def _unique(cls, recipients: list[str]) -> list[str]:
        return list(dict.fromkeys(recipients))

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(data, separators=(",", ":")).encode()) > MAX_DATA_BYTES:
            raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
        return data


class NotificationAccepted(BaseModel):
    notification_id: str
    status: Literal["accepted"] = "accepted"


class QueuesView(BaseModel):
    high: QueueDepth
    normal: QueueDepth
    low: QueueDepth


class ErrorField(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    message: str
    errors: list[ErrorField] = []
