"""Lambda, in-process: one container per function of the template, invoked with its own environment."""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herald_local.faults import SimulatedCrash
from herald_local.template import FunctionSpec

# Lets a test or the fault injector wrap a function's dependencies (its providers, say).
DependencyHook = Callable[[str, Any], Any]


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
    at: float
    bodies: tuple[str, ...]  # the SQS records' bodies, if any
    failed: int  # records reported failed (or all of them, if the handler raised or crashed)
    error: str | None
    crashed: bool = False  # the process died (an injected SimulatedCrash): nothing was reported


class FunctionCrashed(Exception):
    """The invocation ended with its process dying: to the caller, a failed invocation (Runtime.ExitError)."""


class LocalFunction:
    def __init__(self, spec: FunctionSpec, environment: dict[str, str], hook: DependencyHook | None = None):
        module_name, attribute = spec.handler.rsplit(".", 1)
        module = importlib.import_module(module_name)
        self.spec = spec
        self.name = spec.name
        self.environment = environment
        self._handler = getattr(module, attribute)
        dependencies = module.dependencies_from(environment)
        self.dependencies = hook(spec.name, dependencies) if hook else dependencies
        # Powertools' API resolver keeps the current request on the app: one request at a time,
        # as in one Lambda container. SQS functions get one container per concurrent batch.
        self._serial = threading.Lock() if spec.handler.startswith("api.") else None
        self.invocations: deque[Invocation] = deque(maxlen=10_000)  # enough for tests and a dev session; bounded

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LocalContext(self.name, self.spec.timeout)
        bodies = tuple(record.get("body", "") for record in event.get("Records", []))
        try:
            if self._serial:
                with self._serial:
                    result = self._handler(event, context, self.dependencies)
            else:
                result = self._handler(event, context, self.dependencies)
        except Exception as error:
            self.invocations.append(Invocation(self.name, time.time(), bodies, len(bodies), repr(error)))
            raise
        except SimulatedCrash as crash:
            # What Lambda reports when the runtime exits mid-invocation: the whole batch failed.
            self.invocations.append(Invocation(self.name, time.time(), bodies, len(bodies), repr(crash), crashed=True))
            raise FunctionCrashed(f"{self.name}: process exited: {crash}") from crash
        failed = len(result.get("batchItemFailures", [])) if isinstance(result, dict) else 0
        self.invocations.append(Invocation(self.name, time.time(), bodies, failed, None))
        return result
