"""docs/metrics.md's list of metrics, and the exposed metrics it does not list."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")


def documented_metrics() -> dict[str, str]:
    """Metric name -> its type, from the first column of docs/metrics.md's tables."""
    found = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and (m := re.fullmatch(r"`(node_janitor_\w+)`", cells[0])):
            found[m.group(1)] = cells[1]
    return found


def exposed_series(text: str) -> set[str]:
    """Every sample name in a /metrics text (`_total`, `_bucket`... included)."""
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def undocumented(text: str) -> set[str]:
    """The exposed metrics of a /metrics text that docs/metrics.md does not list: each family by its documented
    name (a counter's `_total`, a histogram's base name), and any `_created` series (there must be none)."""
    documented = documented_metrics()
    missing = set()
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        if name not in documented or documented[name] != family.type:
            missing.add(f"{name} ({family.type})")
        missing |= {s.name for s in family.samples if s.name.endswith("_created")}
    for line in text.splitlines():  # families with no sample yet show only in their HELP/TYPE lines
        if m := re.match(r"# TYPE (\w+) (\w+)", line):
            name = m.group(1) if m.group(2) != "counter" or m.group(1).endswith("_total") else f"{m.group(1)}_total"
            if name not in documented:
                missing.add(f"{name} ({m.group(2)})")
    return missing
