"""The sample events in events/, as tests read them: the same files `sam local invoke -e` takes."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parents[1] / "events"
# Which function of template.yaml takes each sample event: `sam local invoke <Function> -e events/<name>.json`,
# `herald invoke <Function> -e events/<name>.json`. Every file of events/ is listed (tests check it).
FUNCTION_OF = {
    "api_register_device": "ApiFunction",
    "api_send_notification": "ApiFunction",
    "fanout": "FanoutHighFunction",
    "deliver": "DeliverHighFunction",
    "deliver_group": "DeliverHighFunction",
    "feedback": "FeedbackFunction",
    "dlq_redrive": "DlqRedriveFunction",
    "dlq_redrive_dry_run": "DlqRedriveFunction",
    "schedule": "ScheduleFunction",
}


@cache
def _read(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    return event


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json as a fresh copy: a test may change it without touching the next test's."""
    return copy.deepcopy(_read(name))


def event_names() -> list[str]:
    """Every sample event in events/, by name (the file name without .json)."""
    return sorted(path.stem for path in EVENTS_DIR.glob("*.json"))
