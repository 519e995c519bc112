#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh Debian machine for node-janitor:
# Debian's containerd + runc + busybox-static, and a virtualenv (.venv) with the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for p in containerd runc busybox-static e2fsprogs util-linux mount openssl containernetworking-plugins mmdebstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Re-install only when the project metadata changed since the last install.
stamp=.venv/.node-janitor-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi
