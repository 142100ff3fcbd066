"""`python -m herald_local`: runs Herald on this machine until Ctrl-C; its AWS state is kept across restarts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from herald_local import stack_file
from herald_local.emulator import Placement, PortInUse
from herald_local.faults import FaultPlan
from herald_local.provision import StackChanged
from herald_local.stack import LocalStack, StackOptions
from herald_local.state import StateError
from herald_local.template import REPO

STATE_DIR = REPO / ".herald-local" / "state"
EXAMPLE_PORTS = {"--port": 8080, "--aws-port": 4567, "--control-port": 3001}


def _shown(path: Path) -> str:
    """A path as a developer reads it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _port_taken(error: PortInUse) -> str:
    example = EXAMPLE_PORTS.get(error.option, 8080)
    return (
        f"herald_local: port {error.port} ({error.what}) is already in use on 127.0.0.1; "
        f'pick another with {error.option}, e.g. make run ARGS="{error.option} {example}" '
        f"(or {error.option} 0 for any free port)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herald_local", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--aws-port", type=int, default=0, help="the emulator's (moto's) port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument("--api-key", help="API key to require (default: $HERALD_API_KEY or a random one)")
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters, as with sam deploy",
    )
    parser.add_argument(
        "--emulator",
        type=Placement,
        choices=list(Placement),
        default=Placement.PROCESS,
        help="where moto runs: a process of its own (default: its own interpreter lock) or a thread of this one",
    )
    parser.add_argument("--log-level", default="INFO", help="the functions' POWERTOOLS_LOG_LEVEL")
    parser.add_argument(
        "--faults",
        type=Path,
        metavar="PLAN.json",
        help="inject faults as this FaultPlan says (herald_local/faults.py, docs/local-stack.md); off by default",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=STATE_DIR,
        metavar="DIR",
        help="where the emulated AWS state (queues, tables, topic, what providers received) is kept across "
        "restarts (default: .herald-local/state at the repository's root)",
    )
    parser.add_argument("--fresh", action="store_true", help="discard the kept state and start empty")
    parser.add_argument(
        "--control-port", type=int, default=0, help="control endpoint port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument(
        "--stack-file",
        type=Path,
        default=stack_file.default_path(),
        metavar="PATH",
        help="where to say how to reach this stack while it runs, for `herald` (default: $HERALD_STACK_FILE or"
        " .herald-local/stack.json in the checkout)",
    )
    args = parser.parse_args(argv)
    other = stack_file.running(args.stack_file)
    if other is not None:
        parser.error(
            f"another local stack runs (pid {other.pid}, API {other.api_url}) and owns {args.stack_file}:"
            " stop it, or give this one another --stack-file"
        )
    parameters = dict(item.split("=", 1) for item in args.parameter_overrides)
    faults = None
    if args.faults:
        try:
            faults = FaultPlan.model_validate_json(args.faults.read_text())
        except (OSError, ValidationError) as error:
            parser.error(f"--faults {args.faults}: {error}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    stack = LocalStack(
        StackOptions(
            api_port=args.port,
            aws_port=args.aws_port,
            api_key=args.api_key,
            parameters=parameters,
            log_level=args.log_level,
            faults=faults,
            state_dir=args.state_dir,
            fresh=args.fresh,
            emulator=args.emulator,
            control_port=args.control_port,
            stack_file=args.stack_file,
        )
    )
    try:
        stack.start()
    except KeyboardInterrupt:
        print("interrupted while starting; stopped.", flush=True)
        return 130
    except PortInUse as error:
        print(_port_taken(error), file=sys.stderr, flush=True)
        return 2
    except (StateError, StackChanged) as error:
        print(f"herald_local: {error}", file=sys.stderr, flush=True)
        return 2
    stopping = threading.Event()
    # Ctrl-C and SIGTERM stop it, also when started from a script that ignores SIGINT (a shell's
    # background job inherits SIGINT ignored, and Python then keeps ignoring it).
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print(f"Herald is running locally (ready in {time.monotonic() - started:.2f} s).", flush=True)
    print(f"  API URL:      {stack.api_url}", flush=True)
    print(f"  API key:      {stack.api_key}", flush=True)
    if len(set(stack.endpoints.values())) == 1:
        print(f"  AWS endpoint: {stack.endpoint}", flush=True)
    else:
        for service, endpoint in stack.endpoints.items():
            print(f"  {service + ':':13} {endpoint}", flush=True)
    if stack.emulated and len(set(stack.endpoints.values())) == 1:
        print(f"  Sent items:   {stack.endpoint}/moto-api/data.json", flush=True)
    if stack.emulated:
        kept = f"kept in {_shown(args.state_dir)}"
        if stack.restored:
            print(f"  State:        {kept}, restored from {stack.restored.saved_at} (--fresh starts empty)", flush=True)
        else:
            print(f"  State:        {kept}, started empty", flush=True)
    if faults:
        print(f"  Faults:       ON, from {args.faults} (seed {faults.seed})", flush=True)
    assert stack.control is not None
    print(f"  Control:      {stack.control.url} (herald faults, herald metrics)", flush=True)
    print(f"  Stack file:   {args.stack_file} (what `herald` reads)", flush=True)
    print("Ctrl-C stops it.", flush=True)
    emulator = stack.emulator
    ended = False  # the emulator process, on its own
    try:
        while not stopping.wait(0.5):
            if emulator is not None and not emulator.running():
                ended = True
                break
    except KeyboardInterrupt:
        pass
    if ended:
        # Killed, or crashed: without it nothing works; what it saved last is what a restart finds.
        print("herald_local: its emulator process ended unexpectedly; stopping.", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    print("stopping...", flush=True)
    stack.stop()
    counts = stack.faults.counts()
    injected = any(c.provider_calls or c.transient or c.permanent for c in counts.channels.values())
    if faults or injected or counts.duplicates_total:
        print(f"faults injected: {counts.model_dump_json()}", flush=True)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
