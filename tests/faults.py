"""Fault injection for the tests: damaged files, dying writer workers, full disks.

Each helper reproduces one way a careful user's run goes wrong, so that a test can show
the fault is detected (or survived) rather than passed on silently.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from coar.store import run_id, write_shard

REPO = Path(__file__).resolve().parents[1]


def truncate(path, n_bytes: int) -> None:
    """Cut the last `n_bytes` bytes of a file (a copy that stopped early)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-n_bytes])


def overwrite(path, offset: int, n_bytes: int, value: int = 0xFF) -> None:
    """Overwrite `n_bytes` bytes at `offset` with `value` (bad sectors, a bad transfer)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([value]) * n_bytes)


def component_shards(folder, n_rows=400, n_components=30, n_examples=12, n_shards=2, seed=0):
    """Shards of one run whose outputs a linear model of the masks explains well."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n_rows, n_components)) > 0.3
    weight = rng.standard_normal((n_components, n_examples))
    outputs = (masks @ weight + 0.1 * rng.standard_normal((n_rows, n_examples))).astype(np.float32)
    run = run_id(seed, "train", 0.3, n_rows)
    bounds = np.linspace(0, n_rows, n_shards + 1).astype(int)
    paths = []
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        path = Path(folder) / f"shard_{k}.npz"
        write_shard(path, np.arange(start, stop), masks[start:stop], outputs[start:stop], run)
        paths.append(path)
    return paths, run


# Run in a fresh interpreter, so that a hang is a timeout of that process and a kill of
# a worker cannot take the test process with it.
_GATHER = """
import json, os, resource, signal, sys
import coar.store as store

paths, run, beton, fault = json.loads(sys.argv[1])
parent = os.getpid()
if fault == "kill_worker":
    read_row = store._BetonRows.__getitem__

    def dying_read(self, i):
        if os.getpid() != parent and i == 50:
            os.kill(os.getpid(), signal.SIGKILL)
        return read_row(self, i)

    store._BetonRows.__getitem__ = dying_read
elif fault == "full_disk":  # what `ulimit -f 1024` does: files stop growing at 1 MiB
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    store.gather_to_beton(paths, run, beton)
except store.GatherError as err:
    print("GatherError:", err)
    sys.exit(3)
"""


def gather_in_subprocess(paths, run, beton, fault: str | None, timeout: float = 120):
    """`gather_to_beton` in a fresh interpreter with `fault` injected: ``kill_worker``
    (FFCV's writer worker is killed mid-write) or ``full_disk`` (a 1 MiB file-size
    limit). Returns the finished process; a hang raises subprocess.TimeoutExpired."""
    import json

    args = json.dumps([[str(p) for p in paths], run, str(beton), fault])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_GATHER), args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
