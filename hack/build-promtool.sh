#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker and unit-test runner) with the machine's Go, from the wrapper
# module hack/promtool (version pinned by its go.mod, checksums by its committed go.sum), into
# $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/promtool-<version>/promtool.
# What is already there is kept, so only the first run pays (a cold build takes about ten minutes);
# then this prints nothing. Rebuild: delete that directory (or pass --force).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib/build.sh
build_init build-promtool 2,6 "$@"
build_lock build-promtool

mod=github.com/prometheus/prometheus
version=$(modver "$hack/promtool" $mod)
# Prometheus' module versions are v0.<3 minor digits>.<patch> for release v3.<minor>.<patch>.
release=${version#v0.}; release=3.${release:1}
build "$hack/promtool" "" "-X github.com/prometheus/common/version.Version=$release" "promtool=$mod/cmd/promtool@$version"
