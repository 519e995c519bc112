"""`--log-format text|json` and `--log-level` of `node-janitor agent` and `node-janitor operator` (cli/logsetup.py):
one format for both components, one line per record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node_janitor.cli.logsetup import configure_logging
from node_janitor.cli.main import build_parser


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kopf = logging.getLogger("kopf.objects").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("kopf.objects").setLevel(kopf)


@pytest.mark.parametrize("command", ["agent", "operator"])
def test_both_components_take_the_same_log_flags(command: str) -> None:
    parser = build_parser()
    args = parser.parse_args([command, "--log-format", "json", "--log-level", "debug"])
    assert (args.log_format, args.log_level) == ("json", "debug")
    args = parser.parse_args([command])
    assert (args.log_format, args.log_level) == ("text", "info")
    for bad in (["--log-format", "yaml"], ["--log-level", "verbose"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([command, *bad])
        assert exit_.value.code == 2


def test_json_lines_carry_the_records_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = logging.getLogger("node_janitor.test")
    log.info("action kind=%s reason=%s", "remove-image", "lru", extra={"kind": "remove-image", "reason": "lru"})
    log.debug("not shown at info")
    try:
        raise OSError("disk full")
    except OSError:
        log.exception("it failed\nover two lines")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "action kind=remove-image reason=lru" and first["reason"] == "lru"
    assert first["level"] == "INFO" and first["logger"] == "node_janitor.test" and first["time"].endswith("Z")
    assert second["level"] == "ERROR" and "OSError: disk full" in second["exception"]
    assert second["msg"] == "it failed\nover two lines"  # one JSON line all the same


def test_text_lines_and_the_level_threshold(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("text", "warning", stream)
    logging.getLogger("node_janitor.test").info("hidden")
    logging.getLogger("node_janitor.test").warning("run error trigger=%s", "watermark")
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("time=") and line.endswith(
        " level=WARNING logger=node_janitor.test run error trigger=watermark"
    )
    assert logging.getLogger("kopf.objects").level == logging.WARNING
    configure_logging("text", "debug", stream)
    assert logging.getLogger("kopf.objects").level == logging.DEBUG  # kopf's per-object lines only when debugging
