"""Digits variants for the Coar-Edit experiments of the embedded default.

All functions take and return the split dictionaries of
`coar_replication.data.digits_split` (standardised float32 images ``x_<split>``, labels
``y_<split>``) and are deterministic given their seed:

- `noisy_digits`: pixel noise makes the task hard enough for a model to make
  errors worth fixing one by one (paper 5.1).
- `spurious_digits`: a Waterbirds analogue (paper 5.3). The label is
  "digit >= 5"; a bright bar on the left (attribute 1) or right (attribute 0)
  image border agrees with the label in a fraction ``correlation`` of the
  training images and is independent of it in validation and test. Groups
  ``g_<split> = 2 * label + attribute``; the groups with attribute != label
  are the minority.
- `backdoor_digits`: a BadNets-style backdoor (paper 5.4). A bright square in
  the bottom-right corner is planted in a fraction of the training images of
  the other classes, relabelled as ``target_class``. ``x_<split>_triggered``
  holds every image of a split with the trigger and its true label; for the
  training set, ``train_clean`` / ``train_triggered`` are the unpoisoned
  training images without / with the trigger (paired row by row).
"""

from __future__ import annotations

import numpy as np

SPURIOUS_GROUPS = {
    0: "small digit, right bar",
    1: "small digit, left bar",
    2: "large digit, right bar",
    3: "large digit, left bar",
}


def _splits(arrays: dict[str, np.ndarray]) -> list[str]:
    return [key[2:] for key in arrays if key.startswith("x_")]


def noisy_digits(arrays: dict[str, np.ndarray], noise_std: float, seed: int) -> dict:
    """Add Gaussian noise (in standardised units) to every image of every split."""
    rng = np.random.default_rng([seed, 1])
    out = dict(arrays)
    for split in _splits(arrays):
        x = arrays[f"x_{split}"]
        out[f"x_{split}"] = (x + noise_std * rng.standard_normal(x.shape)).astype(np.float32)
    return out


def _draw_bar(images: np.ndarray, left: np.ndarray, value: float) -> np.ndarray:
    images = images.copy()
    images[left, :, :, 0] = value
    images[~left, :, :, -1] = value
    return images


def spurious_digits(arrays: dict[str, np.ndarray], correlation: float, seed: int) -> dict:
    """Binary "digit >= 5" task with a border bar correlated with the label in training."""
    if not 0.5 <= correlation < 1:
        raise ValueError(f"spurious.correlation must be in [0.5, 1), got {correlation}")
    rng = np.random.default_rng([seed, 2])
    bright = float(max(arrays[f"x_{s}"].max() for s in _splits(arrays)))
    out = {}
    for split in _splits(arrays):
        digits = arrays[f"y_{split}"]
        label = (digits >= 5).astype(np.int64)
        if split == "train":
            agrees = rng.random(len(label)) < correlation
            attribute = np.where(agrees, label, 1 - label)
        else:
            attribute = rng.integers(0, 2, len(label))
        out[f"x_{split}"] = _draw_bar(arrays[f"x_{split}"], attribute == 1, bright)
        out[f"y_{split}"] = label
        out[f"g_{split}"] = (2 * label + attribute).astype(np.int64)
        out[f"digit_{split}"] = digits
    return out


def add_trigger(images: np.ndarray, size: int, value: float) -> np.ndarray:
    images = images.copy()
    images[..., -size:, -size:] = value
    return images


def backdoor_digits(
    arrays: dict[str, np.ndarray],
    target_class: int,
    poison_fraction: float,
    trigger_size: int,
    seed: int,
) -> dict:
    """Plant a corner-square trigger tied to ``target_class`` in the training set."""
    if not 0 < poison_fraction < 1:
        raise ValueError(f"backdoor.poison_fraction must be in (0, 1), got {poison_fraction}")
    rng = np.random.default_rng([seed, 3])
    bright = float(max(arrays[f"x_{s}"].max() for s in _splits(arrays)))
    out = dict(arrays)
    x, y = arrays["x_train"], arrays["y_train"]
    candidates = np.flatnonzero(y != target_class)
    poisoned = np.zeros(len(y), dtype=bool)
    poisoned[rng.choice(candidates, int(round(poison_fraction * len(y))), replace=False)] = True
    out["x_train"] = np.where(
        poisoned[:, None, None, None], add_trigger(x, trigger_size, bright), x
    ).astype(np.float32)
    out["y_train"] = np.where(poisoned, target_class, y).astype(np.int64)
    out["poisoned_train"] = poisoned
    out["x_train_clean"], out["y_train_clean"] = x[~poisoned], y[~poisoned]
    out["x_train_triggered"] = add_trigger(x[~poisoned], trigger_size, bright)
    out["y_train_triggered"] = y[~poisoned]
    for split in _splits(arrays):
        if split != "train":
            out[f"x_{split}_triggered"] = add_trigger(arrays[f"x_{split}"], trigger_size, bright)
            out[f"y_{split}_triggered"] = arrays[f"y_{split}"]
    return out


def prepare_digits(cfg: dict) -> dict[str, np.ndarray]:
    """The data of one digits setup from its config block (see the config schema)."""
    from coar_replication.data import digits_split

    arrays = digits_split(cfg["test_fraction"], cfg["split_seed"], cfg.get("val_fraction", 0.0))
    if "noise_std" in cfg:
        arrays = noisy_digits(arrays, cfg["noise_std"], cfg["split_seed"])
    if "spurious" in cfg:
        arrays = spurious_digits(arrays, seed=cfg["split_seed"], **cfg["spurious"])
    if "backdoor" in cfg:
        arrays = backdoor_digits(arrays, seed=cfg["split_seed"], **cfg["backdoor"])
    return arrays
