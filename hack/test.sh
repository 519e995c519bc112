#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: set-up, then pytest (real containerd, real apiserver) in two
# lanes, each on one pair of versions (README, "Supported versions"):
#   newest: Kubernetes 1.37 + containerd 2.3, every test;
#   compat: Kubernetes 1.32 + containerd 1.6, the oldest we support: the tests whose outcome depends on the
#           runtime's or the kubelet's version (COMPAT_LANE in tests/conftest.py: engine, logs, agent, end to end).
# pytest arguments go to both lanes; of the paths given, the compat lane runs those in it. NJ_LANES=newest (or
# compat) runs one lane. Exit: the first lane's failure, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
hack/build-containerd.sh  # containerd 2.x and the loopback registry (the beds' default; NJ_CONTAINERD=1.6: Debian's)
if [ -x hack/build-k8s.sh ]; then hack/build-k8s.sh; fi
hack/build-promtool.sh  # the chart's alert tests run it; a cold build (~10 min) must not count against a test's timeout
.venv/bin/ruff check operator tests bench
.venv/bin/mypy

rc=0
for lane in ${NJ_LANES:-newest compat}; do
  case $lane in
    newest) versions=(NJ_KUBE=1.37 NJ_CONTAINERD=2.3) ;;
    compat) versions=(NJ_KUBE=1.32 NJ_CONTAINERD=1.6 NJ_LANE=compat) ;;
    *) echo "test.sh: unknown lane '$lane' (lanes: newest, compat)" >&2; exit 2 ;;
  esac
  echo "test.sh: lane $lane (${versions[*]})" >&2
  start=$SECONDS
  lane_rc=0
  env "${versions[@]}" .venv/bin/pytest "$@" || lane_rc=$?
  echo "test.sh: lane $lane exited $lane_rc after $((SECONDS - start)) s" >&2
  if [ "$lane" = compat ] && [ "$lane_rc" -eq 5 ] && [ $# -gt 0 ]; then
    lane_rc=0  # none of the tests asked for is in the compat lane
  fi
  if [ "$rc" -eq 0 ]; then rc=$lane_rc; fi
done
exit "$rc"
