#!/usr/bin/env bash
# The main job on the local control plane: bring the cluster up, install Tessera with its Helm
# chart, apply the sample resources and show them. The cluster keeps running afterwards
# (stop it with `npm run cluster -- down`).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build
npm run cluster -- up
KUBECONFIG="$(npm run --silent cluster -- kubeconfig)"
export KUBECONFIG
ASSETS="$(npm run --silent cluster -- build)"
kubectl="$ASSETS/kubectl"
helm="$ASSETS/helm"

echo "== installing the chart (CRDs, operator, RBAC, services)"
"$helm" upgrade --install tessera charts/tessera --namespace tessera-system --create-namespace --wait --timeout 3m

echo "== applying the samples"
"$kubectl" apply -f crds/samples/

echo "== kubectl get tessera"
"$kubectl" get tessera -A
echo
echo "== operator pod"
"$kubectl" get pods -n tessera-system -o wide
echo
echo "The cluster is still running: export KUBECONFIG=$KUBECONFIG"
echo "Stop it with: npm run cluster -- down"
