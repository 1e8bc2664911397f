"""Output functions: what the attributions explain.

An output function takes the model's output on a batch and the batch's labels and
returns one float per example: ``output_fn(model_output, labels) -> (batch,)``.
Model outputs may be tensors or objects with ``.logits`` (Hugging Face).
"""

from __future__ import annotations

import torch


def logits_of(model_output) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, or its ``.logits``."""
    logits = getattr(model_output, "logits", model_output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"model output of type {type(model_output).__name__} is neither a tensor nor has "
            "a .logits tensor: pass an output function that takes it"
        )
    return logits


def margin(logits, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the largest other logit, per row.

    >>> margin(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0]))
    tensor([1.])
    """
    logits = logits_of(logits).float()
    correct = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return correct - others.max(dim=1).values


# Built-in outputs by name (the ``output=`` argument of `coar.attribute`).
OUTPUTS = {"margin": margin}
