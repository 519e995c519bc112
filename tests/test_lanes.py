"""The lanes of hack/test.sh: the compatibility lane's set of tests (tests/conftest.py) names what exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import COMPAT_LANE, in_compat_lane

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_every_path_of_the_compat_lane_exists() -> None:
    """A renamed folder or file would otherwise leave the oldest versions silently untested."""
    assert [p for p in COMPAT_LANE if not (TESTS / p).exists()] == []


def test_the_compat_lane_takes_folders_and_files_by_whole_path_parts() -> None:
    assert in_compat_lane(Path("node/test_engine_fake.py"))
    assert in_compat_lane(Path("node/logs/test_rotation.py"))
    assert in_compat_lane(Path("cli/test_cli_real.py"))
    assert not in_compat_lane(Path("cli/test_cli.py"))
    assert not in_compat_lane(Path("nodes/test_x.py"))
    assert not in_compat_lane(Path("controller/test_operator.py"))


def test_the_compat_lane_deselects_the_tests_outside_it() -> None:
    def collected(lane: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
             "tests/node/test_usage.py", "tests/controller/test_controller.py"],
            cwd=REPO, env={**os.environ, "NJ_LANE": lane}, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return sorted({line.split("::")[0] for line in result.stdout.splitlines() if "::" in line})

    assert collected("") == ["tests/controller/test_controller.py", "tests/node/test_usage.py"]
    assert collected("compat") == ["tests/node/test_usage.py"]
