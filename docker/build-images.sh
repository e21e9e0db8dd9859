#!/bin/sh
# Build the worker image (cpu target) on a machine without a registry, e.g. this one:
#   docker/build-images.sh [TAG]          (default sekfarm-worker:latest)
# Uses the debootstrap base from sandbox/image/build.sh (built if missing), Debian's python3,
# host networking for the build (no bridge here), and any extra CA the host trusts for PyPI.
# With a registry, plain `docker build --target cpu -t sekfarm-worker .` does the same.
set -eu
tag=${1:-sekfarm-worker:latest}
top=$(cd "$(dirname "$0")/.." && pwd)
base=sekfarm-base:bookworm
docker image inspect "$base" >/dev/null 2>&1 || "$top/sandbox/image/build.sh" >/dev/null
extra=""
for f in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$f" ] && extra="$extra$(cat "$f")
"
done
DOCKER_BUILDKIT=0 docker build --network host -q --build-arg BASE="$base" \
  --build-arg EXTRA_CA_CERTS="$extra" --target "${TARGET:-cpu}" -f "$top/Dockerfile" -t "$tag" "$top" >/dev/null
echo "$tag"
