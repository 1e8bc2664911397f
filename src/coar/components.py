"""Components: the units of a model that can be ablated, with stable names.

A component is a slice of one weight tensor; ablating it means zeroing that
slice. Biases, LayerNorm and BatchNorm always stay untouched. A group of
components lives in one module and has a *unit*, which says which slice:

- ``out``: an output unit of a Conv2d (filter) or Linear (row): ``weight[j]``.
  A zeroed unit outputs its bias (0 if none).
- ``in``: an input feature of a Linear or of Hugging Face's ``Conv1D`` (GPT-2),
  whose weight is stored (in_features, out_features): ``Conv1D.weight[j]``,
  i.e. the *rows* of the original code's GPT-2 components.
- ``in_proj``: an output row of an ``nn.MultiheadAttention``'s packed Q/K/V
  projection: ``in_proj_weight[j]`` (rows 0..E-1 are Q, then K, then V).
- ``head``: an attention head: the weights that read the head's output into the
  residual stream, i.e. input columns ``head_dim*j .. head_dim*(j+1)-1`` of the
  output projection (GPT-2 ``attn.c_proj``, MultiheadAttention ``out_proj``).

Component kinds (``component_spec(model, kind)``) reproduce the paper's counts:
``conv_filters`` (ResNets, 2,304 for setup A and 22,720 for ResNet-50),
``vit_neurons`` (torchvision ViT-B/16: 82,944), ``gpt2_rows`` (GPT-2 small:
64,512) and ``attention_heads`` (GPT-2 and torchvision ViT: 144 each). Their
order is the original code's (``named_modules`` order), so flat component
indices match its published masks and attributions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layers, weight stored transposed)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_gpt2_attention(module: nn.Module) -> bool:
    """A GPT-2-style attention module: heads read out through a ``Conv1D`` ``c_proj``."""
    return (
        hasattr(module, "c_proj")
        and is_conv1d(module.c_proj)
        and hasattr(module, "num_heads")
        and hasattr(module, "head_dim")
    )


def _n_heads(module: nn.Module) -> int:
    return int(module.num_heads)


def _head_dim(module: nn.Module) -> int:
    return int(module.head_dim)


@dataclass(frozen=True)
class UnitWeights:
    """Where a group's components live: component j of the group is
    ``param.narrow(dim, j * width, width)``."""

    param: torch.Tensor
    dim: int
    width: int

    def indices(self, units: torch.Tensor) -> torch.Tensor:
        """Indices along ``dim`` covered by the given component (unit) indices."""
        units = units.to(self.param.device)
        offsets = torch.arange(self.width, device=units.device)
        return (units.view(-1, 1) * self.width + offsets).flatten()


# The packed Q/K/V projection of an nn.MultiheadAttention, which has no submodule of its
# own: a `UnitKind.site` that only a patched attention forward (coar.attention) exposes.
PACKED_QKV = "<packed qkv>"


def _one(module: nn.Module) -> int:
    return 1


def _none(module: nn.Module) -> None:
    return None


def _packed_in_proj(module: nn.Module) -> str | None:
    if module.in_proj_weight is None:
        return (
            "MultiheadAttention with separate q/k/v projections is not supported "
            "(no packed in_proj_weight)"
        )
    return None


@dataclass(frozen=True)
class UnitKind:
    """One (unit, module type) pair: everything the component spec, the masking engine
    (`coar.masking`) and the baselines (`coar.baselines`) need to know about it.

    - ``count(module)``: how many components of this unit the module has;
    - ``weights(module)``: the weight slices a component zeroes (`UnitWeights`);
    - the activation that holds the components: the ``side`` ("output" or "input") of
      submodule ``site`` ("" for the module itself, `PACKED_QKV` for an attention's
      packed projection), whose axis ``dim`` has ``width(module)`` consecutive features
      per component, which ablating the component sets to ``ablated(module)`` (a
      per-feature bias; None: zero). The baselines tap that activation; the masking
      engine hooks it, unless ``patched``: then the attention module runs
      `coar.attention.self_attention`, which masks it.
    """

    unit: str
    module_type: str  # as error messages name it
    matches: Callable[[nn.Module], bool]
    count: Callable[[nn.Module], int]
    weights: Callable[[nn.Module], UnitWeights]
    side: str
    site: str = ""
    dim: int = -1
    width: Callable[[nn.Module], int] = _one
    ablated: Callable[[nn.Module], torch.Tensor | None] = _none
    patched: bool = False
    unsupported: Callable[[nn.Module], str | None] = _none  # why a matching module can't


def _bias(module: nn.Module) -> torch.Tensor | None:
    return module.bias


def _is_mha(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention)


# Adding a unit kind is one entry here.
UNIT_KINDS: tuple[UnitKind, ...] = (
    UnitKind(
        "out",
        "Conv2d",
        lambda m: isinstance(m, nn.Conv2d),
        lambda m: m.out_channels,
        lambda m: UnitWeights(m.weight, 0, 1),
        side="output",
        dim=1,
        ablated=_bias,
    ),
    UnitKind(
        "out",
        "Linear",
        lambda m: isinstance(m, nn.Linear),
        lambda m: m.out_features,
        lambda m: UnitWeights(m.weight, 0, 1),
        side="output",
        ablated=_bias,
    ),
    UnitKind(
        "in",
        "Linear",
        lambda m: isinstance(m, nn.Linear),
        lambda m: m.in_features,
        lambda m: UnitWeights(m.weight, 1, 1),
        side="input",
    ),
    UnitKind(
        "in",
        "Conv1D",
        is_conv1d,
        lambda m: m.weight.shape[0],
        lambda m: UnitWeights(m.weight, 0, 1),
        side="input",
    ),
    UnitKind(
        "in_proj",
        "MultiheadAttention",
        _is_mha,
        lambda m: m.in_proj_weight.shape[0],
        lambda m: UnitWeights(m.in_proj_weight, 0, 1),
        side="output",
        site=PACKED_QKV,
        ablated=lambda m: m.in_proj_bias,
        patched=True,
        unsupported=_packed_in_proj,
    ),
    UnitKind(
        "head",
        "MultiheadAttention",
        _is_mha,
        _n_heads,
        lambda m: UnitWeights(m.out_proj.weight, 1, _head_dim(m)),
        side="input",
        site="out_proj",
        width=_head_dim,
        patched=True,
    ),
    UnitKind(
        "head",
        "GPT-2 attention",
        is_gpt2_attention,
        _n_heads,
        lambda m: UnitWeights(m.c_proj.weight, 0, _head_dim(m)),
        side="input",
        site="c_proj",
        width=_head_dim,
    ),
)
UNITS = tuple(dict.fromkeys(kind.unit for kind in UNIT_KINDS))


def unit_kind(unit: str, module: nn.Module, name: str) -> UnitKind:
    """The entry of `UNIT_KINDS` for a unit of a module (``name``: its path, for errors)."""
    kinds = [kind for kind in UNIT_KINDS if kind.unit == unit]
    for kind in kinds:
        if kind.matches(module):
            reason = kind.unsupported(module)
            if reason is not None:
                raise TypeError(f"component module {name!r}: {reason}")
            return kind
    expected = " or ".join(kind.module_type for kind in kinds)
    raise TypeError(
        f"component module {name!r} is {type(module).__name__}, "
        f"expected {expected} for unit {unit!r}"
    )


@dataclass(frozen=True)
class ComponentGroup:
    module: str  # dotted module path inside the model
    size: int  # number of components in this group
    offset: int  # index of its first component in the flat component vector
    unit: str = "out"  # which slice of the module's weights a component is (see UNITS)

    @property
    def label(self) -> str:
        """The group's name in component names and tables: the module path, with the
        unit appended where the module path alone would be ambiguous."""
        if self.unit in ("in_proj", "head"):
            return f"{self.module}.{self.unit}" if self.module else self.unit
        return self.module

    def kind(self, module: nn.Module) -> UnitKind:
        """This group's entry of `UNIT_KINDS` for its module (raises if there is none)."""
        return unit_kind(self.unit, module, self.module)

    def units_of(self, module: nn.Module) -> int:
        """How many components of this group's unit the module has (raises if none)."""
        return self.kind(module).count(module)

    def weights(self, module: nn.Module) -> UnitWeights:
        """The weight tensor, dimension and slice width that this group's components zero."""
        return self.kind(module).weights(module)


class ComponentSpec:
    """An ordered list of component groups; component i has a flat index and a name.

    Groups are ``(module, size)`` (unit ``out``) or ``(module, size, unit)``, with the
    module's path in ``model.named_modules()``.

    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> spec = ComponentSpec([("0", 8), ("2", 8, "in")])  # hidden rows, last layer's inputs
    >>> len(spec), spec.names()[:2], spec.table()
    (16, ['0[0]', '0[1]'], [('0', 8), ('2', 8)])
    >>> spec.check(model)  # raises, naming the module, if the spec does not fit
    """

    def __init__(self, groups: Iterable[tuple], kind: str | None = None):
        self.kind = kind
        self.groups: list[ComponentGroup] = []
        offset = 0
        for group in groups:
            module, size, *rest = group
            unit = rest[0] if rest else "out"
            if unit not in UNITS:
                raise ValueError(f"component group {module!r}: unknown unit {unit!r} ({UNITS})")
            self.groups.append(ComponentGroup(module, int(size), offset, unit))
            offset += int(size)
        self.n_components = offset

    def __len__(self) -> int:
        return self.n_components

    def names(self) -> list[str]:
        return [f"{g.label}[{j}]" for g in self.groups for j in range(g.size)]

    def table(self) -> list[tuple[str, int]]:
        return [(g.label, g.size) for g in self.groups]

    def check(self, model: nn.Module) -> None:
        """Fail with the culprit's name if a group does not match the model."""
        modules = dict(model.named_modules())
        for g in self.groups:
            if g.module not in modules:
                raise KeyError(f"component module {g.module!r} not found in the model")
            units = g.units_of(modules[g.module])
            if units != g.size:
                raise ValueError(
                    f"component module {g.module!r} has {units} {g.unit!r} units, "
                    f"the spec says {g.size}"
                )

    def unit_weights(self, model: nn.Module) -> list[tuple[ComponentGroup, UnitWeights]]:
        """Each group with the weight slices its components zero (for gradient baselines too)."""
        modules = dict(model.named_modules())
        return [(g, g.weights(modules[g.module])) for g in self.groups]


def conv_filters(model: nn.Module, exclude: Iterable[str] = ("shortcut", "downsample")):
    """Every Conv2d's output filters, skipping modules whose path contains an excluded word.

    The paper's ResNet components are all conv filters except the downsample
    (shortcut) convs: 2,304 for setup A's MiniResNet, 22,720 for ResNet-50.

    >>> import torchvision
    >>> spec = conv_filters(torchvision.models.resnet18())
    >>> len(spec), spec.table()[:2]
    (3904, [('conv1', 64), ('layer1.0.conv1', 64)])
    """
    excluded = tuple(exclude)
    return ComponentSpec(
        (
            (name, m.out_channels)
            for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and not any(word in name for word in excluded)
        ),
        kind="conv_filters",
    )


def vit_neurons(model: nn.Module, exclude: Iterable[str] = ("heads",)):
    """torchvision ViT neurons: per block the attention's Q/K/V rows (in_proj), out_proj,
    and the MLP's fc1 and fc2 rows; the classification head is excluded.

    As the original: every Linear and MultiheadAttention outside ``heads``, in
    ``named_modules`` order (ViT-B/16: 12 x (2,304 + 768 + 3,072 + 768) = 82,944).

    >>> from torchvision.models import VisionTransformer
    >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2,
    ...                         hidden_dim=8, mlp_dim=16)
    >>> vit_neurons(vit).table()  # doctest: +NORMALIZE_WHITESPACE
    [('encoder.layers.encoder_layer_0.self_attention.in_proj', 24),
     ('encoder.layers.encoder_layer_0.self_attention.out_proj', 8),
     ('encoder.layers.encoder_layer_0.mlp.0', 16), ('encoder.layers.encoder_layer_0.mlp.3', 8)]
    """
    excluded = tuple(exclude)
    groups = []
    for name, m in model.named_modules():
        if any(name == word or name.startswith(word + ".") for word in excluded):
            continue
        if isinstance(m, nn.MultiheadAttention):
            groups.append((name, ComponentGroup(name, 0, 0, "in_proj").units_of(m), "in_proj"))
        elif isinstance(m, nn.Linear):
            groups.append((name, m.out_features, "out"))
    return ComponentSpec(groups, kind="vit_neurons")


GPT2_ROW_MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def gpt2_rows(model: nn.Module):
    """GPT-2's components as the original defines them: the rows of the Conv1D weights of
    attn.c_attn, attn.c_proj, mlp.c_fc (768 input dims each) and mlp.c_proj (3,072 hidden
    neurons) in every block (GPT-2 small: 12 x 5,376 = 64,512).

    Conv1D stores its weight as (in_features, out_features), so a row is an input
    feature: zeroing it is masking that input of the module, with the bias kept.

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8))
    >>> gpt2_rows(gpt2).table()  # doctest: +NORMALIZE_WHITESPACE
    [('transformer.h.0.attn.c_attn', 8), ('transformer.h.0.attn.c_proj', 8),
     ('transformer.h.0.mlp.c_fc', 8), ('transformer.h.0.mlp.c_proj', 32)]
    """
    return ComponentSpec(
        (
            (name, m.weight.shape[0], "in")
            for name, m in model.named_modules()
            if is_conv1d(m) and any(name.endswith(suffix) for suffix in GPT2_ROW_MODULES)
        ),
        kind="gpt2_rows",
    )


def attention_heads(model: nn.Module):
    """Every attention head of a GPT-2 or torchvision ViT (12 x 12 = 144 for the small ones).

    Ablating a head zeroes the output-projection weights that read its output,
    so the head contributes nothing (the projection's bias stays).

    >>> from torchvision.models import VisionTransformer
    >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=2, num_heads=2,
    ...                         hidden_dim=8, mlp_dim=16)
    >>> attention_heads(vit).names()  # doctest: +NORMALIZE_WHITESPACE
    ['encoder.layers.encoder_layer_0.self_attention.head[0]',
     'encoder.layers.encoder_layer_0.self_attention.head[1]',
     'encoder.layers.encoder_layer_1.self_attention.head[0]',
     'encoder.layers.encoder_layer_1.self_attention.head[1]']
    """
    return ComponentSpec(
        (
            (name, _n_heads(m), "head")
            for name, m in model.named_modules()
            if any(k.matches(m) for k in UNIT_KINDS if k.unit == "head")
        ),
        kind="attention_heads",
    )


KINDS = {
    "conv_filters": conv_filters,
    "vit_neurons": vit_neurons,
    "gpt2_rows": gpt2_rows,
    "attention_heads": attention_heads,
}


def component_spec(model: nn.Module, kind: str) -> ComponentSpec:
    """The components of the given kind (see KINDS); fails if the model has none.

    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3))
    >>> len(component_spec(model, "conv_filters"))
    9
    """
    if kind not in KINDS:
        raise KeyError(f"unknown component kind {kind!r} (known: {sorted(KINDS)})")
    spec = KINDS[kind](model)
    if len(spec) == 0:
        raise ValueError(f"model {type(model).__name__} has no components of kind {kind!r}")
    return spec


@torch.no_grad()
def zero_components(model: nn.Module, spec: ComponentSpec, keep: torch.Tensor) -> nn.Module:
    """Literally zero the weights of every component with keep == 0 (in place).

    This is the definition of ablation; every faster path is tested against it.

    >>> model = nn.Sequential(nn.Conv2d(1, 3, 3))
    >>> spec = conv_filters(model)
    >>> _ = zero_components(model, spec, torch.tensor([True, False, True]))
    >>> [bool(w.any()) for w in model[0].weight]  # filter 1 is zeroed
    [True, False, True]
    """
    keep = torch.as_tensor(keep, dtype=torch.bool).cpu()
    if keep.shape != (len(spec),):
        raise ValueError(f"keep mask has shape {tuple(keep.shape)}, expected ({len(spec)},)")
    spec.check(model)
    for g, weights in spec.unit_weights(model):
        dropped = (~keep[g.offset : g.offset + g.size]).nonzero().flatten()
        if len(dropped):
            weights.param.index_fill_(weights.dim, weights.indices(dropped), 0)
    return model
