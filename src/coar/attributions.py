"""The attribution file format.

One ``.pt`` file (torch.save of plain tensors, lists and scalars, loadable with
``weights_only=True``) per setup and method:

- ``weight``: float32 (|C|, N), raw mask units: predicted output of example j
  under keep-mask v is ``bias[j] + v @ weight[:, j]``;
- ``bias``: float32 (N,); ``lam``: float32 (N,) regularisation per example (0 = OLS);
- ``component_names`` (|C| strings), ``example_ids`` (N ints);
- ``meta``: dict with setup, method, solver, alpha_train, n_masks, seed and
  any fit diagnostics (e.g. validation correlation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from coar.atomic import atomic_path


@dataclass
class Attributions:
    weight: np.ndarray
    bias: np.ndarray
    component_names: list[str]
    example_ids: list[int]
    lam: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        p, n = self.weight.shape
        if self.bias.shape != (n,):
            raise ValueError(f"bias has shape {self.bias.shape}, expected ({n},)")
        if len(self.component_names) != p or len(self.example_ids) != n:
            raise ValueError("component_names / example_ids do not match weight's shape")
        if self.lam is None:
            self.lam = np.zeros(n, dtype=np.float32)

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Predicted outputs (K, N) for keep-masks (K, |C|)."""
        return np.asarray(masks, dtype=np.float64) @ self.weight + self.bias

    def save(self, path) -> None:
        payload = {
            "weight": torch.from_numpy(np.ascontiguousarray(self.weight, dtype=np.float32)),
            "bias": torch.from_numpy(np.asarray(self.bias, dtype=np.float32)),
            "lam": torch.from_numpy(np.asarray(self.lam, dtype=np.float32)),
            "component_names": list(self.component_names),
            "example_ids": [int(i) for i in self.example_ids],
            "meta": dict(self.meta),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path) -> Attributions:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(
            weight=data["weight"].double().numpy(),
            bias=data["bias"].double().numpy(),
            lam=data["lam"].numpy(),
            component_names=list(data["component_names"]),
            example_ids=list(data["example_ids"]),
            meta=dict(data["meta"]),
        )
