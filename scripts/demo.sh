#!/usr/bin/env bash
# The main job on the local control plane: bring the cluster up, install Tessera with its Helm
# chart, apply the sample resources and show them. The cluster keeps running afterwards
# (stop it with `npm run cluster -- down`).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build

# The demo base model: a Llama-architecture checkpoint pretrained here on the Brown corpus,
# State of the Union addresses and Moby Dick (a few minutes once, then cached).
MODEL="${XDG_CACHE_HOME:-$HOME/.cache}/tessera/models/llama-demo"
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "== pretraining the demo base model into $MODEL (once)"
  node dist/worker/main.js pretrain --output "$MODEL" --size demo
fi
echo "== perplexity of the demo model on the latest State of the Union address"
node -e 'import("./dist/worker/data/corpora.js").then(({ loadSotu }) => { const d = loadSotu().at(-1); require("fs").writeFileSync("/tmp/tessera-demo-eval.txt", d.text.slice(0, 20000)); console.log(d.id); })'
node dist/worker/main.js eval --model "$MODEL" --data /tmp/tessera-demo-eval.txt --format text
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
echo "== children the operator created (the sample PVCs do not exist here, so their pods wait)"
sleep 5
"$kubectl" get jobs,deployments,services -l app.kubernetes.io/managed-by=tessera-operator
echo
echo "The cluster is still running: export KUBECONFIG=$KUBECONFIG"
echo "Stop it with: npm run cluster -- down"
