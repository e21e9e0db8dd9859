#!/bin/sh
# Build the sandbox image, from a public base where a registry answers, else offline.
#   sandbox/image/build.sh [IMAGE]          (default sekfarm-dash:latest; needs docker)
# SEKFARM_IMAGE_BASE picks the base: a public image (default debian:bookworm-slim), pulled if it
# is not here yet; if it cannot be had, or with SEKFARM_IMAGE_BASE=debootstrap, the base is a
# debootstrap minbase imported into docker (needs root and debootstrap, no registry at all).
set -eu
image=${1:-sekfarm-dash:latest}
public=${SEKFARM_IMAGE_BASE:-debian:bookworm-slim}
top=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$public" != debootstrap ] && { docker image inspect "$public" >/dev/null 2>&1 ||
     timeout 120 docker pull -q "$public" >/dev/null 2>&1; }; then
  # Missing packages are installed from Debian's mirrors: host networking, since the engine may
  # run without a bridge (sandboxes never get one).
  if DOCKER_BUILDKIT=0 docker build --network host -q --build-arg BASE="$public" \
       -f "$top/Dockerfile.dash" -t "$image" "$top" >/dev/null; then
    echo "$image"
    exit 0
  fi
  echo "build.sh: building from $public failed (no package mirror?); building offline instead" >&2
fi

base=sekfarm-base:bookworm
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
