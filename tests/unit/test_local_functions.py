"""The local Lambda's containers: one per concurrent invocation, reused once free, capped, each with its
own handler module (Powertools' resolver included) and its own dependencies, hooked like the first."""

from __future__ import annotations

import copy
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from herald_local.faults import SimulatedCrash
from herald_local.functions import FunctionCrashed, LocalFunction
from herald_local.template import FunctionSpec
from tests.events import load_event

SPEC = FunctionSpec(name="GatedFunction", handler="tests.unit.gated_api.lambda_handler", timeout=10, environment={})
ENVIRONMENT = {"STAGE": "test"}


def echo_event(word: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("api_register_device"))
    event.update(
        httpMethod="GET",
        resource="/echo/{word}",
        path=f"/echo/{word}",
        pathParameters={"word": word},
        body=None,
    )
    event["requestContext"].update(httpMethod="GET", resourcePath="/echo/{word}", path=f"/test/echo/{word}")
    return event


def gated_by(gate: Any) -> Callable[[str, Any], Any]:
    """A dependency hook that puts `gate` in every container's dependencies."""

    def hook(function: str, dependencies: dict[str, Any]) -> dict[str, Any]:
        return {**dependencies, "gate": gate}

    return hook


def answer(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response
    body: dict[str, Any] = json.loads(response["body"])
    return body


def eventually(done: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("not done in time")
        time.sleep(0.01)


def test_concurrent_invocations_each_get_a_container_and_read_their_own_request() -> None:
    # Given a function whose route waits until four requests are inside it at once
    words = ["alpha", "bravo", "charlie", "delta"]
    function = LocalFunction(
        SPEC, ENVIRONMENT, hook=gated_by(threading.Barrier(len(words), timeout=10)), max_containers=4
    )

    # When four requests arrive together
    with ThreadPoolExecutor(max_workers=len(words)) as callers:
        answers = list(callers.map(lambda w: answer(function.invoke(echo_event(w))), words))

    # Then all four were handled at once, each in a container of its own...
    assert len(function.containers) == 4
    assert sorted(i.container for i in function.invocations) == [1, 2, 3, 4]
    # ...and each read its own request back from its resolver after the others had arrived
    assert [(a["word"], a["path"]) for a in answers] == [(w, f"/echo/{w}") for w in words]
    assert len({a["request_id"] for a in answers}) == 4
    # ...because each container runs its own copy of the module: its own resolver, not the imported one
    resolvers = {id(c.module.app) for c in function.containers}
    assert len(resolvers) == 4
    assert id(sys.modules["tests.unit.gated_api"].app) not in resolvers


def test_a_free_container_is_reused() -> None:
    # Given a function that has served one request
    function = LocalFunction(SPEC, ENVIRONMENT, max_containers=4)
    answer(function.invoke(echo_event("first")))

    # When more arrive one after another
    for word in ("second", "third"):
        answer(function.invoke(echo_event(word)))

    # Then the one warm container served them all
    assert len(function.containers) == 1
    assert [i.container for i in function.invocations] == [1, 1, 1]


def test_past_the_cap_an_invocation_waits_for_a_container() -> None:
    # Given a function capped at two containers, whose route holds until released
    release = threading.Event()
    function = LocalFunction(SPEC, ENVIRONMENT, hook=gated_by(release), max_containers=2)

    # When four requests arrive while the first ones hold their containers
    with ThreadPoolExecutor(max_workers=4) as callers:
        try:
            futures = [callers.submit(function.invoke, echo_event(f"w{n}")) for n in range(4)]
            # (two wait as soon as the second container begins to start, before it has started: wait for both)
            eventually(lambda: (function.waiting, len(function.containers)) == (2, 2), timeout=60)

            # Then two are handled and two wait: no third container is started
            assert (function.waiting, len(function.containers)) == (2, 2)
        finally:
            release.set()  # a failed check above fails the test, rather than leave the callers waiting forever
        answers = [answer(future.result(timeout=10)) for future in futures]

    # ...and once released, every request is answered by one of the two
    assert sorted(a["word"] for a in answers) == ["w0", "w1", "w2", "w3"]
    assert len(function.containers) == 2
    assert {i.container for i in function.invocations} == {1, 2}


def test_the_hook_wraps_every_containers_own_dependencies() -> None:
    # Given a hook that records what it wraps, and requests that need three containers at once
    wrapped: list[dict[str, Any]] = []
    barrier = threading.Barrier(3, timeout=10)

    def hook(function: str, dependencies: dict[str, Any]) -> dict[str, Any]:
        assert function == "GatedFunction"
        hooked = {**dependencies, "gate": barrier, "hooked": True}
        wrapped.append(hooked)
        return hooked

    function = LocalFunction(SPEC, ENVIRONMENT, hook=hook, max_containers=3)

    # When three requests are handled at once
    with ThreadPoolExecutor(max_workers=3) as callers:
        list(callers.map(lambda w: answer(function.invoke(echo_event(w))), ["a", "b", "c"]))

    # Then the hook wrapped each container's dependencies, built from the function's environment
    assert len(wrapped) == len(function.containers) == 3
    assert [c.dependencies for c in function.containers] == wrapped
    assert len({id(c.dependencies) for c in function.containers}) == 3
    assert all(d["environment"] == ENVIRONMENT and d["hooked"] for d in wrapped)
    # ...and the first container's are what a test reads through the function
    assert function.dependencies is wrapped[0]


def test_the_journal_records_every_containers_invocations_with_their_span() -> None:
    # Given a function, and two requests inside it at once
    function = LocalFunction(SPEC, ENVIRONMENT, hook=gated_by(threading.Barrier(2, timeout=10)), max_containers=2)

    # When both are handled
    with ThreadPoolExecutor(max_workers=2) as callers:
        list(callers.map(lambda w: function.invoke(echo_event(w)), ["x", "y"]))

    # Then one journal holds both, and their spans overlap
    first, second = sorted(function.invocations, key=lambda i: i.started)
    assert {first.container, second.container} == {1, 2}
    assert second.started < first.at
    assert all(i.error is None for i in function.invocations)


def test_a_container_whose_process_crashed_is_replaced() -> None:
    # Given a function whose first invocation's process dies mid-request
    class CrashOnce:
        crashed = False

        def wait(self) -> None:
            if not CrashOnce.crashed:
                CrashOnce.crashed = True
                raise SimulatedCrash("injected: the runtime exited")

    function = LocalFunction(SPEC, ENVIRONMENT, hook=gated_by(CrashOnce()), max_containers=4)

    # When it is invoked, crashes, and is invoked again
    with pytest.raises(FunctionCrashed):
        function.invoke(echo_event("first"))
    answer(function.invoke(echo_event("second")))

    # Then the crashed container is gone and a new one served the next request, as Lambda does
    assert [c.number for c in function.containers] == [2]
    assert [(i.container, i.crashed) for i in function.invocations] == [(1, True), (2, False)]


def test_a_function_needs_a_container() -> None:
    with pytest.raises(ValueError):
        LocalFunction(SPEC, ENVIRONMENT, max_containers=0)
