"""`make build` builds every function of template.yaml as Lambda will run it (python3.12 on arm64)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from herald_local.template import REPO, HeraldTemplate


@pytest.mark.slow
def test_make_build_builds_every_function_for_its_runtime_and_architecture(tmp_path: Path) -> None:
    # Given the SAM CLI of `make test` (this test never installs it)
    if not (REPO / ".venv-sam" / "bin" / "sam").exists():
        pytest.skip("no SAM CLI in .venv-sam: `make test` or `make build` installs it")

    # When `make build` runs (about 15 s), into a directory of this test's own
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "build",
            f"BUILD_ARGS=--build-dir {tmp_path}/build --cache-dir {tmp_path}/cache",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0 and "no Python 3.12 here" in result.stderr:
        pytest.skip(f"make build cannot run on this machine: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Then each function's artifact holds Herald's code and its requirements, pydantic's compiled core
    # built for CPython 3.12 on aarch64 (arm64), the runtime and architecture the template asks for
    for function in HeraldTemplate.load().functions:
        artifact = tmp_path / "build" / function
        assert (artifact / "herald" / "__init__.py").exists(), function
        assert (artifact / "aws_lambda_powertools").is_dir(), function
        assert list((artifact / "pydantic_core").glob("*.cpython-312-aarch64-linux-gnu.so")), function
