"""`python -m bench`: runs the seven benchmarks one after another, each in a fresh process, collects
their JSON lines into one file, prints which budgets hold, and can refresh docs/performance.md.

    python -m bench [--scale tiny|full] [--out FILE] [--docs FILE] [--only NAME ...]

With --only, the other benchmarks' lines already in --out (same scale) are kept, so re-running one
benchmark refreshes its figures without re-running the rest.

Exit status: 0 every budget holds, 1 one does not, 2 a benchmark could not measure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.report import Scale, progress
from bench.summary import BENCHMARKS, budget_lines, markdown_summary, replace_generated

ROOT = Path(__file__).resolve().parent.parent


def run_one(name: str, scale: Scale) -> dict[str, object] | None:
    """Runs `python -m bench.<name>`; its tables go to stdout as they come, its JSON line is returned."""
    progress(f"--- bench.{name} ({scale.value})")
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--scale", scale.value],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = done.stdout.rstrip("\n").splitlines()
    print("\n".join(lines[:-1]), flush=True)
    if done.returncode != 0 or not lines:
        progress(f"bench.{name} could not measure (exit {done.returncode})")
        return None
    result: dict[str, object] = json.loads(lines[-1])
    return result


def merged(path: Path, results: list[dict[str, object]]) -> list[dict[str, object]]:
    """The results of this run, plus those of `path` for benchmarks this run did not re-run (at the
    same scale), in the usual order: re-running one benchmark keeps the others' figures."""
    fresh = {str(r["bench"]): r for r in results}
    scale = next(iter(fresh.values()))["scale"] if fresh else None
    kept = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                earlier = json.loads(line)
                if earlier["bench"] not in fresh and earlier["scale"] == scale:
                    kept[earlier["bench"]] = earlier
    every = kept | fresh
    return [every[name] for name in BENCHMARKS if name in every]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=Scale, choices=list(Scale), default=Scale.FULL)
    parser.add_argument("--out", type=Path, help="write the JSON lines here (one per benchmark)")
    parser.add_argument("--docs", type=Path, help="refresh the generated figures in this Markdown file")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    arguments = parser.parse_args()
    results = []
    failed = []
    for name in arguments.only:
        result = run_one(name, arguments.scale)
        if result is None:
            failed.append(name)
        else:
            results.append(result)
    if arguments.out:
        results = merged(arguments.out, results)
        arguments.out.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results))
        progress(f"wrote {arguments.out}")
    if arguments.docs and results:
        arguments.docs.write_text(replace_generated(arguments.docs.read_text(), markdown_summary(results)))
        progress(f"refreshed the figures in {arguments.docs}")
    print("\n".join(["", "== Budgets", *budget_lines(results)]))
    if failed:
        print(f"Could not measure: {', '.join(failed)}")
        return 2
    return 0 if all(r.get("holds") is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
