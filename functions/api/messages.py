"""What the API says when a value breaks a rule: in words a caller can act on, the rule's regex only as details."""

from __future__ import annotations

from typing import Any

from herald.models.api import EMAIL_ADDRESS_PATTERN, PUSH_TOKEN_PATTERN
from herald.models.domain import E164_PATTERN, ID_PATTERN
from herald.models.idempotency import KEY_PATTERN

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
}
UNKNOWN_PATTERN = "has a character or a form this field does not take (the pattern is in details)"


def pattern_error(pattern: str) -> tuple[str, str]:
    """The message and the details for a value that does not match `pattern`."""
    return PATTERN_WORDS.get(pattern, UNKNOWN_PATTERN), f"pattern: {pattern}"


def in_words(detail: dict[str, Any]) -> tuple[str, str | None]:
    """One pydantic error as the API answers it: the message, and details where a regex was not matched."""
    if detail.get("type") == "string_pattern_mismatch":
        return pattern_error(str(detail.get("ctx", {}).get("pattern", "")))
    return str(detail.get("msg", "")), None
