"""Tallies: what one deliver invocation changed in a broadcast's delivery statuses, counted per fan-out page.

A broadcast's status cannot be read from its million delivery items, and one more write per
delivery would double the cost of recording it. Instead each deliver invocation adds up the
status changes it made to the deliveries of each page (a delivery of a paged notification carries
its page) and writes them once, in one tally item per page it touched. The reader sums the tallies.

The claim marks each delivery it changes with the invocation's id and deadline; an invocation that
dies before writing its tally leaves those marks, and whoever claims such a delivery next, once
that deadline has passed and no tally of that invocation exists, counts the lost change in its own
tally as "recovered" under a key of the dead invocation and the delivery, which the reader counts
once however many invocations recovered it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from herald.models.domain import DeliveryJob, DeliveryState
from herald.models.status import Transition, now


@dataclass
class PageTally:
    notification_id: str
    page: str
    counts: Counter[str] = field(default_factory=Counter)
    recovered: dict[str, dict[str, int]] = field(default_factory=dict)  # "<invocation>|<delivery>" -> changes
    message_ids: set[str] = field(default_factory=set)  # the records whose changes this tally holds


class TallySheet:
    """One invocation's tallies, filled by its concurrent sends and written when its batch is done."""

    def __init__(self, invocation: str):
        self.invocation = invocation
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, str], PageTally] = {}

    def counts_for(self, job: DeliveryJob) -> bool:
        return job.page is not None

    def count(
        self, job: DeliveryJob, from_state: DeliveryState | None, to_state: DeliveryState | None, message_id: str = ""
    ) -> None:
        """This invocation moved the delivery from one status to another (None: not tallied, or sending)."""
        if job.page is None:
            return
        changes = Transition(self.invocation, now(), from_state, to_state).deltas()
        with self._lock:
            tally = self._page(job)
            tally.counts.update(changes)
            if message_id:
                tally.message_ids.add(message_id)

    def recover(self, job: DeliveryJob, lost: Transition, message_id: str = "") -> None:
        """Another invocation changed the delivery and died before writing its tally: count it here."""
        if job.page is None:
            return
        with self._lock:
            tally = self._page(job)
            tally.recovered[f"{lost.by}|{job.delivery_id}"] = lost.deltas()
            if message_id:
                tally.message_ids.add(message_id)

    def tallies(self) -> list[PageTally]:
        with self._lock:
            return list(self._pages.values())

    def _page(self, job: DeliveryJob) -> PageTally:
        assert job.page is not None
        key = (job.notification_id, job.page)
        if key not in self._pages:
            self._pages[key] = PageTally(job.notification_id, job.page)
        return self._pages[key]
