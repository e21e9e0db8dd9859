"""The cells backend: a fresh set of Linux namespaces per episode instead of a container.

A long-lived cell host per worker process (host.py) makes each cell: new mount, pid, ipc
and uts namespaces, joined to a lent network namespace with only `lo`, over a read-only
root filesystem made once from the sandbox image, with a tmpfs writable layer (overlay).
The same two shells and session protocol as the docker backend run inside (shell_world.py).
Imported lazily (through CellsSandboxConfig.open_world).
"""
