"""The test bed, fakes and helpers the tests (and bench/) share; no tests here.

- `kube`: a real control plane (etcd, kube-apiserver, kube-controller-manager) as the session fixture `kube`.
- `node`: real nodes: kube-scheduler and a kubelet per call on its own private containerd (`kube_node`).
- `agentbed`: the real `node-janitor agent` as a subprocess against a containerd bed and the control plane.
- `operator`: the real `node-janitor operator` as a subprocess, polling, the manifests its tests apply.
- `enginebed`: helpers of the engine's real-containerd tests (images imported, rules, execute).
- `logbed`: log writers and checks on a real containerd; `logfakes`: a hand-written CRI fake and a clock.
- `fakeruntime`: an in-memory node (CRI + containerd with its collector, disks) pinned to `node.ports`, for fast
  engine tests (tests/node/test_engine_fake.py).
- `poll`, `inotify`, `proxy`: waiting, watching a directory, loopback TCP proxies (late, throttled).
"""
