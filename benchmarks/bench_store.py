"""Results store throughput against raw sqlite3, concurrent writers, and load() against json_normalize.

Run: python benchmarks/bench_store.py [--runs 500]. Prints times and ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sqlite3
import tempfile
import time
from pathlib import Path

import pandas as pd

from shrinkbench.results import load
from shrinkbench.results.store import Store


def _config(i: int) -> dict:
    return {"data": {"name": "cifar10", "batch_size": 128}, "model": {"name": "resnet20"},
            "pruning": {"strategy": "random", "compression": 2 ** (i % 6 + 1)},
            "finetune": {"epochs": 3, "lr": 0.01}, "seed": i}


def _metrics(i: int) -> dict:
    return {"post_test_acc1": 0.9 - i * 1e-4, "compression_ratio": 2.0, "speedup": 1.9,
            "env": {"python": "3.11"}}


def _store_work(out: Path, worker: int, n: int) -> None:
    with Store(out) as store:
        for i in range(n):
            rid = f"w{worker}-{i}"
            store.register(rid, "prune", _config(i))
            store.start(rid)
            for epoch in range(3):
                store.add_epoch(rid, "finetune", epoch, {"loss": 1.0 / (epoch + 1)})
            store.finish(rid, _metrics(i))


def _raw_work(path: Path, n: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT, config TEXT, status TEXT, metrics TEXT,"
                 " created REAL, started REAL, finished REAL, host TEXT, pid INTEGER)")
    conn.execute("CREATE TABLE epochs (run_id TEXT, phase TEXT, epoch INTEGER, metrics TEXT,"
                 " PRIMARY KEY (run_id, phase, epoch))")
    for i in range(n):
        rid = f"w0-{i}"
        conn.execute("INSERT OR IGNORE INTO runs (id, kind, config, status, created) VALUES (?, 'prune', ?,"
                     " 'pending', ?)", (rid, json.dumps(_config(i), sort_keys=True), time.time()))
        conn.execute("UPDATE runs SET status='running', started=?, host='h', pid=1 WHERE id=?", (time.time(), rid))
        for epoch in range(3):
            conn.execute("INSERT OR REPLACE INTO epochs VALUES (?, 'finetune', ?, ?)",
                         (rid, epoch, json.dumps({"loss": 1.0 / (epoch + 1)})))
        conn.execute("UPDATE runs SET status='done', metrics=?, finished=? WHERE id=?",
                     (json.dumps(_metrics(i), sort_keys=True), time.time(), rid))
    conn.close()


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n, workers = args.runs, args.workers
    writes = n * 6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_raw = _timed(_raw_work, tmp / "raw.sqlite", n)
        t_store = _timed(_store_work, tmp / "one", 0, n)
        print(f"sequential, {n} runs x 6 transactions: raw sqlite3 {t_raw:.2f} s, Store {t_store:.2f} s, "
              f"ratio Store/raw {t_store / t_raw:.2f}")

        per = n // workers
        ctx = mp.get_context("fork")
        start = time.perf_counter()
        procs = [ctx.Process(target=_store_work, args=(tmp / "many", w, per)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        t_conc = time.perf_counter() - start
        with Store(tmp / "many") as store:
            got = store.counts()["done"]
        print(f"concurrent, {workers} processes x {per} runs: {t_conc:.2f} s "
              f"({workers * per * 6 / t_conc:.0f} transactions/s vs {writes / t_store:.0f} sequential), "
              f"runs kept {got}/{workers * per}")

        t_load = _timed(load, tmp / "one")
        rows = sqlite3.connect(tmp / "one" / "results.sqlite").execute(
            "SELECT id, config, metrics FROM runs").fetchall()

        def baseline() -> None:
            pd.json_normalize([{"run_id": r, **json.loads(m), **json.loads(c)} for r, c, m in rows])

        t_base = _timed(baseline)
        print(f"load {n} runs: load() {t_load * 1e3:.1f} ms, json_normalize of the raw rows "
              f"{t_base * 1e3:.1f} ms, ratio {t_load / t_base:.2f}")


if __name__ == "__main__":
    main()
