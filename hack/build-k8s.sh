#!/usr/bin/env bash
# Builds the Kubernetes test bed's binaries with the machine's Go, from the wrapper modules in hack/k8s-*
# (one per supported Kubernetes release: 1.32, the oldest, and 1.37, the newest), hack/etcd, hack/helm,
# hack/helm4 and hack/actionlint (versions pinned by their go.mod, checksums by their committed go.sum):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (each release), etcd, helm (3), helm 4, actionlint
# into $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/<component>-<version>/<component>.
# What is already there is kept, so only the first run pays (minutes); then this prints nothing.
# Rebuild one: delete its directory (or pass --force to rebuild all).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib/build.sh
build_init build-k8s 2,9 "$@"

# Commits of the pinned tags (module proxy .info Origin, or the release's own `version` output); only
# stamped into the binaries' version strings. An unknown version builds with an empty commit.
declare -A commits=(
  [k8s.io/kubernetes@v1.32.4]=59526cd4867447956156ae3a602fcbac10a2c335
  [go.etcd.io/etcd/server/v3@v3.5.21]=a17edfd59754d1aed29c2db33520ab9d401326a5
  [helm.sh/helm/v3@v3.17.3]=e4da49785aa6e6ee2b86efd5dd9e43400318262b
)
# Not stamped (none known offline): helm.sh/helm/v4, github.com/rhysd/actionlint
commit_of() { echo "${commits[$1]:-}"; }

build_lock build

# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (the test bed's real node), for each
# Kubernetes release the tests run (NJ_KUBE in tests/support/kube.py chooses one)
build_kubernetes() {
  local dir=$1 k8s k8s_minor k8s_commit k8s_flags="" p
  k8s=$(modver "$dir" k8s.io/kubernetes)
  k8s_minor=${k8s#v1.}; k8s_minor=${k8s_minor%%.*}
  k8s_commit=$(commit_of "k8s.io/kubernetes@$k8s")
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_flags+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    k8s_flags+=" -X $p.gitCommit=$k8s_commit -X $p.gitTreeState=clean"
  done
  build "$dir" "" "$k8s_flags" \
    "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver@$k8s" \
    "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager@$k8s" \
    "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler@$k8s" \
    "kubelet=k8s.io/kubernetes/cmd/kubelet@$k8s"
}
for dir in "$hack"/k8s-*/; do
  build_kubernetes "${dir%/}"
done

# etcd (its version string is compiled in; only the commit is stamped)
etcd=$(modver "$hack/etcd" go.etcd.io/etcd/server/v3)
etcd_pkg=go.etcd.io/etcd/server/v3
build "$hack/etcd" "" "-X go.etcd.io/etcd/api/v3/version.GitSHA=$(commit_of "$etcd_pkg@$etcd" | cut -c1-9)" \
  "etcd=$etcd_pkg@$etcd"

# helm, with the Kubernetes version it was built against (its client-go) for `.Capabilities.KubeVersion`
# and `kubeVersion` constraints in charts
helm=$(modver "$hack/helm" helm.sh/helm/v3)
helm_k8s=$(modver "$hack/helm" k8s.io/client-go)  # v0.<minor>.<patch>
helm_k8s_minor=${helm_k8s#v0.}; helm_k8s_minor=${helm_k8s_minor%%.*}
helm_flags="-X helm.sh/helm/v3/internal/version.version=$helm"
helm_flags+=" -X helm.sh/helm/v3/internal/version.gitCommit=$(commit_of "helm.sh/helm/v3@$helm")"
helm_flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_flags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$helm_k8s_minor"
done
build "$hack/helm" "" "$helm_flags" "helm=helm.sh/helm/v3/cmd/helm@$helm"

# Helm 4 (the chart is tested with both majors). It reads its Kubernetes version from its build info.
helm4=$(modver "$hack/helm4" helm.sh/helm/v4)
helm4_flags="-X helm.sh/helm/v4/internal/version.version=$helm4"
helm4_flags+=" -X helm.sh/helm/v4/internal/version.gitCommit=$(commit_of "helm.sh/helm/v4@$helm4")"
helm4_flags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
build "$hack/helm4" "" "$helm4_flags" "helm=helm.sh/helm/v4/cmd/helm@$helm4"

# actionlint (checks .github/workflows; the release workflow itself cannot run here)
actionlint=$(modver "$hack/actionlint" github.com/rhysd/actionlint)
build "$hack/actionlint" "" "-X github.com/rhysd/actionlint.version=$actionlint" \
  "actionlint=github.com/rhysd/actionlint/cmd/actionlint@$actionlint"
