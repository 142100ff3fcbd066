"""Cold start: for each function, the median over fresh processes of importing its handler module and
of its first invocation on its sample event from events/, beside a bare `import boto3` measured the
same way in the same run; and the local stack's start, from spawning `python -m herald_local` to its
first answer.

`python -m bench.cold_start [--scale tiny|full]`. Budgets: every handler's import at most 2.0x the
bare boto3 import; and the foundation's: every handler import under 0.5 s, the local stack
answering in under 5 s (median of 3 starts).

Each sample is a new interpreter with the function's environment from template.yaml (as Lambda
would give it) and PYTHONPATH=functions (the zip's root), pointed at a throwaway moto server that
holds Herald's resources, so the first invocation does its real AWS calls. The interpreter is the
functions' runtime when `make bench` could build .venv-lambda (Python 3.12 with only what the zip
and the runtime hold), else this one; `--python` chooses another. The output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from bench.report import BenchError, Budget, Report, Scale, Table, main, progress

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
IMPORT_RATIO_BUDGET = 2.0
IMPORT_BUDGET_S = 0.5  # the foundation's: every handler module imports in under half a second
STACK_READY_BUDGET_S = 5.0
SAMPLES = {Scale.TINY: 1, Scale.FULL: 7}
STACK_STARTS = {Scale.TINY: 1, Scale.FULL: 3}
SAMPLE_TIMEOUT_S = 60
STACK_TIMEOUT_S = 30
# The sample event each handler's first invocation gets.
EVENT_OF = {
    "api.app": "api_send_notification.json",
    "fanout.app": "fanout.json",
    "deliver.app": "deliver.json",
    "feedback.app": "feedback.json",
    "dlq_redrive.app": "dlq_redrive.json",
}
BARE = "boto3"
LAMBDA_PYTHON = ROOT / ".venv-lambda" / "bin" / "python"

# Runs in the fresh interpreter: times the import, then the first invocation; prints one JSON line.
SAMPLE = r"""
import importlib, json, sys, time, uuid
started = time.perf_counter()
module = importlib.import_module(sys.argv[1])
imported = time.perf_counter() - started
result = {"import_s": imported}
if len(sys.argv) > 2:
    class Context:
        function_name = sys.argv[3]
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + sys.argv[3]
        memory_limit_in_mb = 256
        aws_request_id = str(uuid.uuid4())
        log_group_name = log_stream_name = "cold-start"
        def get_remaining_time_in_millis(self):
            return 30000
    with open(sys.argv[2]) as file:
        event = json.load(file)
    started = time.perf_counter()
    answer = module.lambda_handler(event, Context())
    result["first_invocation_s"] = time.perf_counter() - started
    result["answer"] = answer
print(json.dumps(result, default=str))
"""


def sample(
    python: str, module: str, environment: dict[str, str], event: Path | None, function: str
) -> dict[str, object]:
    arguments = [python, "-c", SAMPLE, module, *([str(event), function] if event else [])]
    done = subprocess.run(
        arguments, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=SAMPLE_TIMEOUT_S
    )
    if done.returncode != 0:
        raise BenchError(f"{module} failed in a fresh process:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def answered_well(module: str, answer: object) -> bool:
    """The first invocation did its job: a 2xx from the API, no failed record from a queue handler."""
    if not isinstance(answer, dict):
        return False
    if module == "api.app":
        return 200 <= int(answer.get("statusCode", 500)) < 300
    if module == "dlq_redrive.app":
        return "total" in answer
    return not answer.get("batchItemFailures")


def base_environment() -> dict[str, str]:
    """This environment without anything AWS or Powertools: each sample gets its function's."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    return {key: value for key, value in os.environ.items() if key in keep}


def interpreter_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def runtime_of_functions() -> str:
    """The functions' runtime in template.yaml ("python3.12")."""
    from herald_local.template import HeraldTemplate

    runtimes = {
        str(r["Properties"].get("Runtime"))
        for r in HeraldTemplate.load().resources.values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    return ", ".join(sorted(runtimes))


def function_samples(python: str, scale: Scale) -> tuple[dict[str, dict[str, list[float]]], dict[str, bool]]:
    """module -> {"import_s": [...], "first_invocation_s": [...]}, interleaved so that a busy moment
    hurts every module alike; and whether each module's first invocations all answered well."""
    from herald_local.stack import LocalStack, StackOptions

    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    progress("provisioning a throwaway moto server with Herald's resources")
    with LocalStack(StackOptions(api_port=0, log_level="WARNING")) as stack:
        for poller in stack.pollers:  # only the resources are wanted: nothing consumes the queues
            poller.stop()
        functions: dict[str, Any] = {}
        for function in stack.functions.values():
            module = function.spec.handler.rsplit(".", 1)[0]
            functions.setdefault(module, function)  # one deliver function stands for the three
        common = base_environment() | {
            "PYTHONPATH": str(ROOT / "functions"),
            "AWS_ENDPOINT_URL": str(stack.endpoint),
            "AWS_DEFAULT_REGION": os.environ["AWS_DEFAULT_REGION"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        seconds: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        well: dict[str, bool] = defaultdict(lambda: True)
        for round_ in range(1, SAMPLES[scale] + 1):
            progress(f"fresh processes, round {round_}/{SAMPLES[scale]}")
            seconds[BARE]["import_s"].append(float(str(sample(python, BARE, common, None, "")["import_s"])))
            for module, function in functions.items():
                environment = common | {key: str(value) for key, value in function.environment.items()}
                result = sample(python, module, environment, EVENTS / EVENT_OF[module], function.name)
                seconds[module]["import_s"].append(float(str(result["import_s"])))
                seconds[module]["first_invocation_s"].append(float(str(result["first_invocation_s"])))
                well[module] = well[module] and answered_well(module, result.get("answer"))
    return seconds, dict(well)


def stack_start_seconds() -> float:
    """Spawning `python -m herald_local` to the first 200 from GET /queues; stopped with SIGINT."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    state = tempfile.mkdtemp(prefix="herald-bench-state-")  # an empty state each start, never the developer's
    # A stack file of its own: never the checkout's, which a developer's running stack may own.
    environment["HERALD_STACK_FILE"] = str(Path(tempfile.mkdtemp(prefix="herald-bench-")) / "stack.json")
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "herald_local", "--port", "0", "--api-key", "bench", "--log-level", "WARNING"),
            *("--state-dir", state),
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = None
        deadline = started + STACK_TIMEOUT_S
        while url is None:
            try:
                line = lines.get(timeout=max(deadline - time.perf_counter(), 0.01))
            except queue.Empty:
                raise BenchError("herald_local printed no API URL in time") from None
            if match := re.search(r"API URL:\s+(\S+)", line):
                url = match.group(1)
        while time.perf_counter() < deadline:
            try:
                if requests.get(f"{url}/queues", headers={"x-api-key": "bench"}, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise BenchError(f"GET {url}/queues did not answer 200 in {STACK_TIMEOUT_S} s")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(state, ignore_errors=True)


def run(scale: Scale, python: str | None = None) -> Report:
    report = Report("cold_start", scale)
    python = python or (str(LAMBDA_PYTHON) if LAMBDA_PYTHON.exists() else sys.executable)
    version, runtime = interpreter_version(python), runtime_of_functions()
    progress(f"samples run on Python {version} ({python}); the functions' runtime: {runtime}")
    seconds, well = function_samples(python, scale)
    progress(f"local stack starts: {STACK_STARTS[scale]}")
    starts = [stack_start_seconds() for _ in range(STACK_STARTS[scale])]
    bare = statistics.median(seconds[BARE]["import_s"])
    rows = [(f"import {BARE} (bare)", f"{bare * 1000:.0f}", "1.00x", "", "")]
    figures: dict[str, dict[str, float | bool]] = {}
    for module, figures_of in seconds.items():
        if module == BARE:
            continue
        imported = statistics.median(figures_of["import_s"])
        first = statistics.median(figures_of["first_invocation_s"])
        figures[module] = {
            "import_ms": round(imported * 1000, 1),
            "import_ratio_to_boto3": round(imported / bare, 3),
            "first_invocation_ms": round(first * 1000, 1),
            "cold_total_ms": round((imported + first) * 1000, 1),
            "first_invocation_answered_well": well[module],
        }
        rows.append(
            (
                module,
                f"{imported * 1000:.0f}",
                f"{imported / bare:.2f}x",
                f"{first * 1000:.0f}",
                f"{(imported + first) * 1000:.0f}",
            )
        )
        report.budgets.append(Budget(f"{module} import vs bare boto3", imported / bare, IMPORT_RATIO_BUDGET))
    slowest = max(statistics.median(f["import_s"]) for module, f in seconds.items() if module != BARE)
    report.budgets.append(Budget("slowest handler import", slowest, IMPORT_BUDGET_S, unit=" s"))
    stack_ready = statistics.median(starts)
    report.budgets.append(Budget("local stack answering", stack_ready, STACK_READY_BUDGET_S, unit=" s"))
    report.tables.append(
        Table(
            f"Fresh processes, median of {SAMPLES[scale]} (ms)",
            ("module", "import", "vs boto3", "first invocation", "import + first"),
            rows,
        )
    )
    report.tables.append(
        Table(
            "Local stack: `python -m herald_local` spawned to its first 200",
            ("starts", "median s", "all s"),
            [(len(starts), f"{stack_ready:.2f}", ", ".join(f"{s:.2f}" for s in starts))],
        )
    )
    report.figures = {
        "python": version,
        "runtime": runtime,
        "samples": SAMPLES[scale],
        "bare_boto3_import_ms": round(bare * 1000, 1),
        "handlers": figures,
        "stack_ready_s": round(stack_ready, 3),
        "stack_starts_s": [round(s, 3) for s in starts],
    }
    report.headline += [
        f"handler import over bare `import boto3` (median of {SAMPLES[scale]} fresh Python {version} processes): "
        + ", ".join(f"{module} {f['import_ratio_to_boto3']:.2f}x" for module, f in figures.items()),
        "first invocation on its events/ sample: "
        + ", ".join(f"{module} {f['first_invocation_ms']:.0f} ms" for module, f in figures.items()),
        f"local stack answering {stack_ready:.2f} s after `python -m herald_local` is spawned "
        f"({stack_ready / STACK_READY_BUDGET_S:.2f}x its budget)",
    ]
    report.notes.append(
        f"Samples ran on Python {version}; the functions' runtime is {runtime}."
        + (
            ""
            if runtime == f"python{version.rsplit('.', 1)[0]}"
            else " Imports of pydantic models cost more on 3.11 than on 3.12 (runtime-checkable protocols)."
        )
    )
    report.notes.append(
        "First invocation: the handler on its events/ sample, its clients created on the way, against a moto "
        "server on this machine (its calls take about a millisecond; on AWS, tens)."
    )
    if not all(well.values()):
        report.notes.append(f"A first invocation did not answer as expected: {well}")
    return report


def interpreter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--python", help="the interpreter of the samples (default: .venv-lambda's, else this one)")


if __name__ == "__main__":
    sys.exit(main("cold_start", lambda a: run(a.scale, a.python), __doc__ or "", interpreter_option))
