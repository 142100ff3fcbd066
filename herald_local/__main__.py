"""`python -m herald_local`: runs Herald on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from herald_local.emulator import Placement
from herald_local.faults import FaultPlan
from herald_local.stack import LocalStack, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herald_local", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--aws-port", type=int, default=0, help="moto server port on 127.0.0.1 (0: any free port)")
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
    args = parser.parse_args(argv)
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
            emulator=args.emulator,
        )
    )
    try:
        stack.start()
    except KeyboardInterrupt:
        print("interrupted while starting; stopped.", flush=True)
        return 130
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
    if faults:
        print(f"  Faults:       ON, from {args.faults} (seed {faults.seed})", flush=True)
    print("Ctrl-C stops it.", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("stopping...", flush=True)
    stack.stop()
    if stack.faults:
        print(f"faults injected: {stack.faults.counts().model_dump_json()}", flush=True)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
