#!/bin/sh
# Entrypoint of the worker images: run the command as the unprivileged `farm` user.
# Started as root (the image's default), it first
#  - hands a local store to farm: the engine creates a missing bind-mount source (./farm-store)
#    owned by root, and stores written by images that ran as root hold root-owned files; only
#    what farm does not own yet is changed, so a later start is a quick scan;
#  - adds the engine socket's group, where the socket is mounted, to farm's groups: the gid
#    differs per host, so it is read from the socket, never baked into the image; farm reaches
#    the engine through that group, not by being root;
#  - then drops root for good (setpriv: farm's uid, gid and groups, no way back to root).
# Started as another user (compose `user:`, `docker run --user`), it changes nothing: that user
# needs write access to the store and, to start sandboxes, the socket's group (`group_add`).
set -eu
user=farm
if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi

store=${FARM_STORE:-./farm-store}
case "$store" in
  file://*) store=${store#file://} ;;
esac
case "$store" in
  *://*) ;;  # an object store: nothing local to own
  *)
    if ! { mkdir -p "$store" && find "$store" \! -user "$user" -exec chown "$user:$user" {} +; }; then
      echo "farm-entrypoint: cannot hand the store $store to user $user (uid $(id -u "$user")); make it" \
           "writable for that uid on the host (e.g. chown -R $(id -u "$user") DIR)" >&2
    fi ;;
esac

groups=$(id -g "$user")
socket=${FARM_DOCKER_URL:-${DOCKER_HOST:-unix:///var/run/docker.sock}}
case "$socket" in
  unix://*)
    socket=${socket#unix://}
    if [ -S "$socket" ]; then
      groups="$groups,$(stat -c %g "$socket")"
    fi ;;
esac

if [ "${HOME:-/root}" = /root ]; then
  export HOME="/home/$user"
fi
export USER="$user"
exec setpriv --reuid="$user" --regid="$user" --groups="$groups" --inh-caps=-all --no-new-privs -- "$@"
