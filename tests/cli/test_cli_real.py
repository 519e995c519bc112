"""The CLI's output survives what it reports: names that are not UTF-8 (a pod directory someone else made, a
state file path) are printed escaped, never lost to a UnicodeEncodeError."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from node_janitor.devbed import ContainerdBed

pytestmark = pytest.mark.containerd


def test_a_name_that_is_not_utf8_does_not_lose_the_report(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    odd = os.path.join(os.fsencode(bed.base), b"st\xe9te")
    os.mkdir(odd)  # not a state file: a warning naming it is part of the report
    for args in (["prune", "--dry-run"], ["prune", "--dry-run", "-o", "json"]):
        proc = subprocess.run(
            [sys.executable.encode(), b"-m", b"node_janitor", *map(os.fsencode, args), b"--state-file", odd,
             b"--containerd-socket", os.fsencode(bed.address), b"--pod-log-dir", os.fsencode(bed.pod_log_dir)],
            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (args, proc.stderr.decode(errors="replace"))
        assert b"Traceback" not in proc.stderr
        assert b"st\\udce9te" in proc.stdout or b"st\\\\udce9te" in proc.stdout, proc.stdout


def test_info_and_df_show_the_runtime_found(containerd_bed: ContainerdBed) -> None:
    """`info` (and the end of `df`) name the runtime, its root, the configuration read and the sandbox image; the
    JSON carries the same. Our beds' configuration is a version-2 file (2.3 migrates it)."""
    bed = containerd_bed
    flags = ["--containerd-socket", bed.address, "--containerd-config", str(bed.base / "config.toml")]

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "node_janitor", *args], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    table = cli("info", *flags)
    assert f"root               {bed.root} (from cri status)" in table
    assert f"config             {bed.base / 'config.toml'} (version 2)" in table
    source = "config file" if bed.binaries.major >= 2 else "cri status"
    assert f"sandbox image      {bed.sandbox_image} (from {source})" in table
    found = json.loads(cli("info", *flags, "-o", "json"))
    assert found["root"] == str(bed.root) and found["sandboxImage"] == bed.sandbox_image
    df = json.loads(cli("df", *flags, "--pod-log-dir", str(bed.pod_log_dir), "-o", "json"))
    assert df["runtime"] == found
    assert table in cli("df", *flags, "--pod-log-dir", str(bed.pod_log_dir))
