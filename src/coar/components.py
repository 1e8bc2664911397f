"""Components: the units of a model that can be ablated, with stable names.

A component is a slice of one weight tensor; ablating it means zeroing that
slice. Biases, LayerNorm and BatchNorm always stay untouched. A group of
components lives in one module and has a *unit*, which says which slice:

- ``out``: an output unit of a convolution (Conv1d/2d/3d filter, grouped and
  depthwise too), a Linear (row) or a Hugging Face ``Conv1D`` (column, as its
  weight is stored transposed). A zeroed unit outputs its bias (0 if none).
- ``in``: an input feature of a Linear or of Hugging Face's ``Conv1D`` (GPT-2),
  whose weight is stored (in_features, out_features): ``Conv1D.weight[j]``,
  i.e. the *rows* of the original code's GPT-2 components.
- ``in_proj``: an output row of an ``nn.MultiheadAttention``'s packed Q/K/V
  projection: ``in_proj_weight[j]`` (rows 0..E-1 are Q, then K, then V).
- ``head``: an attention head: the weights that read the head's output into the
  residual stream, i.e. input columns ``head_dim*j .. head_dim*(j+1)-1`` of the
  output projection (GPT-2 ``attn.c_proj``, MultiheadAttention ``out_proj``,
  Llama/Mistral/Qwen2/ViT ``o_proj``, BERT ``attention.output.dense``, Phi and
  GPT-NeoX ``dense``, CLIP ``out_proj``). With grouped-query attention a head is
  a *query* head (its slice of the output projection).
- ``gated``: a hidden neuron of a gated MLP (Llama/Mistral/Qwen2
  ``gate_proj``/``up_proj``/``down_proj``): row j of gate_proj and up_proj and
  column j of down_proj, zeroed together.

Component kinds (``component_spec(model, kind)``) reproduce the paper's counts:
``conv_filters`` (ResNets, 2,304 for setup A and 22,720 for ResNet-50),
``vit_neurons`` (torchvision ViT-B/16: 82,944), ``gpt2_rows`` (GPT-2 small:
64,512) and ``attention_heads`` (GPT-2 and torchvision ViT: 144 each). Their
order is the original code's (``named_modules`` order), so flat component
indices match its published masks and attributions. ``linear_neurons`` and
``mlp_neurons`` cover any model. The generic helpers select modules by
``fnmatch`` globs over their ``named_modules()`` paths (``include``,
``exclude``) and leave out the output layers (`output_modules`) unless asked.

A spec the engine cannot ablate exactly is refused (`ComponentSpec.check`):
a parameter shared by several modules (tied embeddings), a Linear that its
parent uses through its weights without calling it (torchvision's Swin
attention), an attention layout it does not understand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch

import torch
from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layers, weight stored transposed)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_convolution(module: nn.Module) -> bool:
    """A Conv1d, Conv2d or Conv3d (not a transposed convolution)."""
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed


def is_linear(module: nn.Module) -> bool:
    """An nn.Linear or a Hugging Face ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def in_features_of(module: nn.Module) -> int:
    return module.weight.shape[0] if is_conv1d(module) else module.in_features


def out_features_of(module: nn.Module) -> int:
    return module.weight.shape[1] if is_conv1d(module) else module.out_features


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


# ---------------------------------------------------------------- attention layout
# Where Hugging Face attention modules keep their output projection, head count and
# head size (transformers 5.x: BERT/RoBERTa, Llama, Mistral, Qwen2, Phi, GPT-NeoX,
# ViT, CLIP). The layout found is checked: the projection reads heads * head_dim
# features, or the module is not understood.
OUTPUT_PROJECTIONS = ("o_proj", "out_proj", "dense", "output.dense", "c_proj")
HEAD_COUNTS = ("num_heads", "num_attention_heads", "n_head", "n_heads")
HEAD_SIZES = ("head_dim", "attention_head_size", "head_size")


@dataclass(frozen=True)
class AttentionLayout:
    projection: str  # path of the output projection inside the attention module
    heads: int
    head_dim: int


def _int_attribute(holders: list[nn.Module], names: tuple[str, ...]) -> int | None:
    for holder in holders:
        for name in names:
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def attention_layout(module: nn.Module) -> AttentionLayout | None:
    """The heads of a Hugging Face-style attention module (a module whose type name
    contains "Attention" with an output projection), or None if it has none we
    understand. Heads and head size come from the module, its children (BERT keeps
    them on ``attention.self``) or its ``config``."""
    if isinstance(module, nn.MultiheadAttention) or "Attention" not in type(module).__name__:
        return None
    for path in OUTPUT_PROJECTIONS:
        try:
            projection = module.get_submodule(path)
        except AttributeError:
            continue
        if is_linear(projection):
            break
    else:
        return None
    holders = [module, *module.children()]
    heads = _int_attribute(holders, HEAD_COUNTS)
    config = getattr(module, "config", None)
    if heads is None and config is not None:
        heads = _int_attribute([config], ("num_attention_heads",))
    if heads is None:
        return None
    width = in_features_of(projection)
    head_dim = _int_attribute(holders, HEAD_SIZES) or width // heads
    if heads * head_dim != width:
        return None
    return AttentionLayout(path, heads, head_dim)


def _is_hf_attention(module: nn.Module) -> bool:
    return not is_gpt2_attention(module) and attention_layout(module) is not None


def _layout(module: nn.Module) -> AttentionLayout:
    layout = attention_layout(module)
    assert layout is not None  # matched by _is_hf_attention
    return layout


def _projection_weights(module: nn.Module) -> UnitWeights:
    layout = _layout(module)
    projection = module.get_submodule(layout.projection)
    # a head reads its output through input columns: Linear dim 1, Conv1D rows (dim 0)
    return UnitWeights(projection.weight, 0 if is_conv1d(projection) else 1, layout.head_dim)


# ---------------------------------------------------------------- gated MLPs
GATED_MLP = ("gate_proj", "up_proj", "down_proj")


def is_gated_mlp(module: nn.Module) -> bool:
    """A gated MLP (Llama, Mistral, Qwen2): Linear children gate_proj, up_proj (hidden
    outputs) and down_proj (hidden inputs) of one hidden width."""
    parts = [getattr(module, name, None) for name in GATED_MLP]
    if not all(isinstance(part, nn.Linear) for part in parts):
        return False
    gate, up, down = parts
    return gate.out_features == up.out_features == down.in_features


@dataclass(frozen=True)
class UnitWeights:
    """Where a group's components live: component j of the module is
    ``param.narrow(dim, j * width, width)``."""

    param: torch.Tensor
    dim: int
    width: int

    def indices(self, units: torch.Tensor) -> torch.Tensor:
        """Indices along ``dim`` covered by the given component (unit) indices."""
        units = units.to(self.param.device)
        offsets = torch.arange(self.width, device=units.device)
        return (units.view(-1, 1) * self.width + offsets).flatten()

    def units(self, start: int, size: int) -> torch.Tensor:
        """The slice of units ``start .. start+size-1`` (a view)."""
        return self.param.narrow(self.dim, start * self.width, size * self.width)


# The packed Q/K/V projection of an nn.MultiheadAttention, which has no submodule of its
# own: a `UnitKind.site` that only a patched attention forward (coar.attention) exposes.
PACKED_QKV = "<packed qkv>"


def _one(module: nn.Module) -> int:
    return 1


def _none(module: nn.Module) -> None:
    return None


def _no_more(module: nn.Module) -> tuple[UnitWeights, ...]:
    return ()


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
      ``also_zeroed(module)``: more slices that ablation zeroes with it, whose zeroing
      changes nothing once ``weights`` is zero (a gated MLP's gate and up rows, once
      its down column is zero); gradient baselines take ``weights`` only;
    - the activation that holds the components: the ``side`` ("output" or "input") of
      submodule ``site(module)`` ("" for the module itself, `PACKED_QKV` for an
      attention's packed projection), whose axis ``dim`` has ``width(module)``
      consecutive features per component, which ablating the component sets to
      ``ablated(module)`` (a per-feature bias; None: zero). The baselines tap that
      activation; the masking engine hooks it, unless ``patched``: then the attention
      module runs `coar.attention.self_attention`, which masks it.
    """

    unit: str
    module_type: str  # as error messages name it
    matches: Callable[[nn.Module], bool]
    count: Callable[[nn.Module], int]
    weights: Callable[[nn.Module], UnitWeights]
    side: str
    site: str | Callable[[nn.Module], str] = ""
    dim: int = -1
    width: Callable[[nn.Module], int] = _one
    ablated: Callable[[nn.Module], torch.Tensor | None] = _none
    patched: bool = False
    unsupported: Callable[[nn.Module], str | None] = _none  # why a matching module can't
    also_zeroed: Callable[[nn.Module], tuple[UnitWeights, ...]] = _no_more

    def site_of(self, module: nn.Module) -> str:
        return self.site(module) if callable(self.site) else self.site

    def zeroed(self, module: nn.Module) -> tuple[UnitWeights, ...]:
        """Every weight slice that ablating a component zeroes."""
        return (self.weights(module), *self.also_zeroed(module))


def _bias(module: nn.Module) -> torch.Tensor | None:
    return module.bias


def _is_mha(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention)


# Adding a unit kind is one entry here.
UNIT_KINDS: tuple[UnitKind, ...] = (
    UnitKind(
        "out",
        "Conv1d/Conv2d/Conv3d",
        is_convolution,
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
        "out",
        "Conv1D",
        is_conv1d,
        lambda m: m.weight.shape[1],
        lambda m: UnitWeights(m.weight, 1, 1),
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
    # Masking the output projection's input slice of a head is zeroing its columns,
    # whatever computes the heads (rotary, grouped-query, any attention kernel).
    UnitKind(
        "head",
        "Hugging Face attention (BERT, Llama, Mistral, Qwen2, Phi, GPT-NeoX, ViT, CLIP)",
        _is_hf_attention,
        lambda m: _layout(m).heads,
        _projection_weights,
        side="input",
        site=lambda m: _layout(m).projection,
        width=lambda m: _layout(m).head_dim,
    ),
    # The neuron's output reaches the block only through down_proj's input j: masking
    # it is exact, and zeroing the gate and up rows as well changes nothing more.
    UnitKind(
        "gated",
        "gated MLP (gate_proj, up_proj, down_proj)",
        is_gated_mlp,
        lambda m: m.down_proj.in_features,
        lambda m: UnitWeights(m.down_proj.weight, 1, 1),
        side="input",
        site="down_proj",
        also_zeroed=lambda m: (
            UnitWeights(m.gate_proj.weight, 0, 1),
            UnitWeights(m.up_proj.weight, 0, 1),
        ),
    ),
)
UNITS = tuple(dict.fromkeys(kind.unit for kind in UNIT_KINDS))

# Attention modules that use their child Linears' weights directly (F.linear on
# ``qkv.weight``/``proj.weight``) instead of calling them: hooks on those children
# never run, so they cannot be masked (torchvision's Swin).
FUNCTIONAL_PARENTS = ("ShiftedWindowAttention", "ShiftedWindowAttentionV2")


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
    start: int = 0  # the module's unit that is this group's first component
    whole: bool = True  # the group is the whole module (False: a range given by start)

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


def _storage_key(param: torch.Tensor):
    """Parameters with one key hold the same values (the same tensor, or views of the
    same memory with the same shape, as tied weights are)."""
    if param.is_meta:  # meta tensors have no storage: the object is all there is
        return id(param)
    return (str(param.device), param.data_ptr(), tuple(param.shape))


def shared_parameters(model: nn.Module) -> dict:
    """Storage key -> names of the distinct modules that hold a parameter on it (several:
    the parameter is shared, e.g. tied input and output embeddings). A module reused
    at several places is one module: its hooks fire wherever it runs."""
    holders: dict = {}
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen:
            continue
        seen.add(id(module))
        for param in module._parameters.values():
            if param is not None:
                holders.setdefault(_storage_key(param), []).append(name)
    return holders


class ComponentSpec:
    """An ordered list of component groups; component i has a flat index and a name.

    Groups are ``(module, size)`` (unit ``out``), ``(module, size, unit)`` or
    ``(module, size, unit, start)`` (units ``start .. start+size-1`` of the module),
    with the module's path in ``model.named_modules()``. A component's name is
    ``module[j]``, j its unit index in the module.

    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> spec = ComponentSpec([("0", 8), ("2", 8, "in")])  # hidden rows, last layer's inputs
    >>> len(spec), spec.names()[:2], spec.table()
    (16, ['0[0]', '0[1]'], [('0', 8), ('2', 8)])
    >>> spec.check(model)  # raises, naming the module, if the spec does not fit
    >>> part = ComponentSpec([("0", 3, "out", 5)])  # rows 5..7 of the first layer
    >>> part.names(), part.table()
    (['0[5]', '0[6]', '0[7]'], [('0[5:8]', 3)])
    """

    def __init__(self, groups: Iterable[tuple], kind: str | None = None):
        self.kind = kind
        self.groups: list[ComponentGroup] = []
        offset = 0
        for group in groups:
            module, size, *rest = group
            unit = rest[0] if rest else "out"
            whole = len(rest) < 2
            start = 0 if whole else int(rest[1])
            if unit not in UNITS:
                raise ValueError(f"component group {module!r}: unknown unit {unit!r} ({UNITS})")
            if start < 0 or int(size) < 0:
                raise ValueError(f"component group {module!r}: negative start or size")
            self.groups.append(ComponentGroup(module, int(size), offset, unit, start, whole))
            offset += int(size)
        self.n_components = offset

    def __len__(self) -> int:
        return self.n_components

    def names(self) -> list[str]:
        return [f"{g.label}[{g.start + j}]" for g in self.groups for j in range(g.size)]

    def table(self) -> list[tuple[str, int]]:
        """(label, size) of every group; a group of a range of its module's units is
        labelled ``label[start:stop]``."""
        return [
            (g.label if g.whole else f"{g.label}[{g.start}:{g.start + g.size}]", g.size)
            for g in self.groups
        ]

    def check(self, model: nn.Module) -> None:
        """Fail with the culprit's name if a group does not match the model, or if the
        engine could not ablate it exactly (a shared parameter, a Linear its parent
        uses without calling it)."""
        modules = dict(model.named_modules())
        holders = None
        for g in self.groups:
            if g.module not in modules:
                raise KeyError(f"component module {g.module!r} not found in the model")
            module = modules[g.module]
            units = g.units_of(module)
            if g.start + g.size > units:
                where = f"units {g.start}..{g.start + g.size - 1}" if g.start else f"{g.size}"
                raise ValueError(
                    f"component module {g.module!r} has {units} {g.unit!r} units, "
                    f"the spec says {where}"
                )
            if g.whole and g.size != units:
                raise ValueError(
                    f"component module {g.module!r} has {units} {g.unit!r} units, "
                    f"the spec says {g.size} (a part of a module needs a start: "
                    "(module, size, unit, start))"
                )
            parent = modules.get(g.module.rpartition(".")[0])
            if parent is not None and type(parent).__name__ in FUNCTIONAL_PARENTS:
                raise ValueError(
                    f"component module {g.module!r}: its parent {type(parent).__name__} uses "
                    "its weights directly without calling it, so it cannot be masked; "
                    "exclude it"
                )
            holders = shared_parameters(model) if holders is None else holders
            for weights in g.kind(module).zeroed(module):
                sharing = holders.get(_storage_key(weights.param), [])
                if len(sharing) > 1:
                    raise ValueError(
                        f"component module {g.module!r}: its weight is shared by modules "
                        f"{', '.join(repr(s) for s in sharing)} (tied parameters), so zeroing "
                        "it would ablate all of them; untie them (e.g. "
                        "tie_word_embeddings=False) or exclude that module"
                    )

    def unit_weights(self, model: nn.Module) -> list[tuple[ComponentGroup, UnitWeights]]:
        """Each group with the weight slices its components zero (for gradient baselines too)."""
        modules = dict(model.named_modules())
        return [(g, g.weights(modules[g.module])) for g in self.groups]

    def zeroed_weights(self, model: nn.Module) -> list[tuple[ComponentGroup, UnitWeights]]:
        """Every (group, weight slices) pair that ablation zeroes (`UnitKind.zeroed`)."""
        modules = dict(model.named_modules())
        return [
            (g, weights)
            for g in self.groups
            for weights in g.kind(modules[g.module]).zeroed(modules[g.module])
        ]


# ------------------------------------------------------------------ selection
def _selected(name: str, include: Iterable[str] | None, exclude: Iterable[str]) -> bool:
    if include is not None and not any(fnmatch(name, pattern) for pattern in include):
        return False
    return not any(fnmatch(name, pattern) for pattern in exclude)


def _patterns(patterns: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if patterns is None:
        return None
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


# Root children that compute a model's output (torchvision fc/heads/head/classifier,
# Hugging Face classifier/score/lm_head/embed_out and projections).
OUTPUT_NAMES = (
    "fc",
    "head",
    "heads",
    "classifier",
    "score",
    "lm_head",
    "embed_out",
    "visual_projection",
    "text_projection",
)


def output_modules(model: nn.Module) -> list[str]:
    """Paths of the modules that produce the model's output, which the generic helpers
    leave out by default: Hugging Face's ``get_output_embeddings()`` and any child of
    the model named like an output layer (`OUTPUT_NAMES`).

    >>> import torchvision
    >>> output_modules(torchvision.models.resnet18())
    ['fc']
    """
    names = [name for name, _ in model.named_children() if name in OUTPUT_NAMES]
    get_output = getattr(model, "get_output_embeddings", None)
    embeddings = get_output() if callable(get_output) else None
    if isinstance(embeddings, nn.Module):
        names += [n for n, m in model.named_modules() if m is embeddings and n not in names]
    return names


def _outside(name: str, excluded: list[str]) -> bool:
    return not any(name == out or name.startswith(out + ".") for out in excluded)


def _modules(model, include, exclude, include_output):
    """(name, module) pairs selected by the globs, outside the output layers (unless
    include_output) and outside modules whose weights their parent uses directly."""
    include, exclude = _patterns(include), _patterns(exclude) or ()
    outputs = [] if include_output else output_modules(model)
    functional = [
        name for name, m in model.named_modules() if type(m).__name__ in FUNCTIONAL_PARENTS
    ]
    for name, module in model.named_modules():
        if name and _selected(name, include, exclude) and _outside(name, outputs):
            if not any(name.startswith(parent + ".") for parent in functional):
                yield name, module


def conv_filters(
    model: nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = ("*shortcut*", "*downsample*"),
):
    """Every convolution's output filters (Conv1d/2d/3d, grouped and depthwise too),
    in ``named_modules`` order, selected by ``include``/``exclude`` globs over the
    module paths (default: everything but shortcut and downsample convs).

    The paper's ResNet components are all conv filters except the downsample
    (shortcut) convs: 2,304 for setup A's MiniResNet, 22,720 for ResNet-50.

    >>> import torchvision
    >>> spec = conv_filters(torchvision.models.resnet18())
    >>> len(spec), spec.table()[:2]
    (3904, [('conv1', 64), ('layer1.0.conv1', 64)])
    >>> len(conv_filters(torchvision.models.resnet18(), include=["layer4.*"]))
    2048
    """
    include, exclude = _patterns(include), _patterns(exclude) or ()
    return ComponentSpec(
        (
            (name, m.out_channels)
            for name, m in model.named_modules()
            if is_convolution(m) and _selected(name, include, exclude)
        ),
        kind="conv_filters",
    )


def linear_neurons(
    model: nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    unit: str = "out",
    include_output: bool = False,
):
    """The output rows (``unit="out"``) or input columns (``unit="in"``) of every
    nn.Linear and Hugging Face ``Conv1D``, in ``named_modules`` order; the output
    layers (`output_modules`) are left out unless ``include_output``, and so are the
    Linears that their parent uses without calling them (`FUNCTIONAL_PARENTS`). An
    nn.MultiheadAttention's packed Q/K/V projection is no Linear (`vit_neurons` has it).

    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> linear_neurons(model).table(), linear_neurons(model, unit="in").table()
    ([('0', 8), ('2', 2)], [('0', 4), ('2', 8)])
    """
    if unit not in ("out", "in"):
        raise ValueError(f"linear_neurons: unit must be 'out' or 'in', got {unit!r}")
    groups = []
    for name, m in _modules(model, include, exclude, include_output):
        if is_linear(m):
            groups.append((name, out_features_of(m) if unit == "out" else in_features_of(m), unit))
    return ComponentSpec(groups, kind="linear_neurons")


# Two-layer MLPs by the names of their first and second layer (torchvision Sequential
# MLPs are found by structure instead: exactly two Linear children).
MLP_LAYERS = (
    ("fc1", "fc2"),
    ("c_fc", "c_proj"),
    ("dense_h_to_4h", "dense_4h_to_h"),
    ("linear1", "linear2"),
    ("intermediate.dense", "output.dense"),
)


def _first_mlp_layer(module: nn.Module) -> str | None:
    """The path, inside ``module``, of the first layer of its two-layer MLP, or None."""
    for first, second in MLP_LAYERS:
        try:
            a, b = module.get_submodule(first), module.get_submodule(second)
        except AttributeError:
            continue
        if is_linear(a) and is_linear(b) and out_features_of(a) == in_features_of(b):
            return first
    if isinstance(module, nn.Sequential):
        linears = [(n, m) for n, m in module.named_children() if isinstance(m, nn.Linear)]
        if len(linears) == 2 and linears[0][1].out_features == linears[1][1].in_features:
            return linears[0][0]
    return None


def mlp_neurons(
    model: nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    include_output: bool = False,
):
    """The hidden neurons of every MLP block, found from module attributes.

    A gated MLP (a module with Linear children gate_proj, up_proj, down_proj: Llama,
    Mistral, Qwen2) gives one ``gated`` component per hidden index: gate and up rows
    and down column zeroed together, which removes the neuron. A two-layer MLP
    (fc1/fc2, c_fc/c_proj, dense_h_to_4h/dense_4h_to_h, linear1/linear2, BERT's
    intermediate.dense/output.dense, a Sequential with two Linears) gives the first
    layer's output rows (unit ``out``): as ``vit_neurons`` and the paper's neurons,
    a zeroed row outputs act(bias), not zero. Globs select the blocks by path.

    >>> from torchvision.models import VisionTransformer
    >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2,
    ...                         hidden_dim=8, mlp_dim=16)
    >>> mlp_neurons(vit).table()
    [('encoder.layers.encoder_layer_0.mlp.0', 16)]
    """
    groups = []
    for name, m in _modules(model, include, exclude, include_output):
        if is_gated_mlp(m):
            groups.append((name, m.down_proj.in_features, "gated"))
            continue
        first = _first_mlp_layer(m)
        if first is not None:
            layer = m.get_submodule(first)
            groups.append((f"{name}.{first}", out_features_of(layer), "out"))
    return ComponentSpec(groups, kind="mlp_neurons")


def vit_neurons(model: nn.Module, exclude: Iterable[str] = ("heads",)):
    """torchvision ViT neurons: per block the attention's Q/K/V rows (in_proj), out_proj,
    and the MLP's fc1 and fc2 rows; the classification head is excluded.

    As the original: every Linear and MultiheadAttention outside ``heads`` (and the
    output layers, `output_modules`), in ``named_modules`` order (ViT-B/16:
    12 x (2,304 + 768 + 3,072 + 768) = 82,944).

    >>> from torchvision.models import VisionTransformer
    >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2,
    ...                         hidden_dim=8, mlp_dim=16)
    >>> vit_neurons(vit).table()  # doctest: +NORMALIZE_WHITESPACE
    [('encoder.layers.encoder_layer_0.self_attention.in_proj', 24),
     ('encoder.layers.encoder_layer_0.self_attention.out_proj', 8),
     ('encoder.layers.encoder_layer_0.mlp.0', 16), ('encoder.layers.encoder_layer_0.mlp.3', 8)]
    """
    excluded = [*exclude, *output_modules(model)]
    groups = []
    for name, m in model.named_modules():
        if not _outside(name, excluded):
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


def _head_kind(module: nn.Module) -> UnitKind | None:
    return next((k for k in UNIT_KINDS if k.unit == "head" and k.matches(module)), None)


def attention_heads(
    model: nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
):
    """Every attention head: of nn.MultiheadAttention (torchvision ViT, nn.Transformer
    layers), GPT-2, and Hugging Face attention modules whose layout (output projection,
    heads, head size) `attention_layout` finds: BERT/RoBERTa, Llama, Mistral, Qwen2,
    Phi, GPT-NeoX, ViT, CLIP (GPT-2 and ViT small: 12 x 12 = 144).

    Ablating a head zeroes the output-projection weights that read its output,
    so the head contributes nothing (the projection's bias stays); with grouped-query
    attention, a head is a query head. Fails, naming the module types, where a
    selected attention module is not understood (or the model has none).

    >>> from torchvision.models import VisionTransformer
    >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=2, num_heads=2,
    ...                         hidden_dim=8, mlp_dim=16)
    >>> attention_heads(vit).names()  # doctest: +NORMALIZE_WHITESPACE
    ['encoder.layers.encoder_layer_0.self_attention.head[0]',
     'encoder.layers.encoder_layer_0.self_attention.head[1]',
     'encoder.layers.encoder_layer_1.self_attention.head[0]',
     'encoder.layers.encoder_layer_1.self_attention.head[1]']
    """
    groups, found, unknown = [], [], []
    selected = list(_modules(model, include, exclude, include_output=False))
    for name, m in selected:
        kind = _head_kind(m)
        if kind is not None:
            groups.append((name, kind.count(m), "head"))
            found.append(name)
    for name, m in selected:
        inside = any(name.startswith(f + ".") or f.startswith(name + ".") for f in found)
        if "Attention" in type(m).__name__ and name not in found and not inside:
            unknown.append(f"{name!r} ({type(m).__name__})")
    if unknown or not groups:
        what = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise ValueError(
            f"attention_heads: {type(model).__name__} has "
            + (f"attention modules the engine does not understand: {what}" if unknown else "")
            + ("no attention module" if not unknown else "")
            + "; heads are understood for nn.MultiheadAttention, GPT-2 and Hugging Face "
            "attention with an output projection (o_proj, out_proj, dense, output.dense) "
            "of heads x head_dim inputs"
            + ("; leave the others out with exclude=[...]" if unknown and groups else "")
        )
    return ComponentSpec(groups, kind="attention_heads")


KINDS = {
    "conv_filters": conv_filters,
    "vit_neurons": vit_neurons,
    "gpt2_rows": gpt2_rows,
    "attention_heads": attention_heads,
    "linear_neurons": linear_neurons,
    "mlp_neurons": mlp_neurons,
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


def keep_mask(masks, name: str = "keep mask") -> torch.Tensor:
    """Masks as bool, refusing values other than 0 and 1 (a soft mask would scale
    activations, which is no ablation)."""
    masks = torch.as_tensor(masks)
    if masks.dtype != torch.bool:
        if not ((masks == 0) | (masks == 1)).all():
            bad = masks[(masks != 0) & (masks != 1)].flatten()[0].item()
            raise ValueError(
                f"{name} must hold only 0 and 1 (or be bool), found {bad!r}: "
                "a soft mask would scale components, not ablate them"
            )
        masks = masks != 0
    return masks


def dropped_slices(model: nn.Module, spec: ComponentSpec, keep: torch.Tensor):
    """(param, dim, indices) of every weight slice that ``keep`` ablates."""
    for g, weights in spec.zeroed_weights(model):
        dropped = (~keep[g.offset : g.offset + g.size]).nonzero().flatten() + g.start
        if len(dropped):
            yield weights.param, weights.dim, weights.indices(dropped)


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
    keep = keep_mask(keep).cpu()
    if keep.shape != (len(spec),):
        raise ValueError(f"keep mask has shape {tuple(keep.shape)}, expected ({len(spec)},)")
    spec.check(model)
    for param, dim, indices in dropped_slices(model, spec, keep):
        param.index_fill_(dim, indices, 0)
    return model
