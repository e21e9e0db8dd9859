#!/bin/sh
# Build the sandbox image with no registry: a debootstrap minbase, imported as the base.
#   sandbox/image/build.sh [IMAGE]         (default sekfarm-dash:latest; needs root, debootstrap, docker)
# With a registry, plain `docker build -f Dockerfile.dash -t sekfarm-dash .` does the same.
set -eu
image=${1:-sekfarm-dash:latest}
base=sekfarm-base:bookworm
top=$(cd "$(dirname "$0")/../.." && pwd)
packages="tini,procps,bzip2,xz-utils,diffutils,file,patch"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include="$packages" bookworm "$root" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$base" >/dev/null
fi
# The classic builder with no network: nothing is fetched, the base has every package.
DOCKER_BUILDKIT=0 docker build --network none -q --build-arg BASE="$base" -f "$top/Dockerfile.dash" -t "$image" "$top" >/dev/null
echo "$image"
