#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker and unit-test runner) with the machine's Go, from the wrapper
# module hack/promtool (version pinned by its go.mod, checksums by its committed go.sum), into
# $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/promtool-<version>/promtool.
# What is already there is kept, so only the first run pays (a cold build takes about ten minutes);
# then this prints nothing. Rebuild: delete that directory (or pass --force).
set -euo pipefail
cd "$(dirname "$0")/.."
hack=$PWD/hack

force=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-promtool: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

cache=${NODE_JANITOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/node-janitor}
export GOTOOLCHAIN=local CGO_ENABLED=0

mod=github.com/prometheus/prometheus
version=$(awk -v m="$mod" '($1 == "require" && $2 == m) {print $3} ($1 == m && $2 ~ /^v/) {print $2}' \
  "$hack/promtool/go.mod" | head -n1)
[ -n "$version" ] || { echo "build-promtool: $mod not found in hack/promtool/go.mod" >&2; exit 1; }
target=$cache/promtool-$version/promtool

mkdir -p "$cache"
exec 9>"$cache/.build-promtool.lock"
flock 9  # a second session waits for the first one's build instead of repeating it
if [ "$force" = 0 ] && [ -x "$target" ]; then
  exit 0
fi

# Prometheus' module versions are v0.<3 minor digits>.<patch> for release v3.<minor>.<patch>.
release=${version#v0.}; release=3.${release:1}
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "build-promtool: building promtool-$version (a cold build takes about ten minutes)" >&2
(cd "$hack/promtool" && go build -trimpath \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
  -o "$tmp/promtool" "$mod/cmd/promtool")
mkdir -p "$(dirname "$target")"
mv -f "$tmp/promtool" "$target"
echo "build-promtool: built promtool-$version in $((SECONDS - start))s" >&2
