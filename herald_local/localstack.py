"""The LocalStack leg: Herald's end-to-end suite against LocalStack on this machine, DynamoDB on moto.

`python -m herald_local.localstack` (what `make test-localstack` runs):

1. finds a Python 3.13 (LocalStack's runtime needs it) and installs localstack-core, with the pins
   that are known to work, into its own virtual environment `.venv-localstack` (once);
2. starts LocalStack in host mode, bound to 127.0.0.1 with hypercorn on a free port, waits until it
   is ready, and refuses to go on if any socket of it listens beyond the loopback address;
3. runs tests/e2e with SQS, SNS, SES and CloudFormation pointed at it (AWS_ENDPOINT_URL_<SERVICE>);
   DynamoDB stays on the local stack's moto (LocalStack's downloads Java at first use) unless
   `--dynamodb localstack` says the LocalStack in use has it (Docker, or a machine with network);
4. stops LocalStack, whatever happened.

`--endpoint URL` uses a LocalStack that is already running (the Docker container) instead.
`--check` only says whether the leg can run here, and why not: `make test` prints it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from herald_local.endpoints import emulator_at, variable

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-localstack"
# localstack-core only runs on Python 3.13 here, and only with these pins (newer ones break its start).
PINS = (
    "localstack-core[runtime]==2026.3.0",
    "cbor2<6",
    "pyopenssl<25",
    "cryptography<45",
    "service_identity",
)
ON_LOCALSTACK = ("sqs", "sns", "ses", "cloudformation")
READY_TIMEOUT = 90.0
LOOPBACK = {"127.0.0.1", "::1"}


class LegUnavailable(Exception):
    """The leg cannot run on this machine; the message says why."""


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def _pyenv_roots() -> list[Path]:
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=20)
        if found.returncode == 0 and found.stdout.strip():
            roots.append(Path(found.stdout.strip()))
    roots.append(Path.home() / ".pyenv")
    return list(dict.fromkeys(roots))


def find_python() -> Path:
    """A Python 3.13: $HERALD_LOCALSTACK_PYTHON, pyenv's versions, then python3.13 on the PATH."""
    candidates: list[str] = []
    if os.environ.get("HERALD_LOCALSTACK_PYTHON"):
        candidates.append(os.environ["HERALD_LOCALSTACK_PYTHON"])
    for root in _pyenv_roots():
        versions = sorted((root / "versions").glob("3.13*/bin/python3"), reverse=True)
        candidates.extend(str(path) for path in versions)
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if _python_version(candidate) == (3, 13):
            return Path(candidate)
    tried = ", ".join(candidates) or "none found"
    raise LegUnavailable(
        "LocalStack (localstack-core 2026.3.0) needs Python 3.13, and there is none here "
        f"(looked in $HERALD_LOCALSTACK_PYTHON, pyenv's versions and python3.13 on the PATH; tried: {tried}). "
        "Install one (e.g. `pyenv install 3.13`) or set HERALD_LOCALSTACK_PYTHON."
    )


def ensure_runtime(python: Path, log: Path) -> Path:
    """LocalStack's own virtual environment, made once; returns its python."""
    marker = VENV / ".installed"
    wanted = "\n".join(PINS)
    venv_python = VENV / "bin" / "python"
    if marker.exists() and marker.read_text() == wanted and venv_python.exists():
        return venv_python
    print(f"installing localstack-core into {VENV.name} with {python} (about 40 s, once)...", flush=True)
    steps = [
        [str(python), "-m", "venv", "--clear", str(VENV)],
        [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
    ]
    with log.open("a") as out:
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise LegUnavailable(f"could not install LocalStack ({' '.join(step[:3])} ...):\n{_tail(log)}")
    marker.write_text(wanted)
    return venv_python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening_sockets(pids: set[int] | None = None) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN, of these processes only if `pids` is given (Linux /proc)."""
    inodes: set[str] | None = None
    if pids is not None:
        inodes = set()
        for pid in pids:
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
    found = []
    for table, ipv4 in (("/proc/net/tcp", True), ("/proc/net/tcp6", False)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or (inodes is not None and fields[9] not in inodes):  # 0A: LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc stores each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.IPv4Address(words) if ipv4 else ipaddress.IPv6Address(words)
            mapped = getattr(address, "ipv4_mapped", None)
            found.append((str(mapped or address), int(port_hex, 16)))
    return found


def _family(pid: int) -> set[int]:
    """The process and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(stat.parent.name))
    family, todo = set(), [pid]
    while todo:
        current = todo.pop()
        family.add(current)
        todo.extend(children.get(current, []))
    return family


def check_loopback_only(sockets: list[tuple[str, int]], port: int) -> None:
    """Refuses (raises) unless `port` is listened on at 127.0.0.1 and nothing listens beyond the loopback."""
    if not Path("/proc/net/tcp").exists():
        raise LegUnavailable("cannot check where LocalStack listens (no /proc/net/tcp): refusing to use it")
    exposed = sorted({f"{address}:{p}" for address, p in sockets if address not in LOOPBACK})
    if exposed:
        raise LegUnavailable(f"LocalStack listens beyond this machine on {', '.join(exposed)}: refusing to use it")
    if ("127.0.0.1", port) not in sockets:
        raise LegUnavailable(f"LocalStack does not listen on 127.0.0.1:{port}")


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_localstack(venv_python: Path, workdir: Path) -> Iterator[str]:
    """LocalStack in host mode on a free loopback port, for the duration of the block."""
    port = free_port()
    log = workdir / "localstack.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "PYTHON", "VIRTUAL_ENV"))},
        "OVERRIDE_IN_DOCKER": "0",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        # The default server (twisted) ignores the host and binds 0.0.0.0; hypercorn honours it.
        "GATEWAY_SERVER": "hypercorn",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SQS_ENDPOINT_STRATEGY": "path",  # queue URLs on 127.0.0.1, resolvable without DNS
        "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "FILESYSTEM_ROOT": str(workdir / "root"),
        "LS_LOG": "warn",
    }
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(venv_python), "-m", "localstack.runtime.main"],
            cwd=workdir,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, and only it
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise LegUnavailable(f"LocalStack exited with code {process.returncode} while starting:\n{_tail(log)}")
            if time.monotonic() - started > READY_TIMEOUT:
                raise LegUnavailable(f"LocalStack not ready after {READY_TIMEOUT:.0f} s:\n{_tail(log)}")
            try:
                if requests.get(f"{endpoint}/_localstack/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        check_loopback_only(listening_sockets(_family(process.pid)), port)
        print(f"LocalStack ready at {endpoint} in {time.monotonic() - started:.1f} s (loopback only)", flush=True)
        yield endpoint
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def suite_environment(endpoint: str, dynamodb_on_localstack: bool) -> dict[str, str]:
    """The test run's environment: LocalStack for its services, nothing else redirected."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    for service in (*ON_LOCALSTACK, *(("dynamodb",) if dynamodb_on_localstack else ())):
        environment[variable(service)] = endpoint
    environment["HERALD_LEG"] = "localstack"
    environment["PYTHONPATH"] = os.pathsep.join(["functions", "."])
    return environment


def run_suite(endpoint: str, dynamodb_on_localstack: bool, pytest_args: list[str]) -> int:
    served = ", ".join(s.upper() for s in ON_LOCALSTACK) + (", DYNAMODB" if dynamodb_on_localstack else "")
    print(f"LocalStack serves {served}; {'nothing' if dynamodb_on_localstack else 'DynamoDB'} on moto", flush=True)
    # The chaos run and the benchmarks' smoke start their own embedded moto stack: they run in the
    # moto leg, and running them here would only run the same thing twice.
    print(
        "Not in this leg: tests marked own_stack (chaos run, bench smoke), which start their own moto stack", flush=True
    )
    command = [sys.executable, "-m", "pytest", "tests/e2e", "-m", "not own_stack", *pytest_args]
    return subprocess.run(command, cwd=REPO, env=suite_environment(endpoint, dynamodb_on_localstack)).returncode


def check() -> int:
    """What `make test` prints: whether the LocalStack leg can run here, never silently skipped."""
    try:
        python = find_python()
    except LegUnavailable as reason:
        print(f"LocalStack leg: SKIPPED on this machine: {reason}", flush=True)
        return 0
    installed = "installed" if (VENV / ".installed").exists() else "installed on first run"
    print(
        f"LocalStack leg: not part of `make test`; it runs with `make test-localstack` (CI runs it next). "
        f"It can run here: Python 3.13 at {python}, LocalStack {installed}.",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herald_local.localstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the leg can run here")
    parser.add_argument("--endpoint", help="use this running LocalStack (e.g. a Docker container) instead")
    parser.add_argument(
        "--dynamodb",
        choices=("moto", "localstack"),
        default="moto",
        help="where DynamoDB runs (LocalStack's needs Docker or network to fetch Java)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="herald-localstack-"))
    try:
        if args.endpoint:
            endpoint = args.endpoint.rstrip("/")
            if emulator_at(endpoint) != "localstack":
                raise LegUnavailable(f"no LocalStack answers at {endpoint}")
            port = int(endpoint.rsplit(":", 1)[1])
            check_loopback_only([s for s in listening_sockets() if s[1] == port], port)
            code = run_suite(endpoint, args.dynamodb == "localstack", args.pytest_args)
        else:
            venv_python = ensure_runtime(find_python(), workdir / "install.log")
            with running_localstack(venv_python, workdir) as endpoint:
                code = run_suite(endpoint, args.dynamodb == "localstack", args.pytest_args)
            print("LocalStack stopped.", flush=True)
    except LegUnavailable as reason:
        print(f"\nThe LocalStack leg cannot run on this machine: {reason}", file=sys.stderr, flush=True)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"LocalStack leg finished in {time.monotonic() - started:.0f} s (exit code {code})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
