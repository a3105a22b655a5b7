#!/usr/bin/env bash
# Build the orasi image (docker/Dockerfile) without a Docker engine: Debian's buildah with runc
# (vfs storage, OCI isolation, host network). No image registry is reachable here, so the base
# image is made locally first: a Debian bookworm root filesystem from debootstrap, imported with
# `buildah from scratch` + `buildah add` as localhost/debian:bookworm-slim (made once, reused).
# The image is written to $ORASI_IMAGES_DIR (default .ci/tmp/images) as a docker-archive.
# Usage: scripts/images.sh           BASE_IMAGE=... to build on another (pullable) base
set -euo pipefail
cd "$(dirname "$0")/.."
out="${ORASI_IMAGES_DIR:-$PWD/.ci/tmp/images}"
base="${BASE_IMAGE:-localhost/debian:bookworm-slim}"
version=$(python3 -c "import re; print(re.search(r'__version__ = \"(.+)\"', open('orasi_common/version.py').read())[1])")
buildah=(buildah --storage-driver vfs)
mkdir -p "$out"

missing=()
for tool in buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if [ "$base" = localhost/debian:bookworm-slim ] && ! "${buildah[@]}" inspect --type image "$base" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "images: debootstrap bookworm (minbase) → $base" >&2
  debootstrap --variant=minbase bookworm "$rootfs" >"$out/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  container=$("${buildah[@]}" from scratch)
  "${buildah[@]}" add "$container" "$rootfs" /
  "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$container"
  "${buildah[@]}" commit --rm "$container" "$base"
fi

tag="localhost/orasi:$version"
# This machine's CA bundle, for pip inside the build (it may trust a TLS-inspecting proxy).
ca="${ORASI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
secret=()
[ -f "$ca" ] && secret=(--secret "id=ca,src=$ca")
"${buildah[@]}" bud --isolation oci --runtime runc --network host --layers --format docker \
  -f docker/Dockerfile "${secret[@]}" \
  --build-arg BASE_IMAGE="$base" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$tag" .
# Docker's image format: the OCI format has no HEALTHCHECK (buildah drops it).
rm -f "$out/orasi-$version.tar"
"${buildah[@]}" push "$tag" "docker-archive:$out/orasi-$version.tar:$tag"
echo "images: $tag → $out/orasi-$version.tar ($(du -m "$out/orasi-$version.tar" | cut -f1) MiB archive)"
"${buildah[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$tag"
