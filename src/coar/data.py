"""Datasets of the embedded default: scikit-learn's digits (ships with the package)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digits_split(test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Deterministic stratified train/test split of the 1,797 8x8 digits images.

    Images are scaled to [0, 1] and standardised with the training set's
    mean and std; arrays are float32 (N, 1, 8, 8) and int64 labels.
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    mean, std = x_train.mean(), x_train.std()
    return {
        "x_train": (x_train - mean) / std,
        "y_train": y_train,
        "x_test": (x_test - mean) / std,
        "y_test": y_test,
    }
