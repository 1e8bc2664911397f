"""Component datasets: ablation shards (.npz) and the gathered FFCV beton.

A shard holds the rows [start, stop) of one run: keep-masks (bool, rows x |C|),
outputs (float32, rows x N), row indices and the run's identity (see `run_id`),
so that shards of different runs can never be mixed. Shards are written
atomically, so a shard file exists only when every one of its rows is finished;
`gather` still checks that the shards tile 0..m-1 exactly and hold only finite
outputs before writing the beton (fields: mask bool, targets float32, idx int).

Beside every beton lies its integrity record, ``<name>.beton.integrity.json``: the run,
the row, component and example counts, the file's size and sha256. Readers check the
file against it (`check_component_dataset`) before using a single row, so a truncated or
damaged dataset is refused rather than fitted.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import signal
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.queues import Queue as ProcessQueue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import numpy as np

from coar.atomic import atomic_path, write_atomic_text

SHARD_KEYS = ("rows", "masks", "outputs", "run")


def run_id(seed: int, stream: str, alpha: float, n_rows: int) -> dict:
    """What makes two shards parts of the same component dataset."""
    return {"seed": int(seed), "stream": stream, "alpha": float(alpha), "n_rows": int(n_rows)}


class ShardError(ValueError):
    """A shard is missing, incomplete or inconsistent with the others."""


class ComponentDatasetError(ValueError):
    """A gathered component dataset is damaged, incomplete or has no integrity record."""


def write_shard(path, rows: np.ndarray, masks: np.ndarray, outputs: np.ndarray, run: dict) -> None:
    """Write one shard atomically; `run` identifies the mask draw (e.g. seed, stream, alpha)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not (len(rows) == len(masks) == len(outputs)):
        raise ShardError(f"{path}: rows, masks and outputs differ in length")
    if not np.isfinite(outputs).all():
        bad = rows[~np.isfinite(outputs).all(axis=1)]
        raise ShardError(f"{path}: non-finite outputs in rows {bad[:10].tolist()}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                rows=rows,
                masks=masks.astype(bool),
                outputs=outputs.astype(np.float32),
                run=json.dumps(run, sort_keys=True),
            )


def read_shard(path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            shard = {key: data[key] for key in SHARD_KEYS}
        shard["run"] = json.loads(str(shard["run"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ShardError(
            f"{path}: unreadable or incomplete shard ({err}). Delete it and run again: "
            "the workflow (or AttributionRun.ablate) rewrites a missing shard"
        ) from err
    n = len(shard["rows"])
    if len(shard["masks"]) != n or len(shard["outputs"]) != n:
        raise ShardError(f"{path}: rows, masks and outputs differ in length")
    return shard


def check_shards(paths: Sequence, run: dict) -> list[dict[str, np.ndarray]]:
    """Load shards and check that they all belong to `run` and together hold its rows
    0..run["n_rows"]-1 exactly once."""
    n_rows = run["n_rows"]
    shards = [read_shard(p) for p in paths]
    for path, shard in zip(paths, shards, strict=True):
        if shard["run"] != run:
            raise ShardError(f"{path}: shard of run {shard['run']}, expected {run}")
    widths = {(s["masks"].shape[1], s["outputs"].shape[1]) for s in shards}
    if len(widths) != 1:
        raise ShardError(f"shards disagree on (components, examples): {sorted(widths)}")
    for path, shard in zip(paths, shards, strict=True):
        if not np.isfinite(shard["outputs"]).all():
            raise ShardError(f"{path}: non-finite outputs")
    seen = np.zeros(n_rows, dtype=np.int64)
    for path, shard in zip(paths, shards, strict=True):
        rows = shard["rows"]
        if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
            raise ShardError(f"{path}: row indices outside 0..{n_rows - 1}")
        np.add.at(seen, rows, 1)
    if (seen != 1).any():
        missing = np.flatnonzero(seen == 0)
        doubled = np.flatnonzero(seen > 1)
        raise ShardError(
            f"shards do not cover rows 0..{n_rows - 1} exactly once: "
            f"{len(missing)} missing (first {missing[:5].tolist()}), "
            f"{len(doubled)} duplicated (first {doubled[:5].tolist()})"
        )
    return shards


def iter_shards(
    paths: Sequence, run: dict, batch_size: int = 4096
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream (masks bool, outputs float32, row indices) batches from checked shards of
    `run`, in row order: the same batches as `iter_beton` over their gathered beton."""
    shards = check_shards(paths, run)
    order = np.argsort(np.concatenate([s["rows"] for s in shards]), kind="stable")
    masks = np.concatenate([s["masks"] for s in shards])[order]
    outputs = np.concatenate([s["outputs"] for s in shards])[order]
    for start in range(0, run["n_rows"], batch_size):
        stop = min(start + batch_size, run["n_rows"])
        yield masks[start:stop], outputs[start:stop], np.arange(start, stop, dtype=np.int64)


def _ffcv(module: str):
    """An FFCV module, or an ImportError that says how to install FFCV."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"component datasets in FFCV's beton format need FFCV ({err}): install it with "
            "pip install 'coar[workflow]' (it compiles against libopencv-dev, "
            "libturbojpeg0-dev and pkg-config), or fit from the shards with "
            "coar.AttributionRun.fit"
        ) from err


def integrity_path(beton_path) -> Path:
    """Where the integrity record of a gathered component dataset lies."""
    beton_path = Path(beton_path)
    return beton_path.with_name(beton_path.name + ".integrity.json")


def file_sha256(path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def check_component_dataset(beton_path) -> dict:
    """Check a gathered component dataset against its integrity record and return the
    record (``rows``, ``components``, ``examples``, ``run``, ``bytes``, ``sha256``).

    Raises `ComponentDatasetError`, naming the file and what to do, when the beton or
    its record is missing, or the file's size or sha256 differs from the record.
    """
    beton_path, record_path = Path(beton_path), integrity_path(beton_path)
    regather = (
        f"Delete {beton_path} and gather it again from its shards (in the workflow: "
        "rerun snakemake, which rewrites a missing component dataset)"
    )
    if not beton_path.is_file():
        raise ComponentDatasetError(f"component dataset {beton_path} does not exist")
    try:
        record = json.loads(record_path.read_text())
        expected_size, expected_sha256 = int(record["bytes"]), str(record["sha256"])
        int(record["rows"])
    except FileNotFoundError:
        raise ComponentDatasetError(
            f"{beton_path}: no integrity record {record_path.name} beside it, so it cannot "
            f"be checked. {regather}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ComponentDatasetError(
            f"{record_path}: unreadable integrity record ({err}). {regather}"
        ) from None
    size = beton_path.stat().st_size
    if size != expected_size:
        raise ComponentDatasetError(
            f"{beton_path}: {size} bytes, but {expected_size} were gathered "
            f"(truncated or overwritten). {regather}"
        )
    sha256 = file_sha256(beton_path)
    if sha256 != expected_sha256:
        raise ComponentDatasetError(
            f"{beton_path}: sha256 {sha256} differs from the gathered file's "
            f"{expected_sha256} (damaged on disk or in transfer). {regather}"
        )
    return record


class GatherError(RuntimeError):
    """Writing a component dataset failed (a writer worker died, the disk is full)."""


class _WorkerWatch:
    """Watch the worker processes of one FFCV `DatasetWriter` call.

    FFCV's writer polls a shared row counter until every row is written and never looks
    at its workers, so a worker that dies (killed, out of memory, a write error on a full
    disk) leaves it waiting forever. While active, this records the workers FFCV starts;
    a thread checks their exit codes and, when one fails, stops the others and releases
    the writer (counter complete, empty allocation lists) so that the call returns and
    `failure` says what happened.
    """

    _lock = threading.Lock()

    def __init__(self, writer_module, n_rows: int):
        self.module, self.n_rows = writer_module, n_rows
        self.workers: list = []
        self.failure: str | None = None
        self._counter = self._allocations = None
        self._stop = threading.Event()

    def __enter__(self):
        self._lock.acquire()
        watch, base = self, self.module.Process
        self._original = base

        class WatchedProcess(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                watch._adopt(self, kwargs.get("args", ()))

        self.module.Process = WatchedProcess
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.module.Process = self._original
        self._lock.release()
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
            worker.join(timeout=10)

    def _adopt(self, worker, args) -> None:
        queues = [a for a in args if isinstance(a, ProcessQueue)]
        counters = [a for a in args if isinstance(a, Synchronized)]
        if len(queues) != 2 or len(counters) != 1:
            raise GatherError(
                "this FFCV version starts its writer workers with unexpected arguments; "
                "coar supports ffcv 1.0 (pip install 'coar[workflow]')"
            )
        # FFCV's worker arguments: the work queue first, the allocations queue last.
        self._allocations, self._counter = queues[1], counters[0]
        self.workers.append(worker)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for worker in list(self.workers):
                code = worker.exitcode
                if code is not None and code != 0:
                    self._release(worker, code)
                    return

    def _release(self, failed, code: int) -> None:
        rows_written = self._counter.value
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
        for worker in self.workers:
            worker.join(timeout=10)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        self.failure = (
            f"FFCV's writer worker (pid {failed.pid}) {how} after {rows_written} of "
            f"{self.n_rows} rows"
        )
        with self._counter.get_lock():
            self._counter.value = self.n_rows
        for _ in self.workers:
            self._allocations.put([])


@contextmanager
def _file_size_limit_raises() -> Iterator[None]:
    """Writes beyond a file-size limit (``ulimit -f``) raise OSError instead of killing the
    process with SIGXFSZ, in this process and in the workers it forks, so that a failed
    gather cleans up after itself."""
    if not hasattr(signal, "SIGXFSZ") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGXFSZ, previous)


class _BetonRows:
    """The rows of a component dataset as FFCV's writer reads them: (mask, outputs, index)."""

    def __init__(self, masks: np.ndarray, outputs: np.ndarray):
        self.masks, self.outputs = masks, outputs

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, i):
        return self.masks[i], self.outputs[i], i


def gather_to_beton(paths: Sequence, run: dict, beton_path, num_workers: int = 1) -> None:
    """Write the checked shards of `run` as one FFCV beton, ordered by row index, and its
    integrity record. A failed write (a worker that dies, a full disk) raises
    `GatherError` and leaves neither file behind."""
    IntField, NDArrayField = _ffcv("ffcv.fields").IntField, _ffcv("ffcv.fields").NDArrayField
    writer_module = _ffcv("ffcv.writer")

    shards = check_shards(paths, run)
    n_rows = run["n_rows"]
    order = np.argsort(np.concatenate([s["rows"] for s in shards]))
    masks = np.concatenate([s["masks"] for s in shards])[order]
    outputs = np.concatenate([s["outputs"] for s in shards])[order]
    fields = {
        "mask": NDArrayField(dtype=np.dtype("bool"), shape=(masks.shape[1],)),
        # float32, never float16: FFCV's numba decoder cannot read float16 fields.
        "targets": NDArrayField(dtype=np.dtype("float32"), shape=(outputs.shape[1],)),
        "idx": IntField(),
    }
    beton_path = Path(beton_path)
    integrity_path(beton_path).unlink(missing_ok=True)
    with atomic_path(beton_path) as tmp, _file_size_limit_raises():
        try:
            with _WorkerWatch(writer_module, n_rows) as watch:
                writer = writer_module.DatasetWriter(str(tmp), fields, num_workers=num_workers)
                writer.from_indexed_dataset(_BetonRows(masks, outputs))
        except OSError as err:
            raise GatherError(f"writing {beton_path} failed: {err}{_disk_space(tmp)}") from err
        if watch.failure:
            raise GatherError(
                f"writing {beton_path} failed: {watch.failure} (its error, if any, is printed "
                f"above){_disk_space(tmp)}. Fix the cause and gather again"
            )
        record = {
            "run": run,
            "rows": n_rows,
            "components": int(masks.shape[1]),
            "examples": int(outputs.shape[1]),
            "bytes": tmp.stat().st_size,
            "sha256": file_sha256(tmp),
        }
    write_atomic_text(integrity_path(beton_path), json.dumps(record, indent=1, sort_keys=True))


def _disk_space(path) -> str:
    """Where a failed write may have run out of room: free space, a file-size limit."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return ""
    note = f"; {free / 1e6:.0f} MB free on {Path(path).parent}"
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return note
    if limit != resource.RLIM_INFINITY:
        note += f", and files may not exceed {limit} bytes here (ulimit -f)"
    return note


def iter_beton(
    beton_path, batch_size: int = 4096, num_workers: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream (masks bool, targets float32, idx int64) batches from a beton, in row order.

    Check the file first with `check_component_dataset`: FFCV reads what it finds."""
    loader_module = _ffcv("ffcv.loader")
    Loader, OrderOption = loader_module.Loader, loader_module.OrderOption

    if not Path(beton_path).is_file():
        raise ComponentDatasetError(f"component dataset {beton_path} does not exist")
    try:
        loader = Loader(
            str(beton_path),
            batch_size=batch_size,
            num_workers=num_workers,
            order=OrderOption.SEQUENTIAL,
            drop_last=False,
        )
    except (ValueError, OSError, IndexError) as err:
        raise ComponentDatasetError(
            f"{beton_path}: not a readable component dataset ({type(err).__name__}: {err}). "
            "Delete it and gather it again from its shards"
        ) from err
    for mask, targets, idx in loader:
        yield mask.numpy(), targets.numpy(), idx.numpy().ravel().astype(np.int64)
