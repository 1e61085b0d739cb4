#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for scripts/cuda-check.sh on a GPU machine that has CUDA, cuBLAS,
# CMake and ninja but no Node.js and no network: this machine's node binary (xz-compressed, about
# 24 MB), the four N-API headers, node-addon-api, and the built TypeScript for the benchmark. Run
# once here, then copy .gpu/ to the GPU machine with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
node_bin=$(command -v node)
headers=""
for dir in "$(npm config get nodedir 2>/dev/null || true)/include/node" "$(dirname "$(dirname "$node_bin")")/include/node" "$HOME"/.cmake-js/node-*/*/include/node; do
  if [ -f "$dir/node_api.h" ]; then headers=$dir; break; fi
done
[ -n "$headers" ] || { echo "prepare-gpu-carry: no node_api.h found (looked in npm's nodedir, next to node, ~/.cmake-js)"; exit 1; }
[ -f node_modules/node-addon-api/napi.h ] || { echo "prepare-gpu-carry: run npm install first (node-addon-api is missing)"; exit 1; }
rm -rf .gpu && mkdir -p .gpu/include/node
xz -T2 -c "$node_bin" > .gpu/node.xz
for h in node_api.h node_api_types.h js_native_api.h js_native_api_types.h; do cp "$headers/$h" .gpu/include/node/; done
mkdir -p .gpu/node-addon-api
cp node_modules/node-addon-api/*.h .gpu/node-addon-api/
node --version > .gpu/node-version.txt
# The benchmark (npm run bench -- cuda) from the built TypeScript, with the one run-time dependency
# its imports load (protobufjs, for the ONNX writer the model module imports; sharp is loaded only
# to read images): .gpu/dist resolves its packages in .gpu/node_modules.
[ -f dist/bench/run.js ] || { echo "prepare-gpu-carry: build the TypeScript first (npm run build:ts)"; exit 1; }
cp -r dist .gpu/dist
mkdir -p .gpu/node_modules
for package in protobufjs long; do cp -r "node_modules/$package" .gpu/node_modules/; done
echo "prepare-gpu-carry: .gpu holds node $(cat .gpu/node-version.txt) ($(du -sh .gpu | cut -f1)), headers from $headers"
