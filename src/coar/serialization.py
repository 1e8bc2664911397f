"""Reading and writing torch files: restricted, atomic, byte-reproducible."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from coar.atomic import atomic_path


def _torch_error_line(err: BaseException) -> str:
    """The line of a torch.load error that says what is wrong, without torch's advice to
    unpickle with weights_only=False (which would run whatever the file names)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line or "unsupported global" in line.lower():
            return line.split(" Please use")[0]  # not torch's advice to allowlist it
    useful = [line for line in lines if "weights_only" not in line]
    return (useful or [type(err).__name__])[-1]


def load_torch(path, what: str = "file", safe_globals=None, error: type[Exception] = ValueError):
    """``torch.load(path, weights_only=True)`` on the CPU: PyTorch's restricted unpickler,
    whatever the environment says (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only changes the
    default). A file it refuses, or cannot read, raises `error` naming the file, the
    reason and what to do; never the advice to unpickle without the restriction."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(safe_globals or [])):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise error(
            f"{path}: cannot be read as a {what} by PyTorch's restricted loader "
            f"({_torch_error_line(err)}). The file is damaged or incomplete (download or "
            "copy it again), or it stores Python objects beyond tensors and plain "
            "containers, which this project never unpickles: save the weights as a state "
            "dict, torch.save(model.state_dict(), path)"
        ) from None


def save_torch(payload, path) -> None:
    """`torch.save` atomically and byte-reproducibly: saved through a file object, the
    archive inside is always named ``archive`` (given a file name, torch names it after
    the temporary file), so equal payloads give equal bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
