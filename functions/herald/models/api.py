"""What the HTTP API takes and answers. Not the stored items: those live with their stores."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from herald.models.domain import (
    E164_PATTERN,
    ID_PATTERN,
    MAX_BODY,
    MAX_DATA_BYTES,
    MAX_DATA_DEPTH,
    MAX_PUSH_TOKEN,
    MAX_RECIPIENTS,
    MAX_TITLE,
    Channel,
    Device,
    Platform,
    Priority,
    now,
)
from herald.models.json_body import depth_of
from herald.models.preferences import Category
from herald.models.queues import QueueDepth
from herald.models.templates import MAX_VARIABLES_BYTES, TemplateId

# A scheduled notification is held at most this long (README's Limits; docs/scheduling.md).
MAX_SCHEDULE_DAYS = 7

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
        description=(
            "False once the device can no longer be reached: SNS reported its push endpoint disabled or gone, its"
            " push token was registered by another user or device, SES reported its address bouncing (hard) or"
            " complaining, or its number opted out of SMS. `inactive_reason` says which; registering again revives it."
        ),
    )
    inactive_reason: str | None = None
    inactive_since: datetime | None = None

    @classmethod
    def of(cls, device: Device) -> DeviceView:
        return cls.model_validate(device.model_dump(exclude={"endpoint_arn"}))


class DeviceList(BaseModel):
    devices: list[DeviceView]


TopicName = Annotated[str, Field(pattern=ID_PATTERN, description="A topic: 1-128 of A-Z a-z 0-9 . _ : @ + -")]


class NotificationRequest(_Strict):
    recipients: list[UserId] | None = Field(
        default=None, min_length=1, max_length=MAX_RECIPIENTS, description="These users; or give `topic`."
    )
    topic: TopicName | None = Field(default=None, description="Every subscriber of this topic; or give `recipients`.")
    # template and variables come before title and body: their validators read whether a template was given
    template: TemplateId | None = Field(
        default=None, description="A stored template, rendered per channel and locale; instead of title and body."
    )
    variables: dict[str, Any] | None = Field(
        default=None, description=f"The template's variables; at most {MAX_VARIABLES_BYTES} bytes as JSON."
    )
    title: str | None = Field(
        default=None, min_length=1, max_length=MAX_TITLE, validate_default=True, description="Unless template."
    )
    body: str | None = Field(
        default=None, min_length=1, max_length=MAX_BODY, validate_default=True, description="Required without template."
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"At most {MAX_DATA_BYTES} bytes as JSON, nested at most {MAX_DATA_DEPTH} levels of objects and arrays"
            " (itself included)."
        ),
    )
    priority: Priority = Priority.NORMAL
    channels: list[Channel] | None = Field(
        default=None, min_length=1, max_length=len(Channel), description="Only these channels."
    )
    category: Category | None = Field(
        default=None, description="What users' preferences are kept by, e.g. marketing; required ones bypass them."
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description=f"ISO 8601 with an offset; held until then; at most {MAX_SCHEDULE_DAYS} days ahead (past: now).",
    )

    @field_validator("recipients", "channels")
    @classmethod
    def _unique(cls, values: list[Any] | None) -> list[Any] | None:
        return list(dict.fromkeys(values)) if values is not None else None

    @model_validator(mode="wrap")
    @classmethod
    def _one_audience(cls, data: Any, handler: ModelWrapValidatorHandler[NotificationRequest]) -> NotificationRequest:
        # Checked on the input, so a request with both gets this error too, naming both fields.
        given = [name for name in ("recipients", "topic") if isinstance(data, dict) and data.get(name) is not None]
        request = handler(data)
        if len(given) != 1:
            message = "give recipients or topic, not both" if given else "give recipients or topic"
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(type=PydanticCustomError("audience", message), loc=(name,), input=data)
                    for name in given or ["recipients", "topic"]
                ],
            )
        return request

    @field_validator("title", "body")
    @classmethod
    def _text(cls, text: str | None, info: ValidationInfo) -> str | None:
        if "template" not in info.data:  # the template itself is invalid: that is the error to report
            return text
        if info.data["template"] is None and text is None:
            raise ValueError("Field required (or give a template)")
        if info.data["template"] is not None and text is not None:
            raise ValueError("give either a template or title and body, not both")
        return _sendable(text) if text is not None else None

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any]) -> dict[str, Any]:
        # Depth first: it is measured without recursion, and bounds the recursion of what follows.
        if depth_of(data, stop_past=MAX_DATA_DEPTH) > MAX_DATA_DEPTH:
            raise ValueError(f"must nest at most {MAX_DATA_DEPTH} levels of objects and arrays")
        try:
            compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("must be JSON: NaN, Infinity and -Infinity are not JSON numbers") from None
        except TypeError as error:  # a value JSON has no type for (a model built in Python, not from a body)
            raise ValueError(f"must be JSON: {error}") from None
        text = _sendable(compact)
        if len(text.encode()) > MAX_DATA_BYTES:
            raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
        return data

    @field_validator("variables")
    @classmethod
    def _variables(cls, variables: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if variables is None:
            return None
        if info.data.get("template") is None:
            raise ValueError("variables go with a template")
        if depth_of(variables, stop_past=MAX_DATA_DEPTH) > MAX_DATA_DEPTH:
            raise ValueError(f"must nest at most {MAX_DATA_DEPTH} levels of objects and arrays")
        try:
            compact = json.dumps(variables, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("must be JSON: NaN, Infinity and -Infinity are not JSON numbers") from None
        except TypeError as error:
            raise ValueError(f"must be JSON: {error}") from None
        text = _sendable(compact)
        if len(text.encode()) > MAX_VARIABLES_BYTES:
            raise ValueError(f"must be at most {MAX_VARIABLES_BYTES} bytes as JSON")
        return variables

    @field_validator("send_at")
    @classmethod
    def _within_reach(cls, send_at: datetime | None) -> datetime | None:
        if send_at is not None and send_at - now() > timedelta(days=MAX_SCHEDULE_DAYS):
            raise ValueError(f"must be at most {MAX_SCHEDULE_DAYS} days ahead")
        return send_at.astimezone(UTC) if send_at is not None else None


class NotificationAccepted(BaseModel):
    notification_id: str
    status: Literal["accepted"] = "accepted"


class IntakeView(BaseModel):
    """The intake queues, one per priority, each read by its own fan-out."""

    high: QueueDepth
    normal: QueueDepth
    low: QueueDepth


class QueuesView(BaseModel):
    intake: IntakeView = Field(description="The intake queues (one per priority), read by fan-out.")
    high: QueueDepth = Field(description="The high-priority delivery queue.")
    normal: QueueDepth
    low: QueueDepth
    schedule: QueueDepth | None = Field(
        default=None,
        description=(
            "The schedule queue: scheduled notifications and deliveries held through quiet hours, waiting for"
            " their time (null where the deployment has none)."
        ),
    )
    feedback: QueueDepth | None = Field(
        default=None,
        description=(
            "The feedback queue: SES bounce and complaint events on their way to the feedback function, which marks"
            " those addresses' devices inactive (null where the deployment has none)."
        ),
    )


class ErrorField(BaseModel):
    field: str = Field(description="The field at fault: a body field (dotted), a path or query parameter, or a header.")
    message: str = Field(description="What is wrong, in words: what the field must be.")
    details: str | None = Field(default=None, description="More for a program: the regular expression not matched.")


class ErrorBody(BaseModel):
    """Every 4xx: Herald's own carry `errors`; API Gateway's (403, 413, 429) have only `message`."""

    message: str
    errors: list[ErrorField] = []
