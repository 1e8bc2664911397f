"""Masking engine: evaluate many ablated copies of a model in one batch.

A batch holds K masks x E examples, mask-major (row k*E + e is example e under
mask k), and every sample is masked by its own keep-mask. For each component
unit (see ``coar.components``) the mask is applied where it is exactly
equivalent to zeroing that unit's weights:

- ``out`` (conv filter, linear row): a forward hook sets the unit's output to
  its bias (0 if none) where ablated;
- ``in`` (GPT-2 Conv1D row, linear input column): a forward pre-hook zeroes that
  input feature, so its weight row contributes nothing and the bias stays;
- ``head`` of a GPT-2 or Hugging Face attention: a pre-hook on the output
  projection (``c_proj``, ``o_proj``, ``dense``, ...) zeroes the head's slice of
  its input (the head's output);
- ``gated`` (a gated MLP's hidden neuron): a pre-hook zeroes that input of
  ``down_proj``;
- ``in_proj`` and ``head`` of an ``nn.MultiheadAttention`` (torchvision ViT), and
  ``out`` of its ``out_proj``: its packed projections have no submodule to hook,
  so while masks are active the module runs the functional forward of
  ``coar.attention`` (packed Q/K/V projection, masked, scaled-dot-product
  attention, per-head mask, ``out_proj`` called as a module so that its hooks fire).

Which activation each unit kind masks is read from ``coar.components.UNIT_KINDS``.
A group covering a range of a module's units masks only those. While masks are
active PyTorch's fused Transformer fast path, which would bypass every hook, is
switched off (``torch.backends.mha.set_fastpath_enabled``) and restored after.
Sequence-first models give ``batch_dim=1``: inputs are repeated and activations
masked along that dimension.

Every path is tested against literally zeroing the weights
(``coar.components.zero_components``) in ``tests/test_masking.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext

import torch
from torch import nn

from coar.attention import patch_self_attention, self_attention, unpatch
from coar.components import ComponentGroup, ComponentSpec, UnitKind, keep_mask

log = logging.getLogger(__name__)

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def batch_size_of(inputs: Inputs, batch_dim: int = 0) -> int:
    if isinstance(inputs, Mapping):
        return next(iter(inputs.values())).shape[batch_dim]
    return inputs.shape[batch_dim]


def take(inputs: Inputs, index: slice, batch_dim: int = 0) -> Inputs:
    """Examples ``index`` of a tensor or of every tensor of a mapping (e.g. input_ids and
    attention_mask), along ``batch_dim``."""
    if isinstance(inputs, Mapping):
        return {key: take(value, index, batch_dim) for key, value in inputs.items()}
    return inputs[(slice(None),) * batch_dim + (index,)]


def call_model(model: nn.Module, inputs: Inputs):
    """``model(inputs)``, or ``model(**inputs)`` for a mapping of keyword tensors."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def repeat_batch(inputs: Inputs, times: int, batch_dim: int = 0) -> Inputs:
    """The examples repeated ``times`` times along the batch dimension (mask-major)."""
    if isinstance(inputs, Mapping):
        return {key: repeat_batch(value, times, batch_dim) for key, value in inputs.items()}
    if times == 1:
        return inputs
    repeats = [1] * inputs.dim()
    repeats[batch_dim] = times
    return inputs.repeat(*repeats)


def _per_mask(tensor: torch.Tensor, n_masks: int, batch_dim: int = 0) -> torch.Tensor:
    """View a mask-major batch (K*E, ...) as (K, E, ...) (along ``batch_dim``)."""
    return tensor.unflatten(batch_dim, (n_masks, -1))


def _broadcast(keep: torch.Tensor, view: torch.Tensor, batch_dim: int) -> torch.Tensor:
    """A (K, C) keep-mask shaped to multiply a per-mask view (.., K, E, .., C)."""
    shape = [1] * view.dim()
    shape[batch_dim], shape[-1] = keep.shape
    return keep.view(shape)


def sequence_first_attention(model: nn.Module) -> list[str]:
    """Paths of the model's nn.MultiheadAttention modules with batch_first=False."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and not m.batch_first
    ]


def resolve_batch_dim(model: nn.Module, batch_dim: int | None) -> int:
    """The dimension that holds the examples in the model's inputs and activations:
    ``batch_dim``, or 0 if None, which is refused for a model with sequence-first
    attention (its layers hold the batch along dim 1)."""
    if batch_dim is not None:
        if int(batch_dim) < 0:
            raise ValueError(f"batch_dim must be a non-negative dimension, got {batch_dim}")
        return int(batch_dim)
    seq_first = sequence_first_attention(model)
    if seq_first:
        raise ValueError(
            f"module {seq_first[0]!r} is a sequence-first nn.MultiheadAttention "
            "(batch_first=False): pass batch_dim=1 if the model takes (sequence, batch, ...) "
            "inputs, or batch_dim=0 if its inputs and hooked activations are batch-first"
        )
    return 0


class MaskedModel:
    """Wrap a model and a component spec; call with examples and a stack of keep-masks.

    ``masked(inputs, masks)`` returns the model's outputs for every (mask, example)
    pair, mask-major. Hooks are installed for the duration of a call, or for as long
    as the object is used as a context manager (``with masked: ...``), which lets a
    compiled forward (``compile=True``) trace them once. While they are installed,
    PyTorch's fused Transformer fast path (which would bypass them) is switched off.
    ``batch_dim``: the dimension of the examples in the inputs and in every hooked
    activation (1 for sequence-first models; default 0, refused for a model with a
    sequence-first nn.MultiheadAttention). Masks must be 0/1 (bool or numeric).

    >>> from coar.components import conv_filters
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()).eval()
    >>> masked = MaskedModel(model, conv_filters(model))
    >>> x = torch.randn(3, 1, 4, 4)  # 3 examples
    >>> keep = torch.tensor([[True, True], [True, False]])  # 2 ablated models
    >>> out = masked(x, keep)  # (2 masks x 3 examples, features), mask-major
    >>> out.shape
    torch.Size([6, 8])
    >>> torch.equal(out[3:, 4:], model[0].bias[1].expand(3, 4))  # filter 1 gives its bias
    True
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ComponentSpec,
        compile: bool = False,
        batch_dim: int | None = None,
    ):
        spec.check(model)
        self.model = model
        self.spec = spec
        self.batch_dim = resolve_batch_dim(model, batch_dim)
        self._modules = dict(model.named_modules())
        self._keep: torch.Tensor | None = None  # (K, |C|) float keep-mask of the current batch
        self._handles: list = []
        self._patched: list[nn.Module] = []
        self._depth = 0
        self._fastpath: bool | None = None
        self.fired: set[str] = set()  # groups whose hook ran in the last call (diagnostics)
        self.max_batch: int | None = None  # set by ablated_outputs after an out-of-memory
        self._keep_per_sample: torch.Tensor | None = None  # (K*E, |C|), for conv groups
        self._kinds = [g.kind(self._modules[g.module]) for g in spec.groups]
        self._units = {  # units of each group's module, by group
            id(g): k.count(self._modules[g.module])
            for g, k in zip(spec.groups, self._kinds, strict=True)
        }
        # Output masks along dim 1 (conv filters) take one factor per (sample, channel).
        self._conv_groups = any(
            not k.patched and k.side == "output" and k.dim == 1 for k in self._kinds
        )
        if self._conv_groups and self.batch_dim != 0:
            raise ValueError(
                f"batch_dim={self.batch_dim}: convolution filters are masked along the "
                "batch dimension 0 of their outputs; use batch_dim=0"
            )
        self._forward = torch.compile(model) if compile else model

    # ------------------------------------------------------------------ hooks
    def _pad(self, group: ComponentGroup, keep: torch.Tensor) -> torch.Tensor:
        """A group's (rows, size) keep-mask as (rows, units of the module): kept outside
        the group's range of units."""
        units = self._units[id(group)]
        if group.start == 0 and group.size == units:
            return keep
        full = keep.new_ones(keep.shape[0], units)
        full[:, group.start : group.start + group.size] = keep
        return full

    def _keep_of(self, group: ComponentGroup, dtype: torch.dtype) -> torch.Tensor:
        keep = self._keep[:, group.offset : group.offset + group.size].to(dtype)
        return self._pad(group, keep)

    def _mask_output(self, group: ComponentGroup, out, bias, channels_first: bool, batch_dim=0):
        """Set the ablated units of a fresh output to their bias (0 if none), in place."""
        self.fired.add(group.module)
        if channels_first:
            # One (sample, channel) factor per sample: a plain 4-D broadcast, about twice
            # as fast as a (K, 1, C, 1, 1) one over a (K, E, C, H, W) view (channels-last).
            keep = self._keep_per_sample[:, group.offset : group.offset + group.size]
            # In the output's dtype: a mixed-dtype in-place product (bf16 output, fp32
            # mask) is a slow, unvectorised loop on the CPU.
            keep = self._pad(group, keep.to(out.dtype))
            keep = keep.view(*keep.shape, *([1] * (out.dim() - 2)))
            view = out
        else:  # (.., K, E, .., C)
            keep = self._keep_of(group, out.dtype)
            view = _per_mask(out, keep.shape[0], batch_dim)
            keep = _broadcast(keep, view, batch_dim)
        # Hooks run only under no_grad (see __call__): modify the fresh output in place.
        if bias is None:
            view.mul_(keep)
        else:  # out * keep + bias * (1 - keep), in one pass over the output
            bias = bias.to(out.dtype)
            bias = bias.view(-1, *([1] * (out.dim() - 2))) if channels_first else bias
            torch.addcmul(bias * (1 - keep), view, keep, out=view)
        return out

    def _out_hook(self, group: ComponentGroup, kind: UnitKind):
        channels_first = kind.dim == 1

        def hook(module, inputs, out):
            if self._keep is None:
                return None
            return self._mask_output(
                group, out, kind.ablated(module), channels_first, self.batch_dim
            )

        return hook

    def _in_hook(self, group: ComponentGroup, width: int = 1):
        """Zero input features of the hooked module (``width`` consecutive features per
        component: 1 for rows, head_dim for attention heads)."""

        def hook(module, args):
            if self._keep is None:
                return None
            self.fired.add(group.module)
            x = args[0]
            keep = self._keep_of(group, x.dtype)
            if width > 1:  # component j covers features j*width .. (j+1)*width - 1
                keep = keep.repeat_interleave(width, dim=1)
            view = _per_mask(x, keep.shape[0], self.batch_dim)
            # The input may have other readers (e.g. a residual branch): never in place.
            masked = view * _broadcast(keep, view, self.batch_dim)
            return (masked.flatten(self.batch_dim, self.batch_dim + 1), *args[1:])

        return hook

    def _install(self) -> None:
        """Hook each group's activation (see `coar.components.UNIT_KINDS`); groups of an
        nn.MultiheadAttention's packed projection or heads patch its forward instead."""
        attentions: dict[str, dict[str, ComponentGroup]] = {}
        for g, kind in zip(self.spec.groups, self._kinds, strict=True):
            if kind.patched:
                if g.unit in attentions.get(g.module, {}):
                    raise ValueError(
                        f"attention module {g.module!r}: two {g.unit!r} groups; give its "
                        "units as one group"
                    )
                attentions.setdefault(g.module, {})[g.unit] = g
                continue
            module = self._modules[g.module]
            site_path = kind.site_of(module)
            site = module.get_submodule(site_path) if site_path else module
            if kind.side == "output":
                self._handles.append(site.register_forward_hook(self._out_hook(g, kind)))
            else:
                hook = self._in_hook(g, width=kind.width(module))
                self._handles.append(site.register_forward_pre_hook(hook))
            # An attention's own forward bypasses its out_proj module: patch it so that
            # out_proj is called as a module and its hooks fire.
            parent, _, leaf = ".".join(filter(None, (g.module, site_path))).rpartition(".")
            if leaf == "out_proj" and isinstance(self._modules.get(parent), nn.MultiheadAttention):
                attentions.setdefault(parent, {})
        for name, groups in attentions.items():
            self._patch_attention(self._modules[name], name, groups)

    def _patch_attention(self, attention: nn.MultiheadAttention, name: str, groups) -> None:
        def run(module, x, attn_mask, is_causal, **extra):
            if "in_proj" in groups and not (x is extra["key"] is extra["value"]):
                raise NotImplementedError(
                    f"attention module {name!r} is a cross-attention: its in_proj rows "
                    "cannot be masked (its heads and out_proj can); exclude them"
                )
            return self._attention(module, groups, x, attn_mask, is_causal, extra)

        patch_self_attention(attention, name, run, "masked", lambda: self._keep is not None)
        self._patched.append(attention)

    def _attention(self, module: nn.MultiheadAttention, groups, x, attn_mask, is_causal, extra):
        """nn.MultiheadAttention's self-attention with per-sample component masks (its
        callbacks see batch-first tensors, whatever the module's layout)."""
        n_masks = self._keep.shape[0]
        on_qkv = on_heads = None
        if "in_proj" in groups:

            def on_qkv(qkv):  # (B, T, 3E)
                return self._mask_output(groups["in_proj"], qkv, module.in_proj_bias, False)

        if "head" in groups:

            def on_heads(attended):  # (B, H, T, d)
                self.fired.add(groups["head"].module)
                keep = self._keep_of(groups["head"], attended.dtype)
                keep = keep.view(n_masks, 1, module.num_heads, 1, 1)
                return (_per_mask(attended, n_masks) * keep).flatten(0, 1)

        return self_attention(module, x, attn_mask, is_causal, on_qkv, on_heads, **extra)

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for attention in self._patched:
            unpatch(attention)
        self._handles, self._patched = [], []

    def __enter__(self) -> MaskedModel:
        if self._depth == 0:
            # nn.TransformerEncoderLayer's fused fast path (eval, no_grad) calls neither
            # the patched attention nor the hooked linear1/linear2.
            self._fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                self._install()
            except BaseException:
                self._remove()
                torch.backends.mha.set_fastpath_enabled(self._fastpath)
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._remove()
            torch.backends.mha.set_fastpath_enabled(self._fastpath)

    # ------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(self, inputs: Inputs, masks: torch.Tensor, eager: bool = False):
        """Model outputs for every (mask, example) pair: batch K * E, mask-major.

        ``inputs`` is a tensor or a mapping of tensors passed as keyword arguments
        (e.g. ``input_ids`` and ``attention_mask``). ``eager``: bypass torch.compile.
        """
        first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
        device = first.device
        masks = keep_mask(masks, "masks").to(device)
        if masks.dim() != 2 or masks.shape[1] != len(self.spec):
            raise ValueError(
                f"masks must have shape (K, {len(self.spec)}), got {tuple(masks.shape)}"
            )
        batch = repeat_batch(inputs, masks.shape[0], self.batch_dim)
        with self:
            self._keep = masks.to(torch.float32)
            self.fired = set()
            if self._conv_groups:
                # Convs take one factor per (sample, channel), made here in one copy rather
                # than per hooked module (every small op costs a thread-pool round trip on CPUs;
                # on the CPU, index_select is also ~500x faster than expand().reshape()).
                n_samples, n_examples = batch_size_of(batch), batch_size_of(inputs)  # dim 0
                mask_of_sample = torch.arange(n_samples, device=device) // n_examples
                self._keep_per_sample = self._keep.index_select(0, mask_of_sample)
            try:
                return call_model(self.model if eager else self._forward, batch)
            finally:
                self._keep = self._keep_per_sample = None


PRECISIONS = ("auto", "fp32", "bf16")


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """``auto``: bf16 autocast on CUDA, exact fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast_context(device: torch.device, enabled: bool | None = None):
    """bf16 autocast on CUDA (by default), nothing on the CPU."""
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def is_convnet_on_images(model: nn.Module, inputs: Inputs) -> bool:
    """A model with 2-D convolutions fed a 4-D image batch: channels-last applies."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return has_conv and isinstance(inputs, torch.Tensor) and inputs.dim() == 4


def to_channels_last(model: nn.Module, inputs: Inputs) -> Inputs:
    """Channels-last memory format for a convnet and its image batch (faster convs on
    GPUs and with oneDNN on CPUs); other models and inputs are returned unchanged."""
    if not is_convnet_on_images(model, inputs):
        return inputs
    model.to(memory_format=torch.channels_last)
    return inputs.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def auto_max_batch(
    masked: MaskedModel,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: Callable,
    autocast: bool | None = None,
    memory_fraction: float = 0.6,
    cpu_batch: int = 4096,
    cap: int = 16384,
) -> int:
    """(mask, example) pairs per forward pass: on CUDA, what fits ``memory_fraction`` of
    the free memory, from the peak memory of a small probe pass (``ablated_outputs``
    halves it if it still runs out of memory); on the CPU, the fastest of a few sizes
    up to ``cpu_batch`` (``fastest_cpu_batch``)."""
    device = labels.device
    if device.type != "cuda":
        return fastest_cpu_batch(masked, inputs, labels, output_fn, autocast, cpu_batch)
    probe = min(batch_size_of(inputs, masked.batch_dim), 32)
    x, y = take(inputs, slice(0, probe), masked.batch_dim), labels[:probe]
    keep_all = torch.ones(1, len(masked.spec), dtype=torch.bool, device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with autocast_context(device, autocast):
        output_fn(masked(x, keep_all), y)
    torch.cuda.synchronize(device)
    per_sample = max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(cap, memory_fraction * free // per_sample)))


@torch.no_grad()
def fastest_cpu_batch(
    masked: MaskedModel,
    inputs: Inputs,
    labels: torch.Tensor,
    output_fn: Callable,
    autocast: bool | None = None,
    largest: int = 4096,
    smallest: int = 64,
    min_seconds: float = 0.2,
    max_pass_seconds: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """The CPU batch (pairs per forward pass) with the highest measured throughput.

    On a CPU, throughput peaks where a layer's activations still fit the caches and
    falls beyond (MiniResNet on 8x8 digits, 2 cores: 18.8k examples/s at 360 pairs,
    11.9k at 2,880). Sizes double from ``smallest`` (or the number of examples, if
    fewer) up to ``largest``, or up to the first whose pass takes over
    ``max_pass_seconds`` (a large model probes only small batches; if that is the first
    size, in two passes in a row, it is the answer). A first sweep runs each size once:
    the process's one-time costs and the allocator's adaptation to large buffers distort
    whatever runs first. A second sweep times each size over
    at least ``min_seconds`` (best pass kept), stopping after two sizes in a row below
    80% of the best; the largest size within 5% of the best rate wins. Unablated
    passes, eager (a compiled forward would recompile for every size). ``clock`` measures
    the passes (tests inject a deterministic one).
    """
    n_examples = batch_size_of(inputs, masked.batch_dim)
    keep_all = torch.ones(1, len(masked.spec), dtype=torch.bool, device=labels.device)

    def batch_of(size: int):
        examples = min(size, n_examples)
        keep = keep_all.expand(max(1, size // examples), -1)
        x = take(inputs, slice(0, examples), masked.batch_dim)
        return x, keep, _repeat_labels(labels[:examples], keep.shape[0])

    def seconds_of_pass(x, keep, y) -> float:
        start = clock()
        output_fn(masked(x, keep, eager=True), y)
        return clock() - start

    sizes, size = [], min(smallest, n_examples)
    with autocast_context(labels.device, autocast):
        while size <= largest:  # first sweep: warm-up, and the sizes worth timing
            sizes.append(size)
            seconds = seconds_of_pass(*batch_of(size))
            if len(sizes) == 1 and seconds > max_pass_seconds:
                # The process's first pass carries one-time costs (allocations, kernel
                # choice; more under load): only a second slow pass says the size is slow.
                seconds = seconds_of_pass(*batch_of(size))
            if seconds > max_pass_seconds:
                break
            size *= 2
        if len(sizes) == 1:  # no choice to time (the first size is already slow)
            log.info("CPU batch: %d pairs per pass (the only size probed)", sizes[0])
            return sizes[0]  # the first size is min(smallest, n_examples): that many pairs
        rates: dict[int, float] = {}  # pairs per pass -> pairs per second
        slow_in_a_row = 0
        for size in sizes:
            batch = batch_of(size)
            timings = [seconds_of_pass(*batch)]
            while len(timings) < 2 or sum(timings) < min_seconds:
                timings.append(seconds_of_pass(*batch))
            rates[batch[2].shape[0]] = rate = batch[2].shape[0] / min(timings)
            slow_in_a_row = slow_in_a_row + 1 if rate < 0.8 * max(rates.values()) else 0
            if slow_in_a_row == 2:
                break
    # Within 5% of the best, the largest: fewer passes, less per-pass overhead (masks,
    # copies) in the real run, and the probe's timings are that noisy.
    best = max(size for size, rate in rates.items() if rate >= 0.95 * max(rates.values()))
    log.info(
        "CPU batch: %d pairs per pass (probed pairs/s: %s)",
        best,
        {size: round(rate) for size, rate in rates.items()},
    )
    return best


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error)


def _repeat_labels(labels: torch.Tensor, times: int) -> torch.Tensor:
    return labels.repeat(times, *([1] * (labels.dim() - 1)))


@torch.no_grad()
def ablated_outputs(
    masked: MaskedModel,
    inputs: Inputs,
    labels: torch.Tensor,
    masks: torch.Tensor,
    output_fn: Callable,
    max_batch: int = 4096,
    autocast: bool | None = None,
) -> torch.Tensor:
    """output_fn of every ablated model on every example: float32 tensor (K, E).

    Masks are processed in chunks so that one forward pass holds at most
    ``max_batch`` (mask, example) pairs; examples are chunked if needed too. If a
    forward pass runs out of GPU memory, the batch is halved and the chunk retried;
    the size that worked is kept in ``masked.max_batch`` for later calls.
    ``autocast``: bf16 autocast (default: on CUDA only).
    """
    n_masks, n_examples = masks.shape[0], batch_size_of(inputs, masked.batch_dim)
    device = labels.device
    max_batch = min(max_batch, masked.max_batch or max_batch)
    out = torch.empty(n_masks, n_examples, dtype=torch.float32)
    with masked, autocast_context(device, autocast):
        e0 = 0
        while e0 < n_examples:
            ex_chunk = min(n_examples - e0, max_batch)
            mask_chunk = max(1, max_batch // ex_chunk)
            x = take(inputs, slice(e0, e0 + ex_chunk), masked.batch_dim)
            y = labels[e0 : e0 + ex_chunk]
            try:
                k0 = 0
                while k0 < n_masks:
                    chunk = masks[k0 : k0 + mask_chunk]
                    values = output_fn(masked(x, chunk), _repeat_labels(y, chunk.shape[0]))
                    out[k0 : k0 + chunk.shape[0], e0 : e0 + ex_chunk] = (
                        values.float().view(chunk.shape[0], ex_chunk).cpu()
                    )
                    k0 += chunk.shape[0]
            except RuntimeError as error:
                if not _is_out_of_memory(error) or max_batch == 1:
                    raise
                max_batch //= 2
                masked.max_batch = max_batch
                log.warning("out of memory: retrying with batches of %d samples", max_batch)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            e0 += ex_chunk
    return out
