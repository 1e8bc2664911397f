"""Component datasets: ablation shards (.npz) and the gathered FFCV beton.

A shard holds the rows [start, stop) of one run: keep-masks (bool, rows x |C|),
outputs (float32, rows x N), row indices and the run's identity (see `run_id`),
so that shards of different runs can never be mixed. Shards are written
atomically, so a shard file exists only when every one of its rows is finished;
`gather` still checks that the shards tile 0..m-1 exactly and hold only finite
outputs before writing the beton (fields: mask bool, targets float32, idx int).
"""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from coar.atomic import atomic_path

SHARD_KEYS = ("rows", "masks", "outputs", "run")


def run_id(seed: int, stream: str, alpha: float, n_rows: int) -> dict:
    """What makes two shards parts of the same component dataset."""
    return {"seed": int(seed), "stream": stream, "alpha": float(alpha), "n_rows": int(n_rows)}


class ShardError(ValueError):
    """A shard is missing, incomplete or inconsistent with the others."""


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
        raise ShardError(f"{path}: unreadable or incomplete shard ({err})") from err
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


def beton_length(beton_path) -> int:
    """The number of rows of a gathered component dataset."""
    return int(_ffcv("ffcv.reader").Reader(str(beton_path)).num_samples)


def gather_to_beton(paths: Sequence, run: dict, beton_path, num_workers: int = 1) -> None:
    """Write the checked shards of `run` as one FFCV beton, ordered by row index."""
    IntField, NDArrayField = _ffcv("ffcv.fields").IntField, _ffcv("ffcv.fields").NDArrayField
    DatasetWriter = _ffcv("ffcv.writer").DatasetWriter

    shards = check_shards(paths, run)
    n_rows = run["n_rows"]
    rows = np.concatenate([s["rows"] for s in shards])
    order = np.argsort(rows)
    masks = np.concatenate([s["masks"] for s in shards])[order]
    outputs = np.concatenate([s["outputs"] for s in shards])[order]

    class _Rows:
        def __len__(self):
            return n_rows

        def __getitem__(self, i):
            return masks[i], outputs[i], i

    fields = {
        "mask": NDArrayField(dtype=np.dtype("bool"), shape=(masks.shape[1],)),
        # float32, never float16: FFCV's numba decoder cannot read float16 fields.
        "targets": NDArrayField(dtype=np.dtype("float32"), shape=(outputs.shape[1],)),
        "idx": IntField(),
    }
    with atomic_path(beton_path) as tmp:
        DatasetWriter(str(tmp), fields, num_workers=num_workers).from_indexed_dataset(_Rows())


def iter_beton(
    beton_path, batch_size: int = 4096, num_workers: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream (masks bool, targets float32, idx int64) batches from a beton, in row order."""
    loader_module = _ffcv("ffcv.loader")
    Loader, OrderOption = loader_module.Loader, loader_module.OrderOption

    if not Path(beton_path).is_file():
        raise FileNotFoundError(f"component dataset {beton_path} does not exist")
    loader = Loader(
        str(beton_path),
        batch_size=batch_size,
        num_workers=num_workers,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
    )
    for mask, targets, idx in loader:
        yield mask.numpy(), targets.numpy(), idx.numpy().ravel().astype(np.int64)
