"""A notification's overall status, derived from whether it fanned out and its deliveries' counts per status."""

from __future__ import annotations

from collections import Counter

import pytest

from herald.models.domain import DeliveryState, NotificationState
from herald.models.status import overall_state

S = DeliveryState

CASES = [
    # (fanned out, delivery states, overall state)
    (False, [], NotificationState.ACCEPTED),
    (True, [], NotificationState.NO_DEVICES),
    (True, [S.QUEUED, S.QUEUED], NotificationState.IN_PROGRESS),
    (True, [S.SENT, S.RETRYING], NotificationState.IN_PROGRESS),
    (True, [S.SENT, S.FAILED, S.QUEUED], NotificationState.IN_PROGRESS),
    (False, [S.SENT, S.SENT], NotificationState.IN_PROGRESS),  # fan-out still running: more may come
    (True, [S.SENT], NotificationState.DELIVERED),
    (True, [S.SENT, S.SENT, S.SENT], NotificationState.DELIVERED),
    (True, [S.SENT, S.FAILED], NotificationState.PARTIALLY_DELIVERED),
    (True, [S.FAILED], NotificationState.FAILED),
    # A dead letter waits for a redrive that may still deliver it: never read as failed
    (True, [S.DEAD_LETTERED], NotificationState.DEAD_LETTERED),
    (True, [S.DEAD_LETTERED, S.SENT], NotificationState.DEAD_LETTERED),
    (True, [S.FAILED, S.DEAD_LETTERED], NotificationState.DEAD_LETTERED),
    (True, [S.DEAD_LETTERED, S.RETRYING], NotificationState.IN_PROGRESS),
]


@pytest.mark.parametrize(("fanned_out", "states", "expected"), CASES)
def test_overall_state_follows_from_the_deliveries(fanned_out, states, expected):
    # Given a notification's fan-out flag and its deliveries' counts per state
    counts = dict(Counter(state.value for state in states))

    # When its overall state is derived
    state = overall_state(fanned_out, counts)

    # Then it is the one the table says
    assert state is expected


def test_every_notification_state_is_reachable():
    # Given the table above
    reached = {expected for _, _, expected in CASES}

    # Then it covers every state the API can answer
    assert reached == set(NotificationState)
