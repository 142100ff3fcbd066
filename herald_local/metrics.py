"""The functions' CloudWatch metrics, locally: their EMF documents collected as CloudWatch Logs would take them.

On Lambda a function prints EMF on stdout and CloudWatch turns it into metrics. Locally every
function runs in one process, so the stack hands each function's dependencies an output of its
own (`metrics_output`, through the dependency hook) that lands here, tagged with the function.
The control endpoint serves what was collected (`GET /metrics`), and `herald metrics` shows it
summed the way CloudWatch would: per metric and set of dimensions.

This module imports nothing of Herald's functions: the CLI reads it without loading them.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

KEEP = 10_000  # documents kept, newest last: a dev session's worth, bounded


class EmfRecord(BaseModel):
    seq: int = Field(description="Position in the stack's collection, from 1: `since` takes the last one seen.")
    function: str
    at: float = Field(description="When it was written, seconds since the epoch.")
    document: dict[str, Any] = Field(description="The EMF document as the function wrote it.")


class MetricSummary(BaseModel):
    """One metric for one set of dimensions, over some documents (locally) or some minutes (CloudWatch)."""

    namespace: str
    name: str
    unit: str
    dimensions: dict[str, str]
    samples: int = Field(description="How many values were recorded (a count's documents, a latency's sends).")
    sum: float
    minimum: float
    maximum: float

    @property
    def average(self) -> float:
        return self.sum / self.samples if self.samples else 0.0


class NotEmf(ValueError):
    """A line a function wrote as EMF that is not an EMF document."""


def metric_definitions(document: dict[str, Any]) -> list[tuple[str, str, list[str], str]]:
    """(namespace, name, dimension names, unit) for each metric an EMF document declares."""
    try:
        directives = document["_aws"]["CloudWatchMetrics"]
        return [
            (directive["Namespace"], metric["Name"], list(dimensions), metric.get("Unit", "None"))
            for directive in directives
            for dimensions in directive["Dimensions"] or [[]]
            for metric in directive["Metrics"]
        ]
    except (KeyError, TypeError) as error:
        raise NotEmf(f"not an EMF document: missing {error}") from error


def summarize(documents: Iterable[dict[str, Any]]) -> list[MetricSummary]:
    """Every metric of the documents, summed per metric and set of dimensions, sorted by name."""
    summaries: dict[tuple[str, str, tuple[tuple[str, str], ...]], MetricSummary] = {}
    for document in documents:
        for namespace, name, dimension_names, unit in metric_definitions(document):
            dimensions = tuple((d, str(document[d])) for d in dimension_names)
            raw = document[name]
            values = [float(v) for v in raw] if isinstance(raw, list) else [float(raw)]
            key = (namespace, name, tuple(sorted(dimensions)))
            known = summaries.get(key)
            if known is None:
                summaries[key] = MetricSummary(
                    namespace=namespace,
                    name=name,
                    unit=unit,
                    dimensions=dict(sorted(dimensions)),
                    samples=len(values),
                    sum=sum(values),
                    minimum=min(values),
                    maximum=max(values),
                )
            else:
                known.samples += len(values)
                known.sum += sum(values)
                known.minimum = min(known.minimum, *values)
                known.maximum = max(known.maximum, *values)
    return sorted(summaries.values(), key=lambda s: (s.name, sorted(s.dimensions.items())))


class EmfCollector:
    """Keeps every EMF document the local functions write. Thread-safe: functions run concurrently."""

    def __init__(self, keep: int = KEEP, clock: Callable[[], float] = time.time):
        self._records: deque[EmfRecord] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._seq = 0
        self._clock = clock
        self.refused = 0  # lines that were not EMF (kept out, counted)

    def output_for(self, function: str) -> Callable[[str], None]:
        """What a function's dependencies get as `metrics_output`: its EMF lines, into this collection."""
        return lambda line: self.collect(function, line)

    def collect(self, function: str, line: str) -> None:
        try:
            document = json.loads(line)
            metric_definitions(document)
        except ValueError:  # JSONDecodeError and NotEmf both are
            with self._lock:
                self.refused += 1
            return
        with self._lock:
            self._seq += 1
            self._records.append(EmfRecord(seq=self._seq, function=function, at=self._clock(), document=document))

    def records(self, since: int = 0) -> list[EmfRecord]:
        with self._lock:
            return [record for record in self._records if record.seq > since]

    def hook(self, function: str, dependencies: Any) -> Any:
        """A DependencyHook: a function whose dependencies write metrics writes them here."""
        writes_metrics = (
            dataclasses.is_dataclass(dependencies)
            and not isinstance(dependencies, type)
            and any(f.name == "metrics_output" for f in dataclasses.fields(dependencies))
        )
        if writes_metrics:
            return dataclasses.replace(dependencies, metrics_output=self.output_for(function))
        return dependencies
