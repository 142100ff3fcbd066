"""Lambda, in-process: each function of the template runs in containers of its own, with its own environment."""

from __future__ import annotations

import importlib
import importlib.util
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from herald_local.faults import SimulatedCrash
from herald_local.template import FunctionSpec

# Lets a test or the fault injector wrap a function's dependencies (its providers, say).
DependencyHook = Callable[[str, Any], Any]
# Where a container's module gets its boto3 clients: `client(service, one_attempt=False)`, as
# herald.adapters.clients.client (a lane's functions get theirs through herald_local/precedence.py).
ClientSource = Callable[..., Any]

# Containers per function, at most: Lambda's concurrency, scaled to one laptop. A request past it
# waits for a container to come free, as a burst past reserved concurrency would be throttled.
MAX_CONTAINERS = 10


@dataclass
class LocalContext:
    """What Lambda hands a handler as its context."""

    function_name: str
    timeout: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    log_group_name: str = ""
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.started + self.timeout - time.monotonic()) * 1000), 0)


@dataclass(frozen=True)
class Invocation:
    function: str
    at: float  # when it ended (time.time())
    bodies: tuple[str, ...]  # the SQS records' bodies, if any
    failed: int  # records reported failed (or all of them, if the handler raised or crashed)
    error: str | None
    crashed: bool = False  # the process died (an injected SimulatedCrash): nothing was reported
    container: int = 0  # which of the function's containers ran it
    started: float = 0.0  # when it began (time.time())


class FunctionCrashed(Exception):
    """The invocation ended with its process dying: to the caller, a failed invocation (Runtime.ExitError)."""


@dataclass(frozen=True)
class Container:
    """One execution environment: its own copy of the handler module (module-level state such as
    Powertools' resolver included) and its own dependencies, built from the function's environment."""

    number: int
    module: ModuleType
    handler: Callable[..., Any]
    dependencies: Any


class LocalFunction:
    """A function of the template: invocations take a free container, or start one up to the cap.

    On AWS each concurrent invocation gets an execution environment of its own (a process with its
    own imports); here a container is a fresh execution of the handler's module in this process,
    with dependencies built the way the handler builds them (`dependencies_from(environment)`),
    wrapped by the hook. boto3 clients stay shared: they come from `herald.adapters.clients`, one per
    service for the process, and are thread-safe. One invocation journal serves all containers.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        environment: dict[str, str],
        hook: DependencyHook | None = None,
        max_containers: int = MAX_CONTAINERS,
        clients: ClientSource | None = None,
    ):
        if max_containers < 1:
            raise ValueError("a function needs at least one container")
        module_name, self._attribute = spec.handler.rsplit(".", 1)
        # The module as Python imports it: its imports cached, its classes registered under its name
        # (dataclasses and pydantic look names up there). Containers run copies of it, never this one.
        importlib.import_module(module_name)
        module_spec = importlib.util.find_spec(module_name)
        assert module_spec is not None and module_spec.loader is not None, module_name
        self._module_spec = module_spec
        self.spec = spec
        self.name = spec.name
        self.environment = environment
        self.max_containers = max_containers
        self._hook = hook
        self._clients = clients
        self._containers: list[Container] = []
        self._idle: list[Container] = []
        self._starting = 0
        self._started = 0  # containers started so far, to number them
        self._first: Container | None = None
        self._waiting = 0
        self._free = threading.Condition()
        self.invocations: deque[Invocation] = deque(maxlen=10_000)  # enough for tests and a dev session; bounded
        # One container from the start: a broken environment fails the stack's start, not a request.
        self._idle.append(self._start_container())

    @property
    def containers(self) -> tuple[Container, ...]:
        """The live containers (one whose process crashed is gone)."""
        with self._free:
            return tuple(self._containers)

    @property
    def waiting(self) -> int:
        """Invocations waiting for a container to come free (every one busy, the cap reached)."""
        with self._free:
            return self._waiting

    @property
    def dependencies(self) -> Any:
        """The first container's dependencies: what a test or a benchmark reads the stores through."""
        assert self._first is not None
        return self._first.dependencies

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._container() as container:
            return self._invoke_in(container, event)

    def _invoke_in(self, container: Container, event: dict[str, Any]) -> Any:
        context = LocalContext(self.name, self.spec.timeout)
        bodies = tuple(record.get("body", "") for record in event.get("Records", []))
        started = time.time()

        def journal(failed: int, error: str | None, crashed: bool = False) -> None:
            self.invocations.append(
                Invocation(self.name, time.time(), bodies, failed, error, crashed, container.number, started)
            )

        try:
            result = container.handler(event, context, container.dependencies)
        except Exception as error:
            journal(len(bodies), repr(error))
            raise
        except SimulatedCrash as crash:
            # What Lambda reports when the runtime exits mid-invocation: the whole batch failed.
            journal(len(bodies), repr(crash), crashed=True)
            raise FunctionCrashed(f"{self.name}: process exited: {crash}") from crash
        journal(len(result.get("batchItemFailures", [])) if isinstance(result, dict) else 0, None)
        return result

    @contextmanager
    def _container(self) -> Iterator[Container]:
        """A free container for one invocation: the warmest idle one, else a new one while under the
        cap, else the first to come free."""
        with self._free:
            while not self._idle and len(self._containers) + self._starting >= self.max_containers:
                self._waiting += 1
                try:
                    self._free.wait()
                finally:
                    self._waiting -= 1
            container = self._idle.pop() if self._idle else None
            if container is None:
                self._starting += 1
        if container is None:
            try:
                container = self._start_container()  # outside the lock: others may take idle ones meanwhile
            finally:
                with self._free:
                    self._starting -= 1
        crashed = False
        try:
            yield container
        except FunctionCrashed:
            crashed = True
            raise
        finally:
            with self._free:
                if crashed:  # Lambda replaces an environment whose runtime exited: the next gets a new one
                    self._containers.remove(container)
                else:
                    self._idle.append(container)
                self._free.notify()

    def _start_container(self) -> Container:
        module = importlib.util.module_from_spec(self._module_spec)
        assert self._module_spec.loader is not None
        self._module_spec.loader.exec_module(module)
        own_request_state(module)
        if self._clients is not None:
            take_clients_from(module, self._clients)
        dependencies = module.dependencies_from(self.environment)
        if self._hook:
            dependencies = self._hook(self.name, dependencies)
        with self._free:
            self._started += 1
            container = Container(self._started, module, getattr(module, self._attribute), dependencies)
            self._containers.append(container)
            if self._first is None:
                self._first = container
        return container


def take_clients_from(module: ModuleType, clients: ClientSource) -> None:
    """Points a container's module at `clients` for the boto3 clients its dependencies are built with.

    A handler module builds its dependencies with the `client` and `provider_client` it imported from
    herald.adapters.clients; the names are the container's own copy's, so only this container sees the
    change. Nothing under `functions/` knows of it.
    """
    names = vars(module)
    if "client" in names:
        names["client"] = clients
    if "provider_client" in names:
        names["provider_client"] = lambda service: clients(service, one_attempt=True)


def own_request_state(module: ModuleType) -> None:
    """Gives each Powertools resolver of a container's module the current request on itself.

    Powertools' event handler stores the request being resolved on its BaseRouter class
    (`BaseRouter.current_event`, `BaseRouter.lambda_context`): one slot per process, which is one per
    container on Lambda, but one for every container here. A resolver that holds its own copy reads
    that one instead (an instance attribute shadows the class's), so concurrent requests in different
    containers each see their own, as on Lambda. `app.context` is per resolver already.
    """
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    for value in list(vars(module).values()):
        if isinstance(value, ApiGatewayResolver):
            _resolve_with_own_state(value)


def _resolve_with_own_state(resolver: Any) -> None:
    resolve = resolver.resolve

    def resolve_in_container(event: dict[str, Any], context: Any) -> Any:
        resolver.current_event = resolver._to_proxy_event(event)
        resolver.lambda_context = context
        return resolve(event, context)

    resolver.resolve = resolve_in_container
