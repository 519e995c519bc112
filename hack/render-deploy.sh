#!/usr/bin/env bash
# Renders the plain manifests of deploy/ from the Helm chart with its default values (release and namespace
# node-janitor), so that `kubectl apply -f crds/ -f deploy/crds/ && kubectl apply -f deploy/` installs what
# `helm install node-janitor charts/node-janitor -n node-janitor` does. hack/regen.py runs it with every other
# generator; tests/test_derived_files.py fails when deploy/ drifts from the chart.
#
#   hack/render-deploy.sh [DIR]     (default: deploy/; deploy/examples/ is not touched)
#
# The CRDs stay out of deploy/node-janitor.yaml (crds.enabled=false): they are applied first, from crds/ and
# deploy/crds/ (kopf's, copied from hack/crds/), so the chart's own custom objects render as plain objects.
# No `helm test` Job either (--skip-tests).
#
# helm: $HELM, else the one hack/build-k8s.sh builds into the cache, else `helm` on PATH.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/deploy}
namespace=node-janitor
chart=$repo/charts/node-janitor

if [ -z "${HELM:-}" ]; then
  cache=${NODE_JANITOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/node-janitor}
  version=$(awk '($1 == "require" && $2 == "helm.sh/helm/v3") {print $3} ($1 == "helm.sh/helm/v3") {print $2}' \
    "$repo/hack/helm/go.mod" | head -n1)
  if [ -x "$cache/helm-$version/helm" ]; then
    HELM=$cache/helm-$version/helm
  elif command -v helm >/dev/null; then
    HELM=helm
  else
    echo "render-deploy: no helm (run hack/build-k8s.sh, or set HELM)" >&2
    exit 1
  fi
fi

header="# Generated from charts/node-janitor (default values) by hack/render-deploy.sh; do not edit."
mkdir -p "$out/crds"

cat >"$out/namespace.yaml" <<YAML
$header
# The agents mount host paths (containerd's socket and root, the pod logs), which only the "privileged" Pod
# Security level admits; the operator's pod meets "restricted" on its own.
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    pod-security.kubernetes.io/enforce: privileged
YAML

{
  echo "$header"
  "$HELM" template "$namespace" "$chart" --namespace "$namespace" --set crds.enabled=false --skip-tests \
    --api-versions nodejanitor.io/v1alpha1/CleanupPolicy --api-versions kopf.dev/v1/ClusterKopfPeering | sed -e 's/[[:space:]]*$//'
} >"$out/node-janitor.yaml"

# kopf's peering CRDs are not generated from our models, so they are not in crds/: ship them beside.
cp "$repo/hack/crds/kopf.dev_peerings.yaml" "$out/crds/"
