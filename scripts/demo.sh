#!/usr/bin/env bash
# The main job on the local control plane: bring the cluster up, install Tessera with its Helm
# chart, apply the sample resources and show them; then train adapters, compress them into a JD
# bundle with an AdapterCluster and serve them with a LoRAServer behind the OpenAI API. The
# cluster keeps running afterwards (stop it with `npm run cluster -- down`).
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

# The product end to end: adapters trained here → an AdapterCluster compresses them into a JD bundle
# → a LoRAServer serves every one of them from one replica behind the OpenAI API.
ADAPTERS="${XDG_CACHE_HOME:-$HOME/.cache}/tessera/demo-adapters"
if [ ! -f "$ADAPTERS/.complete" ]; then
  echo "== training 8 LoRA adapters on the demo model, one per Brown corpus document (once)"
  node dist/worker/main.js task-adapters --model "$MODEL" --output "$ADAPTERS" --count 8 --rank 8 --target-modules q_proj,v_proj,o_proj
  touch "$ADAPTERS/.complete"
fi
NS=tessera-demo
"$kubectl" create namespace "$NS" --dry-run=client -o yaml | "$kubectl" apply -f -
mkdir -p /tmp/tessera-demo-bundles
{
  cat <<YAML
apiVersion: tessera.dev/v1alpha1
kind: AdapterCluster
metadata: {name: brown, namespace: $NS}
spec:
  baseModel: {uri: "file://$MODEL"}
  compression: {method: jd-full, rank: 8, clusters: 1}
  output: {uri: "file:///tmp/tessera-demo-bundles"}
  adapters:
YAML
  for dir in "$ADAPTERS"/*/; do
    name="$(basename "$dir")"
    echo "    - {name: $name, uri: \"file://${dir%/}\"}"
  done
  cat <<YAML
---
apiVersion: tessera.dev/v1alpha1
kind: LoRAServer
metadata: {name: brown-api, namespace: $NS}
spec:
  baseModel: {uri: "file://$MODEL"}
  adapterClusters: [brown]
  replicas: 1
  resources: {gpus: 0}
YAML
} | "$kubectl" apply -f -
echo "== waiting for the AdapterCluster's bundle and the LoRAServer's replica"
"$kubectl" wait -n "$NS" --for=condition=Ready adaptercluster/brown --timeout=10m
"$kubectl" wait -n "$NS" --for=jsonpath='{.status.bundleRevision.current}' loraserver/brown-api --timeout=5m
"$kubectl" wait -n "$NS" --for=condition=Ready loraserver/brown-api --timeout=5m
"$kubectl" get tessera -n "$NS"
echo
"$kubectl" get adaptercluster brown -n "$NS" -o jsonpath='{range .status.adapters[*]}{.name}{"\t"}{.reconstructionErrorPercent}{"% reconstruction error\n"}{end}'
POD_IP="$("$kubectl" get pods -n "$NS" -l tessera.dev/name=brown-api -o jsonpath='{.items[0].status.podIP}')"
ADAPTER="$(basename "$(ls -d "$ADAPTERS"/*/ | head -1)")"
echo "== the OpenAI API of the replica ($POD_IP:8000; in a real cluster: the Service brown-api.$NS.svc)"
curl -s "http://$POD_IP:8000/v1/models" | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log("models:",JSON.parse(s).data.map((m)=>m.id).join(", ")))'
for model in brown-api "$ADAPTER"; do
  echo "-- completion from $model"
  curl -s "http://$POD_IP:8000/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$model\", \"prompt\": \"The city council said\", \"max_tokens\": 24, \"temperature\": 0}" \
    | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(r.choices?.[0]?.text ?? s)})'
done

echo
echo "The cluster is still running: export KUBECONFIG=$KUBECONFIG"
echo "Stop it with: npm run cluster -- down"
