"""Measures Herald's three performance budgets and prints a table, then one JSON line.

1. Stack start: `python -m herald_local` is answering GET /queues in under 5 s (median of 3 starts).
2. Latency: one high-priority notification to one in-app device is `sent` within 1 s of its 202
   (every one of 20, on the local stack); normal priority is printed alongside, for information only.
3. Import cost: each handler module imports in under 0.5 s (median of 5 fresh processes), with its
   ratio to a bare `import boto3` printed for information.

Run it with `make bench`. It is a benchmark, not a test: nothing here is collected by pytest.
Exit status: 0 when every budget holds, 1 when one does not, 2 when a measurement could not be made.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench"

STACK_STARTS = 3
STACK_READY_BUDGET_S = 5.0
STACK_START_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0

NOTIFICATIONS = 20
SENT_BUDGET_S = 1.0
SENT_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.01
BUDGETED_PRIORITY = "high"
# Normal priority's queue waits up to 1 s to fill a batch (template.yaml): printed, never judged.
INFORMATIONAL_PRIORITIES = ("normal",)
PRIORITIES = (BUDGETED_PRIORITY, *INFORMATIONAL_PRIORITIES)

IMPORT_RUNS = 5
IMPORT_BUDGET_S = 0.5
IMPORT_RATIO_BUDGET = 2.0  # a later issue's budget: handler import <= 2.0x bare boto3
IMPORT_TIMEOUT_S = 30.0
HANDLERS = ("api.app", "fanout.app", "deliver.app", "dlq_redrive.app")
IMPORT_ENVIRONMENT = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "herald"}
TIMED_IMPORT = (
    "import importlib, sys, time\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(time.perf_counter() - started)\n"
)


class BenchError(Exception):
    """A measurement could not be made (as opposed to a budget not being met)."""


def progress(message: str) -> None:
    """Progress goes to stderr: stdout holds only the table and the JSON line."""
    print(message, file=sys.stderr, flush=True)


def child_environment(**extra: str) -> dict[str, str]:
    """This environment, importing from functions/ as Lambda does, and never pointed at a real AWS endpoint."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    environment.update(extra)
    return environment


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


# --- Budget 1: the local stack is ready in under 5 s -------------------------------------------------


@dataclass
class StackStart:
    ready_s: float  # spawn to the first 200 from GET /queues
    self_reported_s: float  # the stack's own "ready in X s"
    clean_shutdown: bool  # exited 0 within 10 s of SIGINT


class StackProcess:
    """`python -m herald_local` as a child process whose output is read line by line, with deadlines."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "herald_local", "--port", "0", "--api-key", API_KEY],
            cwd=ROOT,
            env=child_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C meant for the bench is handled by the bench, then by stop()
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, deadline: float) -> re.Match[str]:
        while (remaining := deadline - time.perf_counter()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.output.append(line)
            if match := re.search(pattern, line):
                return match
        tail = "".join(self.output[-20:])
        raise BenchError(f"herald_local printed no {pattern!r} in {STACK_START_TIMEOUT_S:g} s:\n{tail}")

    def stop(self) -> bool:
        """SIGINT, as Ctrl-C would; True when it exits 0 in time. Killed otherwise."""
        if self.process.poll() is not None:
            return False
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> StackProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def wait_until_answering(url: str, deadline: float) -> None:
    """Polls GET /queues with the key until it answers 200."""
    with requests.Session() as http:
        http.headers["x-api-key"] = API_KEY
        while time.perf_counter() < deadline:
            try:
                if http.get(f"{url}/queues", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(POLL_INTERVAL_S)
    raise BenchError(f"GET {url}/queues did not answer 200 in {STACK_START_TIMEOUT_S:g} s")


def start_stack_once() -> StackStart:
    with StackProcess() as stack:
        deadline = stack.started + STACK_START_TIMEOUT_S
        self_reported = float(stack.wait_for(r"ready in ([0-9.]+) s", deadline).group(1))
        url = stack.wait_for(r"API URL:\s+(\S+)", deadline).group(1)
        wait_until_answering(url, deadline)
        ready = time.perf_counter() - stack.started
        return StackStart(ready, self_reported, stack.stop())


def measure_stack_start() -> dict[str, Any]:
    starts = []
    for run in range(1, STACK_STARTS + 1):
        progress(f"stack start {run}/{STACK_STARTS}")
        starts.append(start_stack_once())
    ready = statistics.median(s.ready_s for s in starts)
    return {
        "runs": STACK_STARTS,
        "ready_s": [round(s.ready_s, 3) for s in starts],
        "ready_median_s": round(ready, 3),
        "self_reported_s": [s.self_reported_s for s in starts],
        "self_reported_median_s": statistics.median(s.self_reported_s for s in starts),
        "clean_shutdown": all(s.clean_shutdown for s in starts),
        "budget_s": STACK_READY_BUDGET_S,
        "pass": ready < STACK_READY_BUDGET_S,
    }


# --- Budget 2: one notification is `sent` within 1 s of its 202 --------------------------------------


class HeraldClient:
    """The local stack's API, as a backend calls it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers["x-api-key"] = API_KEY

    def register_in_app_device(self, user: str) -> None:
        response = self.http.put(f"{self.url}/users/{user}/devices/web", json={"channel": "in_app"}, timeout=10)
        if response.status_code != 200:
            raise BenchError(f"registering a device answered {response.status_code}: {response.text}")

    def send(self, user: str, priority: str) -> str:
        body = {"recipients": [user], "title": "Bench", "body": "budget", "priority": priority}
        response = self.http.post(f"{self.url}/notifications", json=body, timeout=10)
        if response.status_code != 202:
            raise BenchError(f"sending answered {response.status_code}: {response.text}")
        notification_id: str = response.json()["notification_id"]
        return notification_id

    def is_sent(self, notification_id: str) -> bool:
        response = self.http.get(f"{self.url}/notifications/{notification_id}", timeout=10)
        deliveries = response.json().get("deliveries", []) if response.status_code == 200 else []
        return any(delivery["status"] == "sent" for delivery in deliveries)


def seconds_to_sent(herald: HeraldClient, user: str, priority: str) -> float:
    """From receiving the 202 to the first GET that shows the delivery sent."""
    notification_id = herald.send(user, priority)
    accepted = time.perf_counter()
    while (elapsed := time.perf_counter() - accepted) < SENT_TIMEOUT_S:
        if herald.is_sent(notification_id):
            return time.perf_counter() - accepted
        time.sleep(POLL_INTERVAL_S)
    raise BenchError(f"{priority} notification {notification_id} not sent after {elapsed:.1f} s")


def latency_row(herald: HeraldClient, user: str, priority: str) -> dict[str, Any]:
    progress(f"{NOTIFICATIONS} {priority}-priority notifications")
    seconds = [seconds_to_sent(herald, user, priority) for _ in range(NOTIFICATIONS)]
    return {
        "n": NOTIFICATIONS,
        "median_s": round(statistics.median(seconds), 3),
        "p90_s": round(p90(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def measure_notification_latency() -> dict[str, Any]:
    # Imported here: the stack's dependencies (moto, the handlers) load only when this budget runs.
    from herald_local.stack import LocalStack, StackOptions

    # The bench measures the emulated stack: a developer's endpoint variable must not redirect it.
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    progress("starting the local stack in this process")
    with LocalStack(StackOptions(api_port=0, api_key=API_KEY, log_level="WARNING")) as stack:
        herald = HeraldClient(stack.api_url)
        user = f"bench-{uuid.uuid4().hex[:8]}"
        herald.register_in_app_device(user)
        rows = {priority: latency_row(herald, user, priority) for priority in PRIORITIES}
    return {
        **rows,
        "budget_s": SENT_BUDGET_S,
        "budget_applies_to": BUDGETED_PRIORITY,
        "pass": rows[BUDGETED_PRIORITY]["max_s"] < SENT_BUDGET_S,
    }


# --- Budget 3: each handler module imports in under 0.5 s --------------------------------------------


def timed_import(module: str) -> float:
    """Seconds to import `module` in a fresh interpreter, measured inside it."""
    result = subprocess.run(
        [sys.executable, "-c", TIMED_IMPORT, module],
        cwd=ROOT,
        env=child_environment(**IMPORT_ENVIRONMENT),
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise BenchError(f"importing {module} failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def measure_handler_imports() -> dict[str, Any]:
    modules = ("boto3", *HANDLERS)
    seconds: dict[str, list[float]] = {module: [] for module in modules}
    for run in range(1, IMPORT_RUNS + 1):
        progress(f"imports {run}/{IMPORT_RUNS}")
        for module in modules:  # interleaved, so a busy moment hurts every module alike
            seconds[module].append(timed_import(module))
    medians = {module: statistics.median(values) for module, values in seconds.items()}
    boto3 = medians["boto3"]
    handlers = {
        module: {"median_s": round(medians[module], 3), "ratio_to_boto3": round(medians[module] / boto3, 2)}
        for module in HANDLERS
    }
    return {
        "runs": IMPORT_RUNS,
        "boto3_median_s": round(boto3, 3),
        "handlers": handlers,
        "budget_s": IMPORT_BUDGET_S,
        "pass": all(medians[module] < IMPORT_BUDGET_S for module in HANDLERS),
        "ratio_budget": IMPORT_RATIO_BUDGET,
        "ratio_informational": True,
        "ratio_within": all(h["ratio_to_boto3"] <= IMPORT_RATIO_BUDGET for h in handlers.values()),
    }


# --- Report --------------------------------------------------------------------------------------------


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(budget, figure, value, verdict) rows, in the order a reader checks them."""
    start, latency, imports = results["stack_start"], results["notification_latency"], results["handler_import"]
    rows = [
        (
            f"1. Stack ready < {start['budget_s']:g} s",
            f"spawn to GET /queues 200, median of {start['runs']}",
            f"{start['ready_median_s']:.2f} s",
            verdict(start["pass"]),
        ),
        ("", "self-reported 'ready in', median", f"{start['self_reported_median_s']:.2f} s", ""),
        ("", "exits 0 within 10 s of SIGINT", "yes" if start["clean_shutdown"] else "NO", ""),
    ]
    for priority in PRIORITIES:
        row = latency[priority]
        budgeted = priority == BUDGETED_PRIORITY
        rows.append(
            (
                f"2. Sent < {latency['budget_s']:g} s after 202" if budgeted else "",
                f"{priority}: median / p90 / max of {row['n']}" + ("" if budgeted else " (info: 1 s batch window)"),
                f"{row['median_s']:.3f} / {row['p90_s']:.3f} / {row['max_s']:.3f} s",
                verdict(latency["pass"]) if budgeted else "info",
            )
        )
    rows.append(
        (
            f"3. Handler import < {imports['budget_s']:g} s",
            f"bare boto3, median of {imports['runs']}",
            f"{imports['boto3_median_s']:.3f} s",
            verdict(imports["pass"]),
        )
    )
    for module, figures in imports["handlers"].items():
        ratio = figures["ratio_to_boto3"]
        within = "<=" if ratio <= imports["ratio_budget"] else ">"
        rows.append(
            (
                "",
                f"{module} (info: {ratio:.2f}x boto3 {within} {imports['ratio_budget']:g}x)",
                f"{figures['median_s']:.3f} s",
                "",
            )
        )
    return rows


def print_table(results: dict[str, Any]) -> None:
    rows = [("Budget", "Figure", "Value", "Result"), *table_rows(results)]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(f"Budgets: {'all hold' if results['pass'] else 'NOT all hold'}.")


def main() -> int:
    # A shell starts background jobs with SIGINT ignored, and children inherit that: the stack would then
    # ignore the SIGINT that stops it. A handler of our own is reset to the default in every child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    try:
        results: dict[str, Any] = {
            "stack_start": measure_stack_start(),
            "notification_latency": measure_notification_latency(),
            "handler_import": measure_handler_imports(),
        }
    except BenchError as error:
        progress(f"bench: {error}")
        return 2
    except KeyboardInterrupt:
        progress("bench: interrupted")
        return 130
    results["pass"] = all(budget["pass"] for budget in results.values())
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    print_table(results)
    print(json.dumps(results))
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
