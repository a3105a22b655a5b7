#!/usr/bin/env bash
# Render the kustomize base (k8s/base/resources.yaml) and the bridge component
# (k8s/components/bridge/resources.yaml) from the Helm chart, so that the two ways of deploying
# share one source: helm template with k8s/base-values.yaml, Helm's own labels removed, the
# bridge's objects (app.kubernetes.io/component: bridge) split into the component that the
# regions with bridges include. tests/deploy checks that the committed files are this output.
# Usage: scripts/render-k8s-base.sh [OUTDIR]    (default: k8s/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-k8s}"
tools=$(scripts/deploy-tools.sh)
"$tools/bin/helm" template orasi helm/orasi -f k8s/base-values.yaml \
  | python3 scripts/split_k8s_base.py "$out"
