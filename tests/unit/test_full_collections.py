"""The local stack's full garbage collections: due by Python's own rule, run while the most urgent lane is quiet or
at the latest after a while, never in between. A clock the tests move; the collections are the interpreter's."""

from __future__ import annotations

import gc

from herald_local.garbage import DUE_AFTER, MOST_SECONDS, OUT_OF_REACH, QUIET_SECONDS, FullCollections


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def young_collections(count: int = DUE_AFTER) -> None:
    for _ in range(count):
        gc.collect(1)  # each adds one to the oldest generation's count, as Python's own young collections do


def test_a_due_collection_waits_while_the_urgent_lane_is_busy_and_runs_once_it_is_quiet() -> None:
    # Given the urgent lane busy, and a collection due: young collections that kept many objects
    clock, quiet = Clock(), [0.0]
    gc.collect()
    collections = FullCollections(lambda: quiet[0], clock=clock)
    kept = [[n] for n in range(len(gc.get_objects(generation=2)))]  # as many again as lived through the last
    young_collections()

    # When it checks, Then none runs
    assert not collections.run_if_due()

    # When the lane has been quiet long enough, Then one runs
    quiet[0] = QUIET_SECONDS
    assert collections.run_if_due()
    assert collections.collections == 1 and len(kept) > 0


def test_under_steady_urgent_work_a_due_one_runs_at_the_latest_after_most_seconds() -> None:
    # Given the urgent lane never quiet
    clock = Clock()
    collections = FullCollections(lambda: 0.0, clock=clock)

    # When less than the longest gap has passed, Then none may run; once it has, one may
    clock.now += MOST_SECONDS - 1
    assert not collections.may_run()
    clock.now += 1
    assert collections.may_run()


def test_none_is_due_while_the_young_collections_kept_few_objects_however_quiet() -> None:
    # Given a collection just run, then young collections that kept little
    gc.collect()
    collections = FullCollections(lambda: 3600.0, clock=Clock())
    young_collections()

    # Then none is due: Python's own rule would not start one either
    assert not collections.due(gc.get_count()[2])


def test_none_is_due_before_enough_young_collections() -> None:
    collections = FullCollections(lambda: 3600.0, clock=Clock())
    assert not collections.due(DUE_AFTER - 1)


def test_starting_puts_pythons_own_full_collections_out_of_reach_and_stopping_puts_them_back() -> None:
    # Given Python's thresholds as they are
    before = gc.get_threshold()

    # When full collections are started, Then the oldest generation's threshold is out of reach
    collections = FullCollections(lambda: 0.0).start()
    try:
        assert gc.get_threshold() == (before[0], before[1], OUT_OF_REACH)
    finally:
        collections.stop()

    # When stopped, Then Python's own are back
    assert gc.get_threshold() == before


def test_two_running_at_once_put_pythons_thresholds_back_only_when_both_have_stopped() -> None:
    # Given two stacks' collections in one process, started one after the other
    before = gc.get_threshold()
    first = FullCollections(lambda: 0.0).start()
    second = FullCollections(lambda: 0.0).start()

    # When the first stops, Then Python's own full collections stay off for the second
    first.stop()
    assert gc.get_threshold()[2] == OUT_OF_REACH

    # When the second stops, Then Python's own are back as they were before either
    second.stop()
    assert gc.get_threshold() == before
