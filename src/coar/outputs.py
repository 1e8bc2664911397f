"""Output functions: what the attributions explain.

An output function takes the model's output on a batch and the batch's labels and
returns one float per example::

    output_fn(model_output, labels) -> (batch,) float tensor

``model_output`` is whatever the model returns: a tensor, or an object with
``.logits`` (a Hugging Face ``SequenceClassifierOutput``, ``CausalLMOutput``, ...;
`logits_of` reads either). ``labels`` has one row per example of the batch. The
built-in outputs, by name in `OUTPUTS` (the ``output=`` argument of `coar.attribute`):

- ``"margin"``: classifiers whose output is (batch, classes) logits (image
  classifiers, Hugging Face ``...ForSequenceClassification``): the label's logit minus
  the largest other logit; labels are class indices (batch,).
- ``"next_token_margin"``: causal language models, (batch, positions, vocabulary)
  logits: the same margin for the next token at one position per example; labels are
  (batch, 2) rows (position, token). `coar.attribute` makes them with `next_token_labels`
  from (batch,) token ids, taken at each example's last non-padding position (read from
  the ``attention_mask``), or from the model's own predicted next tokens when labels
  are None.

`labels_for` turns the labels a user passes (or None) into the form an output takes;
`check_output` calls an output function once on a few examples and says clearly
when it does not return one float per example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coar.masking import Inputs, batch_size_of, call_model, take

OutputFn = Callable[[Any, torch.Tensor], torch.Tensor]


def logits_of(model_output) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, or its ``.logits``."""
    logits = getattr(model_output, "logits", model_output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"model output of type {type(model_output).__name__} is neither a tensor nor has "
            "a .logits tensor: pass an output function that takes it"
        )
    return logits


def _margin_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows, classes) logits: the label's logit minus the largest other logit."""
    logits = logits.float()
    correct = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return correct - others.max(dim=1).values


def margin(model_output, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the largest other logit, per example.

    ``model_output``: (batch, classes) logits, or an object with such ``.logits`` (a
    Hugging Face ``SequenceClassifierOutput`` or ``ImageClassifierOutput``); ``labels``:
    (batch,) class indices.

    >>> margin(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0]))
    tensor([1.])
    """
    logits = logits_of(model_output)
    if logits.dim() != 2:
        raise ValueError(
            f"margin takes (batch, classes) logits, got shape {tuple(logits.shape)}: for a "
            "language model's (batch, positions, vocabulary) logits use "
            "output='next_token_margin', otherwise pass an output function"
        )
    return _margin_of(logits, labels)


def next_token_margin(model_output, labels: torch.Tensor) -> torch.Tensor:
    """A causal language model's margin for one next token per example.

    ``model_output``: (batch, positions, vocabulary) logits, or an object with such
    ``.logits`` (a Hugging Face ``CausalLMOutput``); ``labels``: (batch, 2) long rows
    (position, token): the logit of ``token`` predicted at ``position`` (the token that
    follows position ``position``) minus the largest other logit there. `next_token_labels`
    makes the rows for each example's last non-padding position.

    >>> logits = torch.zeros(1, 3, 4)
    >>> logits[0, 2] = torch.tensor([0.0, 3.0, 1.0, 0.5])  # the scores after position 2
    >>> next_token_margin(logits, torch.tensor([[2, 1]]))  # token 1 after position 2
    tensor([2.])
    """
    logits = logits_of(model_output)
    if logits.dim() != 3:
        raise ValueError(
            f"next_token_margin takes (batch, positions, vocabulary) logits, got shape "
            f"{tuple(logits.shape)}: for a classifier's (batch, classes) logits use "
            "output='margin'"
        )
    if labels.dim() != 2 or labels.shape[1] != 2:
        raise ValueError(
            f"next_token_margin's labels are (batch, 2) rows (position, token), got shape "
            f"{tuple(labels.shape)}: make them with coar.outputs.next_token_labels"
        )
    rows = torch.arange(logits.shape[0], device=logits.device)
    at_position = logits[rows, labels[:, 0]]  # (batch, vocabulary)
    return _margin_of(at_position, labels[:, 1])


def last_positions(inputs: Inputs) -> torch.Tensor:
    """Each example's last non-padding position: the last 1 of its ``attention_mask``
    (left or right padding alike), or the last position without one.

    >>> last_positions({"input_ids": torch.zeros(2, 4, dtype=torch.long),
    ...                 "attention_mask": torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])})
    tensor([1, 3])
    """
    if isinstance(inputs, Mapping):
        mask = inputs.get("attention_mask")
        ids = inputs.get("input_ids", mask)
        if ids is None:
            raise ValueError(
                f"inputs with keys {sorted(inputs)} have neither input_ids nor "
                "attention_mask: pass next-token labels as (batch, 2) (position, token) rows"
            )
    else:
        mask, ids = None, inputs
    if mask is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    mask = torch.as_tensor(mask) != 0
    if not mask.any(dim=1).all():
        empty = torch.flatnonzero(~mask.any(dim=1))[:10].tolist()
        raise ValueError(f"examples {empty} have an attention_mask without any token")
    return mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)


def next_token_labels(
    inputs: Inputs, tokens: torch.Tensor, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, 2) rows (position, token) for `next_token_margin`: ``tokens[j]`` is the
    next token whose margin is taken for example j, at ``positions[j]`` (default: its last
    non-padding position, `last_positions`).

    >>> inputs = {"input_ids": torch.tensor([[5, 6, 0], [7, 8, 9]]),
    ...           "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    >>> next_token_labels(inputs, torch.tensor([3, 4]))
    tensor([[1, 3],
            [2, 4]])
    """
    tokens = torch.as_tensor(tokens)
    if positions is None:
        positions = last_positions(inputs)
    positions = torch.as_tensor(positions, device=tokens.device)
    if tokens.shape != (batch_size_of(inputs),) or positions.shape != tokens.shape:
        raise ValueError(
            f"{tuple(tokens.shape)} tokens and {tuple(positions.shape)} positions for "
            f"{batch_size_of(inputs)} examples: give one of each per example"
        )
    return torch.stack([positions.long(), tokens.long()], dim=1)


@dataclass(frozen=True)
class LabelRule:
    """How an output's labels are made: ``predicted(model_output, inputs)`` from the
    unablated model's own prediction on a batch, ``given(inputs, labels)`` from what a
    user passed (checked, and completed where the output needs more)."""

    predicted: Callable[[Any, Inputs], torch.Tensor]
    given: Callable[[Inputs, torch.Tensor], torch.Tensor]


def _predicted_classes(model_output, inputs: Inputs) -> torch.Tensor:
    return logits_of(model_output).argmax(dim=-1)


def _given_as_is(inputs: Inputs, labels: torch.Tensor) -> torch.Tensor:
    return labels


def _given_classes(inputs: Inputs, labels: torch.Tensor) -> torch.Tensor:
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(
            f"labels for output 'margin' are (batch,) class indices, got a {labels.dtype} "
            f"tensor of shape {tuple(labels.shape)}"
        )
    return labels


def _predicted_next_tokens(model_output, inputs: Inputs) -> torch.Tensor:
    logits = logits_of(model_output)
    positions = last_positions(inputs).to(logits.device)
    tokens = logits[torch.arange(logits.shape[0], device=logits.device), positions].argmax(-1)
    return next_token_labels(inputs, tokens, positions)


def _given_next_tokens(inputs: Inputs, labels: torch.Tensor) -> torch.Tensor:
    if labels.dim() == 1:
        return next_token_labels(inputs, labels)
    if labels.dim() != 2 or labels.shape[1] != 2:
        raise ValueError(
            f"labels for output 'next_token_margin' are (batch,) next tokens or (batch, 2) "
            f"(position, token) rows, got shape {tuple(labels.shape)}"
        )
    return labels.long()


# Built-in outputs by name (the ``output=`` argument of `coar.attribute`).
OUTPUTS: dict[str, OutputFn] = {"margin": margin, "next_token_margin": next_token_margin}
LABEL_RULES: dict[OutputFn, LabelRule] = {
    margin: LabelRule(_predicted_classes, _given_classes),
    next_token_margin: LabelRule(_predicted_next_tokens, _given_next_tokens),
}
# A user's output function: labels pass as given; None takes the predicted classes.
DEFAULT_RULE = LabelRule(_predicted_classes, _given_as_is)


def output_fn(output: str | OutputFn) -> OutputFn:
    """The output function of a built-in name, or the function itself."""
    if callable(output):
        return output
    if output not in OUTPUTS:
        raise ValueError(
            f"output {output!r} is not a built-in output ({', '.join(OUTPUTS)}): pass one of "
            "those or a function (model_output, labels) -> one float per example"
        )
    return OUTPUTS[output]


@torch.no_grad()
def labels_for(
    output: OutputFn,
    model: nn.Module,
    inputs: Inputs,
    labels=None,
    batch_dim: int = 0,
    batch: int = 64,
) -> torch.Tensor:
    """The labels ``output`` takes on ``inputs`` (examples along ``batch_dim``): from the
    user's ``labels``, or, when they are None, from the unablated model's predictions
    (``batch`` examples a pass).

    >>> model = nn.Linear(4, 3).eval()
    >>> x = torch.randn(5, 4)
    >>> torch.equal(labels_for(margin, model, x), model(x).argmax(1))
    True
    """
    rule = LABEL_RULES.get(output, DEFAULT_RULE)
    n_examples = batch_size_of(inputs, batch_dim)
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.dim() == 0 or len(labels) != n_examples:
            found = "a single label" if labels.dim() == 0 else f"{len(labels)} labels"
            raise ValueError(f"{found} for {n_examples} examples: give one per example")
        return rule.given(inputs, labels)
    predictions = []
    for start in range(0, n_examples, batch):
        x = take(inputs, slice(start, start + batch), batch_dim)
        predictions.append(rule.predicted(call_model(model, x), x))
    return torch.cat(predictions)


@torch.no_grad()
def check_output(
    output: OutputFn,
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor,
    batch_dim: int = 0,
    n: int = 4,
) -> None:
    """Call ``output`` on the unablated model's output for the first ``n`` examples
    (along ``batch_dim``) and refuse, with what it returned, anything but one number per
    example.

    >>> check_output(lambda logits, labels: logits, nn.Linear(4, 3), torch.randn(5, 4),
    ...              torch.zeros(5, dtype=torch.long))
    Traceback (most recent call last):
    ...
    ValueError: output function <lambda> returned a tensor of shape (4, 3) for 4 examples: \
an output function (model_output, labels) returns one float per example, shape (4,)
    """
    x, y = take(inputs, slice(0, n), batch_dim), labels[:n]
    n = len(y)
    name = getattr(output, "__name__", type(output).__name__)
    values = output(call_model(model, x), y)
    if not isinstance(values, torch.Tensor):
        found = f"a {type(values).__name__}"
    elif values.shape != (n,):
        found = f"a tensor of shape {tuple(values.shape)}"
    else:
        return
    raise ValueError(
        f"output function {name} returned {found} for {n} examples: an output function "
        f"(model_output, labels) returns one float per example, shape ({n},)"
    )
