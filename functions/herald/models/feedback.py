"""What SES says about an email after it was sent: a bounce or a complaint, as its event publishing writes it.

Only the fields Herald reads; SES sends more. Configuration-set events name the kind in
`eventType`, identity notifications in `notificationType`: both are read.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# AWS (and LocalStack) publish this to the topic when the event destination is created: not an event.
SES_TOPIC_CHECK = "Successfully validated SNS topic for Amazon SES event publishing."


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Recipient(_Lenient):
    email_address: str = Field(alias="emailAddress")
    diagnostic_code: str | None = Field(default=None, alias="diagnosticCode")


class Bounce(_Lenient):
    bounce_type: str = Field(alias="bounceType")  # Permanent, Transient or Undetermined
    bounce_sub_type: str = Field(default="", alias="bounceSubType")
    bounced_recipients: list[Recipient] = Field(alias="bouncedRecipients")


class Complaint(_Lenient):
    complained_recipients: list[Recipient] = Field(alias="complainedRecipients")
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType")


class Mail(_Lenient):
    message_id: str = Field(default="", alias="messageId")
    destination: list[str] = []


class EmailFeedback(_Lenient):
    kind: str = Field(alias="eventType")
    mail: Mail = Field(default_factory=Mail)
    bounce: Bounce | None = None
    complaint: Complaint | None = None

    @model_validator(mode="before")
    @classmethod
    def _either_kind(cls, value: object) -> object:
        if isinstance(value, dict) and "eventType" not in value and "notificationType" in value:
            return {**value, "eventType": value["notificationType"]}
        return value

    @model_validator(mode="after")
    def _details(self) -> EmailFeedback:
        if self.kind == "Bounce" and self.bounce is None:
            raise ValueError("a Bounce event must carry `bounce`")
        if self.kind == "Complaint" and self.complaint is None:
            raise ValueError("a Complaint event must carry `complaint`")
        return self


class TopicCheck(BaseModel):
    """SES's message confirming it can publish to the topic: nothing to do."""

    kind: Literal["topic_check"] = "topic_check"


def parse_feedback(body: str) -> EmailFeedback | TopicCheck:
    """A feedback queue message: SES's event as the topic delivered it (raw, or inside an SNS envelope).

    Raises ValueError (pydantic's ValidationError is one) for anything else, which the consumer
    dead-letters with the reason.
    """
    if body.strip() == SES_TOPIC_CHECK:
        return TopicCheck()
    document = json.loads(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        return parse_feedback(str(document["Message"]))  # a subscription without raw delivery
    return EmailFeedback.model_validate(document)
