# Tessera: one image holds both entry points, tessera-operator and tessera-worker.
#   docker build -t ghcr.io/tessera-dev/tessera:0.1.0 .                    CPU (default: the last stage)
#   docker build --target gpu -t ghcr.io/tessera-dev/tessera:0.1.0-cuda .  CUDA 12 execution provider

ARG NODE_IMAGE=node:20-bookworm
ARG NODE_SLIM_IMAGE=node:20-bookworm-slim
# onnxruntime-node's CUDA provider needs the CUDA 12 and cuDNN 9 user-space libraries, which node images lack.
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- build: compile TypeScript, then keep production dependencies only ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
# .npmrc skips onnxruntime-node's CUDA download: the CPU provider ships inside the package.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proto/ proto/
COPY operator/ operator/
COPY worker/ worker/
RUN npm run build \
 && chmod 0755 dist/operator/main.js dist/worker/main.js \
 && npm prune --omit=dev --no-audit --no-fund

# ---- deps-gpu: production dependencies with onnxruntime-node's CUDA 12 provider ----
FROM ${NODE_IMAGE} AS deps-gpu
WORKDIR /src
# The environment variable wins over .npmrc's onnxruntime-node-install=skip (onnxruntime-node script/install-utils.js).
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
COPY package.json package-lock.json .npmrc ./
# npm 11 only warns about unapproved install scripts and a later npm skips them, so run ORT's installer ourselves if npm did not, then fail the build if the provider is missing.
RUN npm ci --omit=dev --foreground-scripts --no-audit --no-fund \
 && ORT_BIN=node_modules/onnxruntime-node/bin/napi-v6/linux/x64 \
 && { test -f "$ORT_BIN/libonnxruntime_providers_cuda.so" || node node_modules/onnxruntime-node/script/install.js; } \
 && test -f "$ORT_BIN/libonnxruntime_providers_cuda.so"

FROM ${NODE_SLIM_IMAGE} AS node-slim

# ---- gpu: the same application on the CUDA runtime, for worker pods that request nvidia.com/gpu ----
FROM ${CUDA_RUNTIME_IMAGE} AS gpu
ENV NODE_ENV=production
COPY --from=node-slim /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps-gpu /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY package.json ./
COPY proto/ proto/
COPY crds/ crds/
RUN ln -s /app/dist/operator/main.js /usr/local/bin/tessera-operator \
 && ln -s /app/dist/worker/main.js /usr/local/bin/tessera-worker
USER 65532:65532
ENTRYPOINT ["tessera-worker"]

# ---- runtime: the CPU image, operator and workers ----
FROM ${NODE_SLIM_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY package.json ./
COPY proto/ proto/
COPY crds/ crds/
# Symlinks keep module resolution rooted at /app: Node resolves the real path of the entry file.
RUN ln -s /app/dist/operator/main.js /usr/local/bin/tessera-operator \
 && ln -s /app/dist/worker/main.js /usr/local/bin/tessera-worker
# The distroless "nonroot" uid, which the Helm chart's securityContext also uses.
USER 65532:65532
ENTRYPOINT ["tessera-operator"]
