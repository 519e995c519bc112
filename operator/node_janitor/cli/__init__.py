"""The `node-janitor` command line and its text rendering. May import every package (it is the top of the tree);
its modules import lazily, per command, so `node-janitor agent` never loads the `kubernetes` package.

- `main`: the parser and the node-side commands: `df`, `prune`, `agent`, `operator`, `crd`, `demo` (the console
  entry point `node_janitor.cli:main`, and `python -m node_janitor`; `plugin_main` is `kubectl-node_janitor`).
- `errors`: the exit codes (2 usage or bad input, 3 runtime unreachable, 4 API unreachable, 1 run errors) and the
  errors that choose them.
- `kubeapi`: `--kubeconfig`/`--context` and the kubernetes client for `run`, `status` and `operator`.
- `render`: plain-text tables: `df` (a DiskReport) and the shared `table`.
- `prune`: the text of a prune run (a `NodeEngine.run_once` PruneReport) and its confirmation on a terminal.
- `progress`: progress on stderr when it is a terminal (`df`, `prune`, `run --wait`).
- `run`: `node-janitor run NODE|-l SELECTOR`: the run-request annotation on NodeCleanups, the watch, the reports.
- `status`: `node-janitor status`: the fleet table from the NodeCleanups' status.
- `demo`: `node-janitor demo`: the whole job against a private containerd (`devbed/`).
"""

from node_janitor.cli.main import main, plugin_main

__all__ = ["main", "plugin_main"]
