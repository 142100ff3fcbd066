"""The chaos run at small scale: faults on, then the ledger from the providers' own records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.own_stack]
REPO = Path(__file__).resolve().parents[2]


def test_under_faults_nothing_is_lost_and_nothing_is_sent_twice() -> None:
    # Given the chaos script (its own local stack, in its own process), with 20% transient faults,
    # 2% crashes after send and 1% permanent failures at every provider, 5% duplicated messages, and
    # 5% of messages handled together with copies of themselves: 2 in their batch, 2 in a parallel batch
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = f"functions{os.pathsep}."
    command = [sys.executable, "-m", "bench.chaos", "--deliveries", "200", "--seed", "3"]
    command += ["--transient", "0.2", "--crashes", "0.02", "--permanent", "0.01", "--duplicates", "0.05"]
    command += ["--copies", "0.05", "--copies-in-batch", "2", "--copies-in-parallel-batch", "2"]
    command += ["--settle-timeout", "60"]

    # When it sends notifications until 200 deliveries are planned and waits until all are final
    # (about 1.5 min alone; the bound leaves room for a machine shared with other work)
    finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)

    # Then its ledger accounts for every delivery: none lost, none sent twice
    assert finished.returncode in (0, 1), finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    ledger = report["ledger"]
    assert report["deliveries_planned"] >= 200
    assert sum(report["injected"]["duplicates"].values()) > 0, "no duplicate was injected"
    copies = report["injected"]["concurrent_copies"].values()
    assert sum(c["in_batch"] for c in copies) > 0, "no copy shared its original's batch"
    assert sum(c["in_parallel_batch"] for c in copies) > 0, "no copy ran in a parallel batch"
    assert sum(c["crashes"] for c in report["injected"]["channels"].values()) > 0, "no crash was injected"
    assert (ledger["lost"], ledger["sent_twice"]) == (0, 0), finished.stdout
    assert report["settled_after_redrive"], finished.stdout  # every notification final in the end
