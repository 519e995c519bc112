#!/usr/bin/env bash
# Builds the container runtime test beds' binaries with the machine's Go, from the wrapper modules in
# hack/containerd and hack/registry (versions pinned by their go.mod, checksums by their committed go.sum):
#   containerd, ctr, containerd-shim-runc-v2 (containerd 2.x) and registry (distribution v3, loopback only)
# into $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/<component>-<version>/<binary>.
# What is already there is kept, so only the first run pays (minutes); then this prints nothing.
# Rebuild one: delete its directory (or pass --force to rebuild all).
set -euo pipefail
cd "$(dirname "$0")/.."
hack=$PWD/hack

force=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-containerd: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

cache=${NODE_JANITOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/node-janitor}
export GOTOOLCHAIN=local CGO_ENABLED=0

# The version a wrapper module requires of a module: its `require` line in go.mod.
modver() {
  local v
  v=$(awk -v m="$2" '($1 == "require" && $2 == m) {print $3} ($1 == m && $2 ~ /^v/) {print $2}' "$1/go.mod" | head -n1)
  [ -n "$v" ] || { echo "build-containerd: $2 not found in $1/go.mod" >&2; exit 1; }
  echo "$v"
}

# Builds `packages` of wrapper module `dir` (tags, ldflags) into a temporary directory and moves each binary
# into `component-version/`, so an interrupted build never leaves a half-written binary where the beds look.
build() {
  local dir=$1 component=$2 version=$3 tags=$4 ldflags=$5; shift 5
  local todo=() names=() pkg name
  for pkg in "$@"; do
    name=${pkg##*/}
    if [ "$force" = 1 ] || [ ! -x "$cache/$component-$version/$name" ]; then
      todo+=("$pkg"); names+=("$name")
    fi
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  local tmp start
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  start=$SECONDS
  echo "build-containerd: building $component-$version: ${names[*]} (a cold build takes minutes)" >&2
  (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$tmp/" "${todo[@]}")
  mkdir -p "$cache/$component-$version"
  for name in "${names[@]}"; do
    mv -f "$tmp/$name" "$cache/$component-$version/$name"
  done
  rm -rf "$tmp"
  echo "build-containerd: built $component-$version in $((SECONDS - start))s" >&2
}

mkdir -p "$cache"
# Its own lock (not build-k8s.sh's): a second session waits for the first one's build of these binaries
# instead of repeating it, while a Kubernetes build may go on beside it.
exec 9>"$cache/.build-containerd.lock"
flock 9

# containerd 2.x: no CGO, no snapshotters we do not run (TESTBED.md: these tags build here)
cd_mod=github.com/containerd/containerd/v2
cd_ver=$(modver "$hack/containerd" $cd_mod)
# (only the version is stamped: the module proxy's zip carries no commit)
cd_flags="-X $cd_mod/version.Version=$cd_ver -X $cd_mod/version.Package=$cd_mod"
build "$hack/containerd" containerd "$cd_ver" "no_btrfs no_devmapper no_zfs no_aufs" "$cd_flags" \
  $cd_mod/cmd/containerd $cd_mod/cmd/ctr $cd_mod/cmd/containerd-shim-runc-v2

# registry (distribution v3): the tests' loopback registry
reg_mod=github.com/distribution/distribution/v3
reg_ver=$(modver "$hack/registry" $reg_mod)
build "$hack/registry" registry "$reg_ver" "" \
  "-X $reg_mod/version.version=$reg_ver" \
  $reg_mod/cmd/registry
