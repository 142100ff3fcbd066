"""One function run in this process against the running local stack: `sam local invoke` without a container.

As Lambda gives a function its container, this gives the handler its environment: the
function's variables from the stack file (resolved against the stack, as the template says), the
stack's AWS endpoints, and Powertools' settings, set before the handler's module is imported
(Powertools reads them at import). Its log lines and EMF go to `output`; its answer, or
Lambda's error payload, is returned. One function per process: a handler module, once imported,
keeps the settings it was imported with.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

from herald_local.stack_file import StackFile

# What the local stack's functions run with when the shell has no AWS credentials (moto takes any).
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class UnknownFunction(LookupError):
    pass


@dataclass(frozen=True)
class Invocation:
    function: str
    request_id: str
    duration_ms: float
    result: Any = None
    error: dict[str, Any] | None = None  # Lambda's error payload: errorMessage, errorType, stackTrace


def function_environment(stack: StackFile, function: str) -> dict[str, str]:
    """Everything the function's process gets: its variables over the stack's endpoints and region."""
    entry = stack.functions[function]
    return {
        **{name: value for name, value in LOCAL_CREDENTIALS.items() if not os.environ.get(name)},
        "AWS_DEFAULT_REGION": stack.region,
        **stack.endpoint_variables(),
        **entry.environment,
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    }


def run_function(
    stack: StackFile, function: str, event: Any, output: TextIO, log_level: str | None = None
) -> Invocation:
    if function not in stack.functions:
        raise UnknownFunction(f"no function {function}: the stack has {', '.join(sorted(stack.functions))}")
    entry = stack.functions[function]
    os.environ.update(function_environment(stack, function))
    if log_level:
        os.environ["POWERTOOLS_LOG_LEVEL"] = log_level
    # Imported only now, with the function's environment in place.
    from herald.observability import logger
    from herald_local.functions import LocalContext

    if isinstance(logger.registered_handler, logging.StreamHandler):
        logger.registered_handler.setStream(output)
    module_name, attribute = entry.handler.rsplit(".", 1)
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    dependencies = module.dependencies_from(entry.environment)
    if any(field.name == "metrics_output" for field in dataclasses.fields(dependencies)):
        dependencies = dataclasses.replace(dependencies, metrics_output=lambda line: print(line, file=output))
    context = LocalContext(function, entry.timeout)
    started = time.perf_counter()
    try:
        result = handler(event, context, dependencies)
    except Exception as error:
        return Invocation(
            function,
            context.aws_request_id,
            (time.perf_counter() - started) * 1000,
            error={
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": traceback.format_tb(error.__traceback__),
            },
        )
    return Invocation(function, context.aws_request_id, (time.perf_counter() - started) * 1000, result=result)
