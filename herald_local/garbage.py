"""Python's full garbage collections, run while the most urgent lane is quiet rather than whenever they fall due.

A full collection stops every thread of the interpreter for as long as it takes to walk every object it holds.
In the local stack that is the emulator's whole state (moto's items and messages, half a million objects after a
flood of 3,000 deliveries: about 0.3 s here), so a high-priority notification whose fan-out met one took 0.3 s
more than its others (measured: one collection in a run of 30, the run's p99). On AWS each function's container
has a heap of its own, a few megabytes, and nothing of the kind happens.

So the process that holds moto's state leaves full collections to `FullCollections`: Python's own are switched
off (the oldest generation's threshold set out of reach; the young generations collect as before), and one is
due by Python's own rule (DUE_AFTER young collections since the last full one, and more objects kept since than
a quarter of those that lived through it); a due one runs once the most urgent lane has been quiet for
QUIET_SECONDS, or MOST_SECONDS after the last in any case. As many run as Python would have run, at other
moments. An idle stack makes no young collections, so it runs none. The last one of a process to stop puts Python's
thresholds back."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

# Young collections since the last full one before a full one is considered (Python's default third threshold)
DUE_AFTER = 10
QUIET_SECONDS = 1.0  # how long the most urgent lane has had nothing to do before a due collection runs
MOST_SECONDS = 30.0  # a due collection runs after this long at most, the lane quiet or not
CHECK_SECONDS = 0.2
OUT_OF_REACH = 1 << 30


class FullCollections:
    """Runs the process's full garbage collections (see the module). `quiet_for()`: seconds the most urgent lane
    has had nothing to do. One per process: `start()` switches Python's own full collections off."""

    def __init__(
        self,
        quiet_for: Callable[[], float],
        quiet: float = QUIET_SECONDS,
        most: float = MOST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._quiet_for = quiet_for
        self._quiet = quiet
        self._most = most
        self._clock = clock
        self._last = clock()
        self._survivors = len(gc.get_objects(generation=2))  # objects that lived through the last full collection
        self._looked_at = 0  # young collections counted when `due` last counted the objects kept
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self.collections = 0
        self.longest = 0.0  # seconds

    def due(self, young_collections: int) -> bool:
        """Whether a full collection is due by Python's rule, `young_collections` (gc.get_count()[2]) since the last
        full one. The objects are counted (a walk of the oldest generation's list) once per DUE_AFTER of them."""
        if young_collections - self._looked_at < DUE_AFTER:  # the count restarts at 0 with each collection
            return False
        self._looked_at = young_collections
        kept = len(gc.get_objects(generation=2)) - self._survivors
        return kept > self._survivors // 4

    def may_run(self) -> bool:
        """Whether a due collection may run now: the most urgent lane quiet, or the last one long ago."""
        return self._quiet_for() >= self._quiet or self._clock() - self._last >= self._most

    def run_if_due(self) -> bool:
        if not self.may_run() or not self.due(gc.get_count()[2]):
            return False
        started = time.perf_counter()
        gc.collect()
        self.longest = max(self.longest, time.perf_counter() - started)
        self._last = self._clock()
        self._survivors = len(gc.get_objects(generation=2))
        self._looked_at = 0
        self.collections += 1
        return True

    def start(self) -> FullCollections:
        with _RUNNING_LOCK:
            if not _RUNNING:  # the first in the process keeps Python's thresholds, the last puts them back
                _SAVED[:] = gc.get_threshold()
                young, middle, _ = _SAVED
                gc.set_threshold(young, middle, OUT_OF_REACH)
            _RUNNING.append(self)
        self._started = True
        self._thread = threading.Thread(target=self._run, name="full-collections", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            self.run_if_due()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self._started:
            return
        self._started = False
        with _RUNNING_LOCK:
            _RUNNING.remove(self)
            if not _RUNNING:
                gc.set_threshold(*_SAVED)


# Every FullCollections started in this process and not stopped (two stacks of one test process may overlap),
# and Python's thresholds as the first found them
_RUNNING: list[FullCollections] = []
_RUNNING_LOCK = threading.Lock()
_SAVED: list[int] = []
