#!/bin/sh
# Make the read-only root filesystem of the cells backend: the sandbox image, as a directory.
#   sandbox/image/rootfs.sh DEST [IMAGE]      (default IMAGE sekfarm-dash:latest; needs root)
# Exported from the Docker engine when it has IMAGE; on a machine without an engine, built with
# the same recipe as the image (a debootstrap minbase plus Dockerfile.dash's steps, no registry).
set -eu
dest=$1
image=${2:-sekfarm-dash:latest}
top=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$dest/bin/sh" ] && { echo "$dest"; exit 0; }
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if command -v docker >/dev/null 2>&1 && docker image inspect "$image" >/dev/null 2>&1; then
  cid=$(docker create "$image" true)
  docker export "$cid" | tar -x -C "$tmp"
  docker rm -f "$cid" >/dev/null
  rm -f "$tmp/.dockerenv"
else
  debootstrap --variant=minbase --include=tini,procps,bzip2,xz-utils,diffutils,file,patch bookworm "$tmp" >/dev/null
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
  # Dockerfile.dash's steps
  chroot "$tmp" /bin/sh -e -c '
    ln -sf dash /bin/sh
    rm -f /etc/motd /etc/issue.net; : > /etc/motd
    useradd --create-home --uid 1000 --shell /bin/sh user
    mkdir -p /usr/local/share/man/man1 /tmp/.sek /run/sekfarm; chmod 1777 /tmp/.sek
    mkfifo -m 600 /run/sekfarm/operator.in'
  install -m 0755 "$top/sandbox/image/man" "$tmp/usr/local/bin/man"
fi
echo sandbox > "$tmp/etc/hostname"; : > "$tmp/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tsandbox\n' > "$tmp/etc/hosts"
chmod 755 "$tmp"
# another build may have won the race: keep its result
mv -T "$tmp" "$dest" 2>/dev/null && trap - EXIT
echo "$dest"
