"""Fixtures as one tar archive, extracted by the sandbox's root shell in a single step.

One `base64 -d | tar -x` costs two forks, far less than the engine's archive
upload (~50 ms), which is what keeps acquiring from the warm pool under 10 ms.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile

from sandbox.contract import OPERATOR_HOME, WorldSpec

USER_UID = 1000


def _owned_by_user(path: str) -> bool:
    return path == OPERATOR_HOME or path.startswith(OPERATOR_HOME + "/") or path.startswith("/tmp/")


def _dir_entry(path: str, uid: int, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/") or ".")
    info.type = tarfile.DIRTYPE
    info.uid = info.gid = uid
    info.mode = mode
    return info


def world_tar(spec: WorldSpec) -> bytes:
    """The spec's files and dirs as a tar; parents are listed so new ones get the right owner."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def parents(path: str) -> None:
            parent = posixpath.dirname(path)
            chain = []
            while parent not in ("/", "") and parent not in seen:
                chain.append(parent)
                parent = posixpath.dirname(parent)
            for d in reversed(chain):
                seen.add(d)
                tar.addfile(_dir_entry(d, USER_UID if _owned_by_user(d) else 0))

        for d in spec.dirs:
            parents(d)
            if d not in seen:
                seen.add(d)
                tar.addfile(_dir_entry(d, USER_UID if _owned_by_user(d) else 0))
        for f in spec.files:
            parents(f.path)
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size = len(data)
            info.mode = f.mode
            info.uid = info.gid = USER_UID if f.owner == "user" else 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def extract_script(spec: WorldSpec) -> str:
    """A root-shell snippet that extracts the world; existing directories keep their metadata."""
    if not spec.files and not spec.dirs:
        return ":"
    payload = base64.b64encode(world_tar(spec)).decode()
    lines = "\n".join(payload[i : i + 76] for i in range(0, len(payload), 76))
    return (
        "base64 -d <<'__SEK_TAR__' | tar -x -p --same-owner --no-overwrite-dir -C / -f -\n"
        f"{lines}\n__SEK_TAR__"
    )
