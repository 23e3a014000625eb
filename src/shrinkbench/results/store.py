"""The results store: one SQLite database (WAL) per output folder, safe for concurrent processes."""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..common import DB_NAME
from ..errors import StoreError
from .files import to_json

SCHEMA_VERSION = 1
KINDS = ("dense", "prune")
STATUSES = ("pending", "running", "done", "failed")
PHASES = ("dense", "finetune")
BUSY_TIMEOUT_S = 30.0
LOCK_DEADLINE_S = 300.0

_SQLITE_MAGIC = b"SQLite format 3\x00"
_RUN_COLUMNS = (
    "id, kind, config, status, metrics, error, traceback, created, started, finished, host, pid"
)
_RUN_KEYS = tuple(key.strip() for key in _RUN_COLUMNS.split(","))
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('dense', 'prune')),
        config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'done', 'failed')),
        metrics TEXT,
        error TEXT,
        traceback TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        host TEXT,
        pid INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS runs_kind_status ON runs (kind, status)",
    """CREATE TABLE IF NOT EXISTS epochs (
        run_id TEXT NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('dense', 'finetune')),
        epoch INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY (run_id, phase, epoch)
    )""",
)

T = TypeVar("T")

# Connections inherited across fork: closing them in the child could disturb the parent's locks,
# so they are kept alive here until the process exits.
_INHERITED: list[sqlite3.Connection] = []


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _without(metrics: dict, *keys: str) -> dict:
    """`metrics` less `keys`: the table's own columns win over same-named metric keys."""
    return {k: v for k, v in metrics.items() if k not in keys}


def _choices(kind: str, value: Any, valid: Iterable[str]) -> StoreError:
    return StoreError(f"invalid {kind} {value!r}; choose from: {', '.join(valid)}")



def stores_below_hint(folder: Path, limit: int = 3) -> str:
    """'; results stores below it: A, B' when sub-folders of `folder` hold stores (the quickstart
    writes shrinkbench-out/quickstart), else ''."""
    try:
        found = sorted(p.parent for p in Path(folder).glob(f"*/{DB_NAME}") if p.is_file())
    except OSError:
        return ""
    if not found:
        return ""
    shown = ", ".join(str(p) for p in found[:limit]) + (", ..." if len(found) > limit else "")
    return f"; results stores below it: {shown}"

class Store:
    """The runs and per-epoch metrics of one output folder, in `<out_dir>/results.sqlite`."""

    def __init__(self, out_dir: str | os.PathLike, *, create: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / DB_NAME
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise StoreError(f"output folder {self.out_dir} exists and is not a folder")
        if not create and not self.path.is_file():
            raise StoreError(f"no results store in {self.out_dir} (expected {self.path})"
                             + stores_below_hint(self.out_dir))
        if create:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"output folder {self.out_dir} cannot be created: {exc}") from None
        self._lock = threading.RLock()
        self._conn_obj: sqlite3.Connection | None = None
        self._pid = -1
        self._closed = False
        self._rng = random.Random(os.getpid())
        self._conn()

    # -- connection handling ---------------------------------------------------------------

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"results store {self.path} cannot be read: {exc}") from None
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"results store {self.path} is not an SQLite database (corrupt or foreign file)")

    def _check_schema_readonly(self) -> None:
        """Refuse a database that is not a shrinkbench store, reading it only: the PRAGMAs that
        open a store for writing (WAL mode) would change another program's file."""
        try:
            if self.path.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path} cannot be opened: {exc}") from None

        def read(sql: str, params: tuple = ()) -> list[tuple]:
            return self._retry(lambda: conn.execute(sql, params).fetchall())

        try:
            version = read("PRAGMA user_version")[0][0]
            tables = {}
            for (name,) in read("SELECT name FROM sqlite_master WHERE type = 'table'"):
                tables[name] = {row[1] for row in read("SELECT * FROM pragma_table_info(?)", (name,))}
        finally:
            conn.close()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}; this shrinkbench reads "
                f"version {SCHEMA_VERSION} (upgrade shrinkbench)"
            )
        if version == 0 and not tables:
            return  # an empty database: the store's tables are created in it
        ours = version == SCHEMA_VERSION and set(_RUN_KEYS) <= tables.get("runs", set()) and {
            "run_id", "phase", "epoch", "metrics"} <= tables.get("epochs", set())
        if not ours:
            raise StoreError(
                f"results store {self.path} is an SQLite database of another program "
                f"(tables: {', '.join(sorted(tables)) or 'none'}); it was left unchanged"
            )

    def _conn(self) -> sqlite3.Connection:
        """This process's connection, opened on first use and again after a fork."""
        if self._closed:
            raise StoreError(f"results store {self.path} is closed")
        if self._conn_obj is not None and self._pid == os.getpid():
            return self._conn_obj
        if self._conn_obj is not None:
            _INHERITED.append(self._conn_obj)
            self._conn_obj = None
        self._check_header()
        self._check_schema_readonly()
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path} cannot be opened: {exc}") from None
        self._conn_obj, self._pid = conn, os.getpid()
        self._rng = random.Random(os.getpid())
        try:
            self._retry(lambda: conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}"))
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            self._init_schema(conn)
        except BaseException:
            self._conn_obj = None
            conn.close()
            raise
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        version = self._retry(lambda: conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}; this shrinkbench reads "
                f"version {SCHEMA_VERSION} (upgrade shrinkbench)"
            )

        def create(c: sqlite3.Connection) -> None:
            current = c.execute("PRAGMA user_version").fetchone()[0]
            if current == SCHEMA_VERSION:
                return
            tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if current == 0 and tables:
                raise StoreError(
                    f"results store {self.path} is an SQLite database of another program "
                    f"(tables: {', '.join(sorted(tables))})"
                )
            for statement in _SCHEMA:
                c.execute(statement)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(create, conn)

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying while the database is locked by another writer."""
        deadline = time.monotonic() + LOCK_DEADLINE_S
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc):
                    raise StoreError(f"results store {self.path} failed: {exc}") from None
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"results store {self.path} stayed locked for {LOCK_DEADLINE_S:.0f} s"
                    ) from None
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"results store {self.path} is unusable: {exc}") from None
            time.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 0.2)

    def _write(self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None) -> T:
        """Run `fn(conn)` in one write transaction (BEGIN IMMEDIATE), retried while locked."""
        with self._lock:
            conn = conn or self._conn()

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

            return self._retry(attempt)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            conn = self._conn()
            return self._retry(lambda: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close this process's connection; the store cannot be used afterwards."""
        with self._lock:
            if self._conn_obj is not None and self._pid == os.getpid():
                self._conn_obj.close()
            elif self._conn_obj is not None:
                _INHERITED.append(self._conn_obj)
            self._conn_obj = None
            self._closed = True

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["out_dir"], create=False)

    def __repr__(self) -> str:
        return f"Store({str(self.out_dir)!r})"

    # -- writes --------------------------------------------------------------------------------

    def _update(self, run_id: str, sql: str, params: tuple) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if c.execute(sql, (*params, run_id)).rowcount == 0:
                raise StoreError(f"run {run_id!r} is not registered in {self.path}")

        self._write(fn)

    def register(self, run_id: str, kind: str, config: dict) -> bool:
        """Insert a run as 'pending' unless present; True when it was newly inserted."""
        if kind not in KINDS:
            raise _choices("run kind", kind, KINDS)
        text = to_json(config, canonical=True, strict=False)
        return self._write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO runs (id, kind, config, status, created) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (run_id, kind, text, time.time()),
            ).rowcount
            == 1
        )

    def start(self, run_id: str, host: str | None = None, pid: int | None = None) -> None:
        """Mark a run 'running' (clearing earlier results), with the host and pid doing it."""
        self._update(
            run_id,
            "UPDATE runs SET status = 'running', started = ?, finished = NULL, metrics = NULL, "
            "error = NULL, traceback = NULL, host = ?, pid = ? WHERE id = ?",
            (time.time(), host or socket.gethostname(), os.getpid() if pid is None else pid),
        )

    def finish(self, run_id: str, metrics: dict) -> None:
        """Mark a run 'done' with its metrics."""
        self._update(
            run_id,
            "UPDATE runs SET status = 'done', metrics = ?, finished = ?, error = NULL, traceback = NULL "
            "WHERE id = ?",
            (to_json(metrics, canonical=True, strict=False), time.time()),
        )

    def fail(self, run_id: str, error: str, traceback: str = "") -> None:
        """Mark a run 'failed' with the error message and traceback."""
        self._update(
            run_id,
            "UPDATE runs SET status = 'failed', error = ?, traceback = ?, finished = ? WHERE id = ?",
            (str(error), str(traceback), time.time()),
        )

    def reset(self, run_id: str) -> None:
        """Put a run back to 'pending' (for --retry-failed), clearing results, error and host."""
        self._update(
            run_id,
            "UPDATE runs SET status = 'pending', metrics = NULL, error = NULL, traceback = NULL, "
            "started = NULL, finished = NULL, host = NULL, pid = NULL WHERE id = ?",
            (),
        )

    def interrupt(self, run_id: str, reason: str = "interrupted") -> None:
        """Put a started run back to 'pending', keeping when it started: an interrupted run, which
        the next run of its plan resumes from its checkpoint; `reason` says what stopped it."""
        self._update(
            run_id,
            "UPDATE runs SET status = 'pending', metrics = NULL, error = ?, traceback = NULL, "
            "finished = NULL, host = NULL, pid = NULL WHERE id = ?",
            (str(reason),),
        )

    def add_epoch(self, run_id: str, phase: str, epoch: int, metrics: dict) -> None:
        """Record one epoch's metrics; a rewritten (run, phase, epoch) replaces the earlier row."""
        if phase not in PHASES:
            raise _choices("epoch phase", phase, PHASES)
        text = to_json(metrics, canonical=True, strict=False)
        self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO epochs (run_id, phase, epoch, metrics) VALUES (?, ?, ?, ?)",
                (run_id, phase, int(epoch), text),
            )
        )

    def delete_epochs(self, run_id: str, phase: str, from_epoch: int = 0) -> int:
        """Delete a run's epochs of `phase` numbered `from_epoch` or later; the count deleted."""
        if phase not in PHASES:
            raise _choices("epoch phase", phase, PHASES)
        return self._write(
            lambda c: c.execute(
                "DELETE FROM epochs WHERE run_id = ? AND phase = ? AND epoch >= ?",
                (run_id, phase, int(from_epoch)),
            ).rowcount
        )

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _decode(row: tuple) -> dict[str, Any]:
        out = dict(zip(_RUN_KEYS, row))
        out["config"] = json.loads(out["config"]) if out["config"] else {}
        out["metrics"] = json.loads(out["metrics"]) if out["metrics"] else None
        return {"run_id": out["id"], **out}

    def get(self, run_id: str) -> dict[str, Any] | None:
        """A run as a dict (config and metrics decoded), or None when absent."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return self._decode(rows[0]) if rows else None

    def status(self, run_id: str) -> str | None:
        """A run's status, or None when absent."""
        rows = self._read("SELECT status FROM runs WHERE id = ?", (run_id,))
        return rows[0][0] if rows else None

    def runs(
        self, kind: str | None = None, status: str | Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Runs (as `get` returns them) of a kind and status (one or several), oldest first."""
        where, params = self._filter(kind, status)
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY created, id", params)
        return [self._decode(row) for row in rows]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """The number of runs in each status (every status present, zero included)."""
        where, params = self._filter(kind, None)
        rows = self._read(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", params)
        return {**dict.fromkeys(STATUSES, 0), **dict(rows)}

    def _filter(self, kind: str | None, status: str | Iterable[str] | None) -> tuple[str, tuple]:
        clauses, params = [], []
        if kind is not None:
            if kind not in KINDS:
                raise _choices("run kind", kind, KINDS)
            clauses.append("kind = ?")
            params.append(kind)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            for value in wanted:
                if value not in STATUSES:
                    raise _choices("run status", value, STATUSES)
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def epochs(self, run_id: str, phase: str | None = None) -> list[dict[str, Any]]:
        """A run's epochs as flat dicts {phase, epoch, **metrics}, dense phase first, by epoch."""
        if phase is not None and phase not in PHASES:
            raise _choices("epoch phase", phase, PHASES)
        sql = "SELECT phase, epoch, metrics FROM epochs WHERE run_id = ?"
        params: tuple = (run_id,)
        if phase is not None:
            sql, params = sql + " AND phase = ?", (run_id, phase)
        rows = self._read(sql + " ORDER BY phase, epoch", params)
        return [{"phase": p, "epoch": e, **_without(json.loads(m), "phase", "epoch")} for p, e, m in rows]

    def all_epochs(self) -> list[dict[str, Any]]:
        """Every epoch row of every run as flat dicts {run_id, phase, epoch, **metrics}."""
        rows = self._read("SELECT run_id, phase, epoch, metrics FROM epochs ORDER BY run_id, phase, epoch")
        return [
            {"run_id": r, "phase": p, "epoch": e, **_without(json.loads(m), "run_id", "phase", "epoch")}
            for r, p, e, m in rows
        ]
