#!/usr/bin/env bash
# The main job on its embedded default: a private containerd with demo images and containers,
# then `node-janitor df -v` and a dry-run prune against it. Extra arguments go to `node-janitor demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
exec .venv/bin/node-janitor demo "$@"
