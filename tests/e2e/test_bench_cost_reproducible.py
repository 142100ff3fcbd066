"""The cost benchmark gives the same figures on every run: two runs at once (each slowing the other
down) record the same calls and price them to the same dollars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.own_stack]

ROOT = Path(__file__).resolve().parents[2]


def test_two_runs_of_the_cost_benchmark_under_each_others_load_report_the_same_figures():
    # Given two tiny cost runs started together, each on its own emulator, competing for the CPU
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.cost", "--scale", "tiny"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]

    # When both finish
    outputs = [run.communicate(timeout=300) for run in runs]

    # Then both measured, and every figure (usage, dollars by line and by call, levers) is identical
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
    first, second = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
    assert first["figures"] == second["figures"]
    assert first["budgets"] == second["budgets"]
    # and 4 write units with 3 push devices: accepted, the fan-out page's one record (the recipient's history
    # entry too), and a claim and an outcome per recipient's message: the normal queue's batch (up to 30 in its
    # 1 s window) holds the 10 notifications' messages, each a recipient's three deliveries
    cases = first["figures"]["cases"]
    assert cases["3 push devices each"]["usage_per_notification"]["dynamodb_write_units"] == 4
    assert cases["3 push devices each"]["fills"]["DeliverNormalFunctionNormalQueue"] == 10
