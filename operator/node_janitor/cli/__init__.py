"""The `node-janitor` command line and its text rendering. May import every package (it is the top of the tree);
its modules import lazily, per command, so `node-janitor agent` never loads the `kubernetes` package.

- `main`: the parser and one `cmd_*` per command: `df`, `prune`, `agent`, `operator`, `run`, `status`, `crd`,
  `demo` (the console entry point `node_janitor.cli:main`, and `python -m node_janitor`).
- `render`: plain-text tables: `df` (a DiskReport) and the shared `table`.
- `prune`: the text of a prune run (a `NodeEngine.run_once` PruneReport).
- `run`: `node-janitor run NODE`: spec.runRequest set on the node's NodeCleanup, the wait, the run's report.
- `demo`: `node-janitor demo`: the whole job against a private containerd (`devbed/`).
"""

from node_janitor.cli.main import main

__all__ = ["main"]
