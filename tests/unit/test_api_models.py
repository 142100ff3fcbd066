"""What the HTTP API accepts: device registrations and notification requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from herald.models.api import (
    DeviceRegistration,
    EmailRegistration,
    InAppRegistration,
    NotificationRequest,
    PushRegistration,
    SmsRegistration,
)
from herald.models.domain import MAX_BODY, MAX_DATA_BYTES, MAX_RECIPIENTS, MAX_TITLE, Channel, Platform, Priority

registration = TypeAdapter(DeviceRegistration)


def error_fields(error: ValidationError) -> set[str]:
    """The dotted locations of every problem, without the union's tag: {"address"}, {"title"}."""
    fields = set()
    for detail in error.errors():
        loc = [str(part) for part in detail["loc"]]
        if loc and loc[0] in {channel.value for channel in Channel}:
            loc = loc[1:]
        fields.add(".".join(loc))
    return fields


def a_request(**fields: Any) -> dict[str, Any]:
    return {"recipients": ["user-42"], "title": "Your order has shipped", "body": "It is on its way."} | fields


# ---------------------------------------------------------------- device registrations


@pytest.mark.parametrize(
    "address",
    ["ada@example.com", "ada.lovelace+herald@mail.example.co.uk", "a@b.io"],
)
def test_email_registration_accepts_a_plausible_address(address):
    # When an email device is registered with a well-formed address
    parsed = registration.validate_python({"channel": "email", "address": address})

    # Then it is an email registration of that address
    assert isinstance(parsed, EmailRegistration)
    assert parsed.address == address


@pytest.mark.parametrize(
    "address",
    [
        "ada.example.com",  # no @
        "ada@",  # no domain
        "ada@example",  # no dot in the domain
        "ada lovelace@example.com",  # space
        "ada@exa@mple.com",  # two @
        "a" * 65 + "@example.com",  # local part over 64
        "",
    ],
)
def test_email_registration_rejects_a_malformed_address(address):
    # When an email device is registered with a malformed address
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "email", "address": address})

    # Then the address is the problem
    assert error_fields(raised.value) == {"address"}


def test_email_registration_requires_an_address():
    # When
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "email"})

    # Then
    assert error_fields(raised.value) == {"address"}


@pytest.mark.parametrize("number", ["+14155550100", "+442071838750", "+1234567", "+123456789012345"])
def test_sms_registration_accepts_an_e164_number(number):
    # When
    parsed = registration.validate_python({"channel": "sms", "address": number})

    # Then
    assert isinstance(parsed, SmsRegistration)
    assert parsed.address == number


@pytest.mark.parametrize(
    "number",
    [
        "14155550100",  # no +
        "+04155550100",  # country code cannot start with 0
        "+1 415 555 0100",  # spaces
        "+1-415-555-0100",  # dashes
        "+123456",  # 6 digits: too short
        "+1234567890123456",  # 16 digits: too long
        "+1415555010a",
    ],
)
def test_sms_registration_rejects_a_number_that_is_not_e164(number):
    # When
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "sms", "address": number})

    # Then
    assert error_fields(raised.value) == {"address"}


@pytest.mark.parametrize("platform", list(Platform))
def test_push_registration_accepts_a_token_with_its_platform(platform):
    # When
    parsed = registration.validate_python({"channel": "push", "address": "f0e1d2c3b4a5", "platform": platform.value})

    # Then
    assert isinstance(parsed, PushRegistration)
    assert parsed.platform is platform


def test_push_registration_requires_a_platform():
    # When a push device is registered with a token but no platform
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "push", "address": "f0e1d2c3b4a5"})

    # Then the missing platform is the problem
    assert error_fields(raised.value) == {"platform"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "push", "address": "f0e1d2c3b4a5", "platform": "windows"}, "platform"),
        ({"channel": "push", "address": "", "platform": "fcm"}, "address"),
        ({"channel": "push", "platform": "fcm"}, "address"),
    ],
)
def test_push_registration_rejects_an_unknown_platform_or_empty_token(body, field):
    # When
    with pytest.raises(ValidationError) as raised:
        registration.validate_python(body)

    # Then
    assert error_fields(raised.value) == {field}


def test_in_app_registration_needs_nothing_but_its_channel():
    # When
    parsed = registration.validate_python({"channel": "in_app"})

    # Then
    assert isinstance(parsed, InAppRegistration)


def test_in_app_registration_rejects_an_address():
    # When an in_app device is registered with an address it cannot use
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "in_app", "address": "ada@example.com"})

    # Then the address is refused rather than silently dropped
    assert error_fields(raised.value) == {"address"}


def test_registration_rejects_an_unknown_field():
    # When
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "email", "address": "ada@example.com", "nickname": "work"})

    # Then
    assert error_fields(raised.value) == {"nickname"}


def test_registration_rejects_an_unknown_channel():
    # When
    with pytest.raises(ValidationError) as raised:
        registration.validate_python({"channel": "pigeon", "address": "loft 3"})

    # Then
    assert raised.value.errors()[0]["type"] == "union_tag_invalid"


# ---------------------------------------------------------------- notification requests


def test_notification_request_defaults_to_normal_priority_all_channels_and_no_data():
    # When a request gives only recipients, title and body
    request = NotificationRequest.model_validate(a_request())

    # Then it goes out at normal priority, to every channel, with no data
    assert request.priority is Priority.NORMAL
    assert request.channels is None
    assert request.data == {}


def test_notification_request_requires_at_least_one_recipient():
    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(recipients=[]))

    # Then
    assert error_fields(raised.value) == {"recipients"}


def test_notification_request_takes_up_to_the_recipient_limit():
    # Given
    recipients = [f"user-{n}" for n in range(MAX_RECIPIENTS)]

    # When
    request = NotificationRequest.model_validate(a_request(recipients=recipients))

    # Then
    assert request.recipients == recipients


def test_notification_request_rejects_one_recipient_over_the_limit():
    # Given
    recipients = [f"user-{n}" for n in range(MAX_RECIPIENTS + 1)]

    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(recipients=recipients))

    # Then
    assert error_fields(raised.value) == {"recipients"}


def test_notification_request_drops_repeated_recipients_keeping_their_order():
    # When a recipient is named twice
    request = NotificationRequest.model_validate(a_request(recipients=["user-43", "user-42", "user-43"]))

    # Then each user gets one notification, in the order first named
    assert request.recipients == ["user-43", "user-42"]


@pytest.mark.parametrize("user_id", ["user#42", "team/ops", "ada lovelace", "", "u" * 129])
def test_notification_request_rejects_a_recipient_that_is_not_an_id(user_id):
    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(recipients=["user-42", user_id]))

    # Then
    assert error_fields(raised.value) == {"recipients.1"}


@pytest.mark.parametrize(("field", "limit"), [("title", MAX_TITLE), ("body", MAX_BODY)])
def test_notification_request_takes_title_and_body_up_to_their_limit(field, limit):
    # When
    request = NotificationRequest.model_validate(a_request(**{field: "x" * limit}))

    # Then
    assert len(getattr(request, field)) == limit


@pytest.mark.parametrize(
    ("field", "length"), [("title", MAX_TITLE + 1), ("body", MAX_BODY + 1), ("title", 0), ("body", 0)]
)
def test_notification_request_rejects_title_or_body_outside_their_limits(field, length):
    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(**{field: "x" * length}))

    # Then
    assert error_fields(raised.value) == {field}


def test_notification_request_takes_data_of_exactly_the_size_limit():
    # Given data whose compact JSON is exactly the limit: {"k":"xxx..."} is 8 bytes plus the value
    data = {"k": "x" * (MAX_DATA_BYTES - 8)}
    assert len(json.dumps(data, separators=(",", ":"))) == MAX_DATA_BYTES

    # When it is sent
    request = NotificationRequest.model_validate(a_request(data=data))

    # Then it is kept as given
    assert request.data == data


def test_notification_request_rejects_data_one_byte_over_the_limit():
    # Given data one byte over the limit
    data = {"k": "x" * (MAX_DATA_BYTES - 7)}

    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(data=data))

    # Then
    assert error_fields(raised.value) == {"data"}


def test_notification_request_keeps_only_the_channels_asked_for():
    # When
    request = NotificationRequest.model_validate(a_request(channels=["push", "in_app"]))

    # Then
    assert request.channels == [Channel.PUSH, Channel.IN_APP]


@pytest.mark.parametrize("channels", [["pigeon"], ["email", "fax"], []])
def test_notification_request_rejects_an_unknown_or_empty_channel_list(channels):
    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(channels=channels))

    # Then
    assert {field.split(".")[0] for field in error_fields(raised.value)} == {"channels"}


def test_notification_request_rejects_an_unknown_priority():
    # When
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(priority="urgent"))

    # Then
    assert error_fields(raised.value) == {"priority"}


def test_notification_request_rejects_an_unknown_field():
    # When a caller misspells a field
    with pytest.raises(ValidationError) as raised:
        NotificationRequest.model_validate(a_request(recipient="user-42"))

    # Then the request is refused instead of the field being ignored
    assert error_fields(raised.value) == {"recipient"}
