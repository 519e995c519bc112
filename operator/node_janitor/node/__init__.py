"""The node engine: inventory -> plan -> execute -> report, for one node's containerd and pod logs.

What `node-janitor df`/`prune` and the agent's loop call. May import `api/`, `runtime/`, `defaults` and
`atomic_json` only (never the agent, the controller or the CLI; never the `kubernetes` package).

- `inventory`: the node snapshot (types) and containerd's reference graph, with exact dedup-aware accounting (pure).
- `ingests`: pulls in flight: containerd's content ingests and the bytes still to come (pure).
- `collect`: takes one Inventory from CRI, containerd, the pod log tree and statvfs (the snapshot-usage cache).
- `plan`: pure decisions: inventory + rules + now -> an ordered plan, each action with the bytes it frees.
- `outcome`: `Outcome` (done, skipped, failed): what became of one action, for the image executor and the logs.
- `execute`: applies a plan safely (each action re-checked right before it runs) and measures what it freed.
- `last_used`: when each image was last used, remembered across restarts (a small JSON state file).
- `usage`: `df`: the DiskReport built from an Inventory (what is used, shared, reclaimable).
- `ports`: the engine's ports, `NodeRuntime` (its CRI and containerd calls) and `HostFileSystems` (statvfs, devices,
  mounts): the real clients implement them, and the in-memory fake of the tests (tests/support/fakeruntime.py).
- `engine`: `NodeEngine`: one run (inventory, plan, log pass, execution, report) under a run lock: what `prune`
  and the agent call; `PruneReport`.
- `logs/`: the CRI log tree: rotation, compression, leftovers, orphans, the node budget, extra paths, the fast
  rotator and the tree lock.
"""
