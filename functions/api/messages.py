"""What the API says when a value breaks a rule: in words a caller can act on, the rule's regex only as details."""

from __future__ import annotations

from typing import Any

from herald.models.api import EMAIL_ADDRESS_PATTERN, PUSH_TOKEN_PATTERN
from herald.models.domain import E164_PATTERN, ID_PATTERN
from herald.models.idempotency import KEY_PATTERN
from herald.models.inbox import ITEM_ID_PATTERN
from herald.models.preferences import CATEGORY_PATTERN, CLOCK_PATTERN, LOCALE_PATTERN
from herald.models.templates import TEMPLATE_ID_PATTERN

# Every pattern a field of the API has (tests/unit/test_api_messages.py reads them off the OpenAPI document).
PATTERN_WORDS: dict[str, str] = {
    ID_PATTERN: "must be 1 to 128 characters, each a letter, a digit or one of . _ : @ + -",
    E164_PATTERN: "must be an E.164 phone number: + then 7 to 15 digits, the first not 0, e.g. +14155550100",
    EMAIL_ADDRESS_PATTERN: (
        "must be an email address as SES takes it, e.g. ada@example.com: ASCII only (an international domain in"
        " punycode), no spaces, quotes or brackets, dots only between characters"
    ),
    PUSH_TOKEN_PATTERN: "must be the device token as APNs or FCM gave it: printable ASCII, without spaces",
    KEY_PATTERN: "must be 1 to 255 printable ASCII characters, without spaces",
    CATEGORY_PATTERN: (
        "must be a category of 1 to 64 characters: lowercase letters, digits and . _ -, starting with a letter or"
        " a digit, e.g. order.shipped"
    ),
    LOCALE_PATTERN: "must be a BCP 47 language tag such as fr or fr-CA: a 2 or 3 letter language, then -subtags",
    CLOCK_PATTERN: "must be a time of day as HH:MM or HH:MM:SS on a 24-hour clock, e.g. 22:00",
    TEMPLATE_ID_PATTERN: "must be a template id of 1 to 64 characters, each a letter, a digit or one of . _ -",
    ITEM_ID_PATTERN: "must be an inbox item's item_id as the inbox listed it: 1 to 512 letters, digits, _ or -",
}
# pydantic's errors whose own words leave the caller guessing what to send instead.
TYPE_WORDS: dict[str, str] = {
    "timezone_aware": "must be an ISO 8601 date and time with its UTC offset, e.g. 2026-12-01T09:00:00+01:00",
    "datetime_from_date_parsing": "must be an ISO 8601 date and time with its UTC offset, e.g. 2026-12-01T09:00:00Z",
    "datetime_parsing": "must be an ISO 8601 date and time with its UTC offset, e.g. 2026-12-01T09:00:00Z",
}
UNKNOWN_PATTERN = "has a character or a form this field does not take (the pattern is in details)"


def pattern_error(pattern: str) -> tuple[str, str]:
    """The message and the details for a value that does not match `pattern`."""
    return PATTERN_WORDS.get(pattern, UNKNOWN_PATTERN), f"pattern: {pattern}"


def in_words(detail: dict[str, Any]) -> tuple[str, str | None]:
    """One pydantic error as the API answers it: the message, and details where a regex was not matched."""
    if detail.get("type") == "string_pattern_mismatch":
        return pattern_error(str(detail.get("ctx", {}).get("pattern", "")))
    if detail.get("type") in TYPE_WORDS:
        return TYPE_WORDS[str(detail["type"])], None
    return str(detail.get("msg", "")), None
