#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: set-up, then pytest (real containerd, real apiserver).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
hack/build-containerd.sh  # containerd 2.x and the loopback registry (the beds' default; NJ_CONTAINERD=1.6: Debian's)
if [ -x hack/build-k8s.sh ]; then hack/build-k8s.sh; fi
.venv/bin/ruff check operator tests bench
.venv/bin/mypy
exec .venv/bin/pytest "$@"
