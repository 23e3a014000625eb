"""The SQLite results store: round trips, transitions, epochs, errors, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sqlite3
import time

import pytest

from shrinkbench.errors import StoreError
from shrinkbench.results.store import DB_NAME, SCHEMA_VERSION, Store

CONFIG = {"data": {"name": "mnist"}, "model": {"name": "lenet"}, "pruning": {"strategy": "random",
          "compression": 4.0}, "seed": 3, "finetune": {"epochs": 2, "lr": 0.1}}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "out") as s:
        yield s


def test_creates_folder_database_wal_and_version(tmp_path):
    out = tmp_path / "a" / "b"
    with Store(out) as s:
        assert s.path == out / DB_NAME and s.path.is_file()
    conn = sqlite3.connect(out / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert cols == ["id", "kind", "config", "status", "metrics", "error", "traceback", "created",
                    "started", "finished", "host", "pid"]
    assert [r[1] for r in conn.execute("PRAGMA table_info(epochs)")] == ["run_id", "phase", "epoch", "metrics"]
    conn.close()


def test_register_round_trip_and_dedupe(store):
    before = time.time()
    assert store.register("r1", "prune", CONFIG) is True
    assert store.register("r1", "prune", {"other": 1}) is False
    run = store.get("r1")
    assert run["id"] == run["run_id"] == "r1"
    assert run["config"] == CONFIG and run["kind"] == "prune" and run["status"] == "pending"
    assert run["metrics"] is None and run["error"] is None and before <= run["created"] <= time.time()
    assert len(store.runs()) == 1
    assert store.get("missing") is None and store.status("missing") is None


def test_status_transitions(store):
    store.register("r1", "prune", CONFIG)
    store.start("r1", host="h1", pid=42)
    run = store.get("r1")
    assert (run["status"], run["host"], run["pid"]) == ("running", "h1", 42)
    assert run["started"] is not None and run["finished"] is None
    store.fail("r1", "CompressionError: too high", "Traceback ...")
    run = store.get("r1")
    assert (run["status"], run["error"], run["traceback"]) == ("failed", "CompressionError: too high", "Traceback ...")
    store.reset("r1")
    run = store.get("r1")
    assert run["status"] == "pending"
    assert run["error"] is run["traceback"] is run["started"] is run["host"] is run["pid"] is None
    store.start("r1")
    assert store.get("r1")["pid"] == os.getpid()
    metrics = {"post_test_acc1": 0.91, "speedup": 3.5, "env": {"torch": "2.3", "cpu": True}}
    store.finish("r1", metrics)
    run = store.get("r1")
    assert run["status"] == "done" and run["metrics"] == metrics and run["finished"] >= run["started"]
    store.start("r1")  # a forced re-run clears the old results
    assert store.get("r1")["metrics"] is None


def test_unregistered_and_invalid_values_raise(store):
    for call in (lambda: store.start("nope"), lambda: store.finish("nope", {}),
                 lambda: store.fail("nope", "e", "t"), lambda: store.reset("nope")):
        with pytest.raises(StoreError, match="'nope' is not registered"):
            call()
    with pytest.raises(StoreError, match="dense, prune"):
        store.register("x", "train", {})
    with pytest.raises(StoreError, match="dense, finetune"):
        store.add_epoch("x", "warmup", 0, {})
    with pytest.raises(StoreError, match="pending, running, done, failed"):
        store.runs(status="finished")


def test_runs_filters_and_counts(store):
    for i in range(5):
        store.register(f"p{i}", "prune", {"i": i})
    store.register("d0", "dense", {})
    store.start("p0"), store.finish("p0", {"a": 1})
    store.start("p1"), store.fail("p1", "boom", "tb")
    store.start("p2")
    assert store.counts() == {"pending": 3, "running": 1, "done": 1, "failed": 1}
    assert store.counts(kind="dense") == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    assert [r["id"] for r in store.runs(kind="prune", status="done")] == ["p0"]
    assert {r["id"] for r in store.runs(status=["done", "failed"])} == {"p0", "p1"}
    assert [r["id"] for r in store.runs(kind="dense")] == ["d0"]
    assert [r["id"] for r in store.runs(kind="prune")] == [f"p{i}" for i in range(5)]


def test_epochs_replace_delete_and_order(store):
    store.register("r", "prune", CONFIG)
    store.add_epoch("r", "finetune", 1, {"loss": 0.5})
    store.add_epoch("r", "finetune", 0, {"loss": 0.9})
    store.add_epoch("r", "dense", 0, {"loss": 2.0})
    store.add_epoch("r", "finetune", 1, {"loss": 0.4, "val_acc1": 0.8, "epoch": "1", "phase": "x"})  # rewrite
    assert store.epochs("r") == [
        {"phase": "dense", "epoch": 0, "loss": 2.0},
        {"phase": "finetune", "epoch": 0, "loss": 0.9},
        {"phase": "finetune", "epoch": 1, "loss": 0.4, "val_acc1": 0.8},
    ]
    assert [e["epoch"] for e in store.epochs("r", phase="finetune")] == [0, 1]
    assert store.delete_epochs("r", "finetune", 1) == 1
    assert store.epochs("r", phase="finetune") == [{"phase": "finetune", "epoch": 0, "loss": 0.9}]
    assert [e["run_id"] for e in store.all_epochs()] == ["r", "r"]


def test_numpy_values_and_nan_survive(store):
    np = pytest.importorskip("numpy")
    store.register("r", "prune", {"c": np.float32(2.5), "ids": np.arange(2)})
    store.finish("r", {"loss": float("nan"), "n": np.int64(7)})
    run = store.get("r")
    assert run["config"] == {"c": 2.5, "ids": [0, 1]}
    assert run["metrics"]["n"] == 7 and run["metrics"]["loss"] != run["metrics"]["loss"]


def test_corrupt_file_raises_naming_it(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database at all" * 50)
    with pytest.raises(StoreError, match=str(tmp_path / DB_NAME)):
        Store(tmp_path)


def test_damaged_database_raises(tmp_path):
    with Store(tmp_path) as s:
        s.register("r", "prune", {})
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # keep the header, wreck the schema page
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        (tmp_path / (DB_NAME + suffix)).unlink(missing_ok=True)
    with pytest.raises(StoreError, match=DB_NAME):
        Store(tmp_path).runs()


def test_foreign_database_and_newer_schema_raise(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / DB_NAME)
    conn.execute("CREATE TABLE stuff (x)")
    conn.commit(), conn.close()
    with pytest.raises(StoreError, match="another program"):
        Store(foreign)
    newer = tmp_path / "newer"
    Store(newer).close()
    conn = sqlite3.connect(newer / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit(), conn.close()
    with pytest.raises(StoreError, match="schema version"):
        Store(newer)


def test_open_without_create_and_closed_store(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    s = Store(tmp_path)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get("r")


def test_pickle_reopens(store):
    store.register("r", "prune", CONFIG)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get("r")["config"] == CONFIG
    clone.close()


def _worker(store, worker, n_runs, shared, queue):
    inserted, errors = [], []
    try:
        for i in range(n_runs):
            rid = f"w{worker}-{i}"
            assert store.register(rid, "prune", {"worker": worker, "i": i})
            store.start(rid)
            store.add_epoch(rid, "finetune", 0, {"loss": 1.0})
            store.add_epoch(rid, "finetune", 1, {"loss": 0.5})
            store.add_epoch(rid, "finetune", 1, {"loss": 0.25})
            store.finish(rid, {"worker": worker, "i": i})
            if i < shared:
                if store.register(f"shared-{i}", "dense", {"i": i}):
                    inserted.append(i)
    except Exception as exc:  # report everything, including "database is locked"
        errors.append(repr(exc))
    queue.put((inserted, errors, store._pid == os.getpid()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_concurrent_writers_lose_nothing(tmp_path, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method")
    n_workers, n_runs, shared = (4, 100, 40) if method == "fork" else (2, 20, 10)
    store = Store(tmp_path)  # opened in the parent: forked children must reconnect
    store.register("parent", "prune", {})
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(store, w, n_runs, shared, queue)) for w in range(n_workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n_workers
    assert [e for _, errs, _ in results for e in errs] == []
    assert all(own for _, _, own in results)  # each child used a connection of its own
    inserted = sorted(i for ins, _, _ in results for i in ins)
    assert inserted == list(range(shared))  # each shared id inserted by exactly one writer
    assert store.counts(kind="prune") == {"pending": 1, "running": 0, "done": n_workers * n_runs, "failed": 0}
    assert store.counts(kind="dense")["pending"] == shared
    done = store.runs(kind="prune", status="done")
    assert sorted((r["metrics"]["worker"], r["metrics"]["i"]) for r in done) == [
        (w, i) for w in range(n_workers) for i in range(n_runs)
    ]
    epochs = store.all_epochs()
    assert len(epochs) == 2 * n_workers * n_runs
    assert all(e["loss"] == (1.0 if e["epoch"] == 0 else 0.25) for e in epochs)
    store.close()


def test_a_foreign_database_is_refused_without_being_changed(tmp_path):
    import hashlib

    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("create table t(x)")
    conn.commit(), conn.close()
    digest = hashlib.sha256((tmp_path / DB_NAME).read_bytes()).hexdigest()
    for create in (True, False):
        with pytest.raises(StoreError, match="another program.*left unchanged"):
            Store(tmp_path, create=create)
    assert hashlib.sha256((tmp_path / DB_NAME).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]  # no -wal or -shm
    # same user_version as ours, but not our tables
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.commit(), conn.close()
    with pytest.raises(StoreError, match=r"another program \(tables: t\)"):
        Store(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    sqlite3.connect(empty / DB_NAME).close()  # an empty file becomes a store
    with Store(empty) as s:
        s.register("r", "prune", {})
        assert s.status("r") == "pending"
