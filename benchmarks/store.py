"""The store at scale: put, get, list and `status` on the local disk and on an S3 server (moto's,
over HTTP), and export throughput with its memory, at growing numbers of synthetic trajectories.

    python benchmarks/store.py --quick      # 1,000 and 5,000 trajectories, status at 20,000: a minute or two
    python benchmarks/store.py              # 10,000 and 100,000, and status at 1,000,000 on the local disk

Targets: `status` under 100 ms at 1,000,000 trajectories on either backend (it reads counters,
whatever the store's size), export at least 5,000 trajectories/s on the local disk with flat
memory (peak RSS of the export process at the larger size close to the smaller's).

Filling a store is set-up, not measured: files (or objects, written concurrently) and their
counters are written in bulk. put and get are timed one call at a time on top of that fill.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.store import Store  # noqa: E402
from common.store_counts import StoreCounts  # noqa: E402
from producer.redis_local import LocalRedis  # noqa: E402
from producer.status import collect  # noqa: E402
from tests.store_data import trajectory  # noqa: E402

_EXPORT = """
import json, resource, sys, time
from common.store import Store
from producer.exporting import export
store = Store(sys.argv[1], json.loads(sys.argv[2]))
t = time.perf_counter()
result = export(store, sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t, "rows": result.added["sft"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def fill(store: Store, counts: StoreCounts, start: int, stop: int) -> None:
    """Trajectories [start, stop) written in bulk (3 in 4 keepers), counted as the farm counts them."""
    batch: dict[str, bytes] = {}
    items = []

    def flush() -> None:
        if store.local:
            for path, data in batch.items():
                with open(path, "wb") as f:
                    f.write(data)
        else:
            store.fs.pipe(batch)
        counts._note_many(items)
        batch.clear()
        items.clear()

    if store.local:
        os.makedirs(f"{store.root}/trajectories", exist_ok=True)
    for i in range(start, stop):
        t = trajectory(i, keep=i % 4 != 3)
        batch[f"{store.root}/trajectories/{t.id}.json"] = t.model_dump_json().encode()
        items.append(("trajectories", t.id, t))
        if len(batch) >= 2000:
            flush()
    flush()


def timed(fn, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (n - 1))], 3)}


def measure(store: Store, client, size: int, filled: int, extra: int, ops: int) -> dict:
    """At `size` filled trajectories (plus `extra` from earlier timed puts)."""
    counts = StoreCounts(store, client)
    store.counts = None  # fill counts in bulk; the timed puts count one by one below
    fill(store, counts, filled, size)
    counts.repair()  # the state marker (the fill counted everything already: nothing is read)
    store.counts = counts
    out: dict = {"trajectories": size}
    new = [trajectory(10 ** 8 + size + i) for i in range(ops)]
    out["put"] = timed(lambda i: store.put("trajectories", new[i].id, new[i]), ops)
    out["get"] = timed(lambda i: store.get("trajectories", f"traj-{(i * 7919) % size:08d}"), ops)
    t = time.perf_counter()
    listed = len(store.ids("trajectories"))
    out["list_s"] = round(time.perf_counter() - t, 3)
    assert listed == size + extra + ops, (listed, size + extra + ops)
    status = collect(store, client)
    assert status.rollouts == listed, (status.rollouts, listed)
    out["status"] = timed(lambda i: collect(store, client), 20)
    return out


def export_run(url: str, options: dict, out_dir: str, trajectories: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _EXPORT, url, json.dumps(options), out_dir], capture_output=True,
                          text=True, check=True, cwd=str(Path(__file__).resolve().parents[1]))
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["trajectories_per_s"] = round(trajectories / data["seconds"], 1)  # every one is read, keeper or not
    data["rows_per_s"] = round(data["rows"] / data["seconds"], 1)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Small sizes, for development.")
    ap.add_argument("--sizes", default=None, help="Comma-separated store sizes (default 10000,100000).")
    ap.add_argument("--million", type=int, default=None, help="Size of the local status-only run (default 1,000,000).")
    ap.add_argument("--ops", type=int, default=None, help="Timed put and get calls per size.")
    ap.add_argument("--no-s3", action="store_true", help="Local disk only.")
    args = ap.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000,5000" if args.quick else "10000,100000")).split(",")]
    million = args.million or (20_000 if args.quick else 1_000_000)
    ops = args.ops or (100 if args.quick else 500)
    work = Path(tempfile.mkdtemp(prefix="sekfarm-bench-store-"))
    result: dict = {"sizes": sizes, "ops": ops, "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]}
    servers = []
    try:
        redis_server = LocalRedis(work / "redis", appendonly=False).start()
        servers.append(redis_server)
        from common.farm_store import redis_client

        client = redis_client(redis_server.url)
        backends = {"local": (str(work / "local"), {})}
        if not args.no_s3:
            from tests.s3_server import MotoServer

            s3 = MotoServer().start()
            servers.append(s3)
            backends["s3"] = (f"s3://{s3.bucket()}/farm", s3.options())
        for name, (url, options) in backends.items():
            store, filled = Store(url, options), 0
            result[name] = []
            for k, size in enumerate(sizes):
                row = measure(store, client, size, filled, k * ops, ops)  # the timed puts stay in the store
                filled = size
                if name == "local":
                    row["export"] = export_run(url, options, str(work / f"export-{size}"), size + (k + 1) * ops)
                    shutil.rmtree(work / f"export-{size}", ignore_errors=True)
                print(f"{name} {size}: {json.dumps(row)}", flush=True)
                result[name].append(row)
        # status at a million on the local disk: filled and counted in bulk, then read from the counters.
        big = Store(str(work / "million"))
        counts = StoreCounts(big, client)
        t = time.perf_counter()
        fill(big, counts, 0, million)
        counts.repair(wait_s=3600)
        fill_s = time.perf_counter() - t
        status = timed(lambda i: collect(big, client), 20)
        assert collect(big, client).rollouts == million
        result["status_at_scale"] = {"trajectories": million, "status": status, "fill_s": round(fill_s, 1)}
        print(f"local {million}: status {status}", flush=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["peak_rss_mb_bench"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
