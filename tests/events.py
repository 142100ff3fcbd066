"""The sample events in events/, as tests read them: the same files `sam local invoke -e` takes."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parents[1] / "events"


@cache
def _read(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    return event


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json as a fresh copy: a test may change it without touching the next test's."""
    return copy.deepcopy(_read(name))
