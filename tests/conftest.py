"""Shared by every test tier."""

import os

# Set before any herald module is imported: Powertools reads these at import, boto3 when it builds
# a client. setdefault keeps whatever the shell or a tier's own fixture already chose.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "herald")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Herald")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """One line per leg, for CI to add up: which emulator leg this was and how many tests it ran."""
    counts = {outcome: len(terminalreporter.stats.get(outcome, [])) for outcome in ("passed", "failed", "skipped")}
    counts["failed"] += len(terminalreporter.stats.get("error", []))
    leg = os.environ.get("HERALD_LEG", "moto")
    total = sum(counts.values())
    terminalreporter.write_line(
        f"Herald {leg} leg: {total} tests: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
