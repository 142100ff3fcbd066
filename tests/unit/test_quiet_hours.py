"""Quiet hours: a daily window in the user's time zone, across midnight and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.logic.quiet_hours import window_end
from herald.models.preferences import QuietHours

NIGHT = QuietHours(start="22:00", end="07:00")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "zone", "at", "expected"),
    [
        # A window across midnight, Paris in winter (UTC+1): 22:00-07:00 local is 21:00-06:00 UTC
        (NIGHT, "Europe/Paris", utc(2026, 1, 10, 20, 59), None),  # 21:59 local: not yet
        (NIGHT, "Europe/Paris", utc(2026, 1, 10, 21, 0), utc(2026, 1, 11, 6, 0)),  # 22:00: starts, inclusive
        (NIGHT, "Europe/Paris", utc(2026, 1, 11, 2, 0), utc(2026, 1, 11, 6, 0)),  # 03:00: after midnight
        (NIGHT, "Europe/Paris", utc(2026, 1, 11, 6, 0), None),  # 07:00: the end is outside
        (NIGHT, "Europe/Paris", utc(2026, 1, 10, 12, 0), None),  # noon
        # The same window in summer (UTC+2) moves an hour in UTC
        (NIGHT, "Europe/Paris", utc(2026, 7, 10, 23, 0), utc(2026, 7, 11, 5, 0)),
        # A window within one day
        (QuietHours(start="12:00", end="14:00"), "Asia/Tokyo", utc(2026, 5, 1, 3, 30), utc(2026, 5, 1, 5, 0)),
        (QuietHours(start="12:00", end="14:00"), "Asia/Tokyo", utc(2026, 5, 1, 5, 0), None),
        # Seconds count
        (QuietHours(start="10:00:00", end="10:00:30"), "UTC", utc(2026, 5, 1, 10, 0, 10), utc(2026, 5, 1, 10, 0, 30)),
        # Spring forward (New York, 2026-03-08 02:00 -> 03:00): a night that is an hour shorter in UTC
        (NIGHT, "America/New_York", utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 11, 0)),  # 23:00 EST -> 07:00 EDT
        # ...and an end inside the gap (02:30 does not exist that night) ends it right after the gap, 03:30 EDT
        (QuietHours(start="22:00", end="02:30"), "America/New_York", utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 7, 30)),
        # Fall back (New York, 2026-11-01 02:00 -> 01:00): a night an hour longer in UTC
        (NIGHT, "America/New_York", utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 12, 0)),  # 23:00 EDT -> 07:00 EST
        # ...and an end that happens twice (01:30) ends it at its first occurrence (EDT)
        (QuietHours(start="23:00", end="01:30"), "America/New_York", utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 5, 30)),
        # A window that starts in the repeated hour: the second 01:15 is inside too
        (QuietHours(start="01:00", end="01:45"), "America/New_York", utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 45)),
    ],
)
def test_window_end_says_when_a_delivery_may_go(window, zone, at, expected):
    # Given a user's window and zone, When an instant is checked against it
    end = window_end(window, zone, at)

    # Then it is outside (None) or ends at the instant expected
    assert end == expected


def test_the_end_of_a_window_is_never_before_the_instant_asked_about():
    # Given every minute of a fall-back night in a window that ends in the repeated hour
    window = QuietHours(start="00:30", end="01:30")
    for minute in range(0, 6 * 60):
        at = utc(2026, 11, 1, 3, 0).replace(minute=0) + (utc(2026, 1, 1, 0, minute % 60) - utc(2026, 1, 1, 0, 0))
        at = at.replace(hour=3 + minute // 60)
        # When its end is computed
        end = window_end(window, "America/New_York", at)
        # Then a delivery never goes back in time
        assert end is None or end >= at
