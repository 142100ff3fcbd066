"""Smoke run of every benchmark at tiny scale, so they never rot: each runs as `make bench` runs it and
ends with one well-formed JSON line. No budget is asserted: timings are never a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.summary import BENCHMARKS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.own_stack]

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"bench", "scale", "holds", "budgets", "figures", "notes", "headline", "seconds", "machine"}
BUDGET_KEYS = {"name", "value", "limit", "unit", "holds"}


def test_every_benchmark_runs_at_tiny_scale_and_ends_with_its_json_line():
    # Given the seven benchmarks, started together (each on its own emulator and ports)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"bench.{name}", "--scale", "tiny"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in BENCHMARKS
    }

    # When they finish
    finished = {name: process.communicate(timeout=300) for name, process in running.items()}

    # Then each exited 0 and its last line is its JSON object, with the keys the summary reads
    for name, (stdout, stderr) in finished.items():
        assert running[name].returncode == 0, f"bench.{name} failed:\n{stderr[-3000:]}"
        lines = stdout.strip().splitlines()
        assert len(lines) > 1, f"bench.{name} printed no table"
        result = json.loads(lines[-1])
        assert set(result) >= KEYS, f"bench.{name}: missing {KEYS - set(result)}"
        assert (result["bench"], result["scale"]) == (name, "tiny")
        assert result["figures"], f"bench.{name} reported no figures"
        for budget in result["budgets"]:
            assert set(budget) >= BUDGET_KEYS
        assert sum(line.startswith("{") for line in lines) == 1, f"bench.{name} printed more than one JSON line"
