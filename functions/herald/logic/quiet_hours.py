"""Quiet hours: whether an instant falls in a user's daily window, in their time zone, and when it ends.

The window is wall-clock time in the user's zone, so it follows daylight saving: 22:00-07:00 in
Europe/Paris is 21:00-06:00 UTC in winter and 20:00-05:00 UTC in summer. Two edges:
- an end that does not exist that day (02:30 on a spring-forward night) ends the window at the
  first instant after the gap (03:30 new time), as Python's zoneinfo resolves a skipped time with
  fold=0;
- an end that occurs twice (01:30 on a fall-back night) ends the window at its first occurrence,
  or at its second for an instant inside the repeated hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from herald.models.preferences import QuietHours


def inside(window: QuietHours, local: time) -> bool:
    start, end = window.start_time, window.end_time
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight


def window_end(window: QuietHours, time_zone: str, at: datetime) -> datetime | None:
    """The instant (UTC) the window that holds `at` ends; None when `at` is outside the window."""
    zone = ZoneInfo(time_zone)
    wall = at.astimezone(zone).replace(tzinfo=None)
    if not inside(window, wall.time()):
        return None
    end = datetime.combine(wall.date(), window.end_time)
    if end <= wall:
        end += timedelta(days=1)
    # Wall time back to an instant: a skipped wall time (DST gap) maps past the gap; a repeated one to its
    # first occurrence, or its second when `at` is already past the first (inside the repeated hour).
    at_utc = at.astimezone(UTC)
    for fold in (0, 1):
        instant = end.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant > at_utc:
            return instant
    return at_utc
