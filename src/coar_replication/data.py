"""Datasets of the embedded default: scikit-learn's digits (ships with the package)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digits_split(
    test_fraction: float, seed: int, val_fraction: float = 0.0
) -> dict[str, np.ndarray]:
    """Deterministic stratified train/test split of the 1,797 8x8 digits images.

    Images are scaled to [0, 1] and standardised with the training set's
    mean and std; arrays are float32 (N, 1, 8, 8) and int64 labels. With
    ``val_fraction`` > 0 (a fraction of all images) a stratified validation
    split is carved out of the training part; the test split does not change.
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    splits = {}
    if val_fraction > 0:
        x_train, x_val, y_train, y_val = train_test_split(
            x_train,
            y_train,
            test_size=val_fraction / (1 - test_fraction),
            random_state=seed,
            stratify=y_train,
        )
        splits["val"] = (x_val, y_val)
    mean, std = x_train.mean(), x_train.std()
    splits = {"train": (x_train, y_train), **splits, "test": (x_test, y_test)}
    arrays = {}
    for name, (x, y) in splits.items():
        arrays[f"x_{name}"] = (x - mean) / std
        arrays[f"y_{name}"] = y
    return arrays
