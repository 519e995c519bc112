#!/usr/bin/env bash
# Builds the container runtime test beds' binaries with the machine's Go, from the wrapper modules in
# hack/containerd and hack/registry (versions pinned by their go.mod, checksums by their committed go.sum):
#   containerd, ctr, containerd-shim-runc-v2 (containerd 2.x) and registry (distribution v3, loopback only)
# into $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/<component>-<version>/<binary>.
# What is already there is kept, so only the first run pays (minutes); then this prints nothing.
# Rebuild one: delete its directory (or pass --force to rebuild all).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib/build.sh
build_init build-containerd 2,7 "$@"
build_lock build-containerd  # its own lock: a Kubernetes build may go on beside it

# containerd 2.x: no CGO, no snapshotters we do not run (TESTBED.md: these tags build here)
cd_mod=github.com/containerd/containerd/v2
cd_ver=$(modver "$hack/containerd" $cd_mod)
# (only the version is stamped: the module proxy's zip carries no commit)
cd_flags="-X $cd_mod/version.Version=$cd_ver -X $cd_mod/version.Package=$cd_mod"
build "$hack/containerd" "no_btrfs no_devmapper no_zfs no_aufs" "$cd_flags" \
  "containerd/containerd=$cd_mod/cmd/containerd@$cd_ver" "containerd/ctr=$cd_mod/cmd/ctr@$cd_ver" \
  "containerd/containerd-shim-runc-v2=$cd_mod/cmd/containerd-shim-runc-v2@$cd_ver"

# registry (distribution v3): the tests' loopback registry
reg_mod=github.com/distribution/distribution/v3
reg_ver=$(modver "$hack/registry" $reg_mod)
build "$hack/registry" "" "-X $reg_mod/version.version=$reg_ver" "registry=$reg_mod/cmd/registry@$reg_ver"
