"""The ablation stage's speed features and the `coar components` command."""

import copy

import pytest
import torch
from conftest import randomize_batchnorm

from coar.ablate import ablate_rows
from coar.components import component_spec, zero_components
from coar.masking import MaskedModel, ablated_outputs, fastest_cpu_batch
from coar.masks import sample_masks
from coar.outputs import margin
from coar_replication.architectures import architecture, build, random_inputs
from coar_replication.setup import Setup
from coar_workflow.cli import main
from coar_workflow.roofline import forward_flops, matmul_peak


@pytest.mark.parametrize(
    ("setup", "kind", "total"),
    [
        ("mini_digits", None, 288),
        ("cifar_miniresnet", None, 2304),
        ("imagenet_resnet50", None, 22720),
        ("imagenet_vit", None, 82944),
        ("gpt2", None, 64512),
        ("gpt2", "attention_heads", 144),
    ],
)
def test_components_command_prints_a_table_and_the_total(capsys, setup, kind, total):
    main(["components", setup, *(["--kind", kind] if kind else [])])
    heading, header, *rows, last = capsys.readouterr().out.splitlines()
    assert heading.startswith(f"{kind or architecture(setup).kind} of ")
    assert header.split() == ["module", "components"] and last == f"total: {total}"
    assert sum(int(line.split()[-1]) for line in rows) == total


def test_components_command_names_an_unknown_setup(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["components", "imagenet_vt"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "'imagenet_vt' is not a setup" in err


def tiny_setup(device="cpu") -> Setup:
    model = build("cifar_miniresnet", size="tiny", seed=0)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    inputs, labels = random_inputs("cifar_miniresnet", model, 10, seed=1, size="tiny")
    spec = component_spec(model, "conv_filters")
    return Setup("tiny", model.to(device), spec, inputs.to(device), labels.to(device), margin)


def reference_margins(setup: Setup, masks) -> torch.Tensor:
    model = copy.deepcopy(setup.model).cpu().float().to(memory_format=torch.contiguous_format)
    inputs, labels = setup.inputs.cpu(), setup.labels.cpu()
    return torch.stack(
        [
            margin(zero_components(copy.deepcopy(model), setup.spec, keep)(inputs), labels)
            for keep in torch.as_tensor(masks)
        ]
    )


def test_ablate_rows_auto_batch_channels_last_equals_zeroing():
    setup = tiny_setup()
    reference = None
    for masks_per_batch in ("auto", 3):
        masks, outputs = ablate_rows(
            *setup.engine_args(),
            seed=0,
            stream="test",
            rows=range(7),
            alpha=0.2,
            masks_per_batch=masks_per_batch,
            progress=False,
        )
        reference = reference_margins(tiny_setup(), masks) if reference is None else reference
        torch.testing.assert_close(torch.from_numpy(outputs), reference, rtol=1e-4, atol=1e-4)


def test_bf16_precision_is_close_to_fp32():
    setup = tiny_setup()
    kwargs = dict(seed=0, stream="test", rows=range(4), alpha=0.2, progress=False)
    _, exact = ablate_rows(*setup.engine_args(), precision="fp32", **kwargs)
    _, bf16 = ablate_rows(*tiny_setup().engine_args(), precision="bf16", **kwargs)
    scale = abs(exact).max()
    assert abs(bf16 - exact).max() < 0.05 * scale


class OutOfMemoryAbove(torch.nn.Module):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit, self.largest = model, limit, 0

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        self.largest = max(self.largest, x.shape[0])
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_retries(caplog):
    setup = tiny_setup()
    wrapper = OutOfMemoryAbove(setup.model, limit=25)
    spec = component_spec(wrapper, "conv_filters")
    masks = torch.from_numpy(sample_masks(0, "test", range(6), len(spec), 0.2))
    masked = MaskedModel(wrapper, spec)
    got = ablated_outputs(masked, setup.inputs, setup.labels, masks, margin, max_batch=80)
    assert masked.max_batch == 20 and wrapper.largest == 20
    assert "out of memory" in caplog.text
    torch.testing.assert_close(got, reference_margins(setup, masks), rtol=1e-4, atol=1e-4)


def test_out_of_memory_of_a_single_sample_is_raised():
    setup = tiny_setup()
    wrapper = OutOfMemoryAbove(setup.model, limit=0)
    spec = component_spec(wrapper, "conv_filters")
    masks = torch.ones(1, len(spec), dtype=torch.bool)
    with pytest.raises(torch.OutOfMemoryError):
        ablated_outputs(MaskedModel(wrapper, spec), setup.inputs, setup.labels, masks, margin)


class SlowAbove(torch.nn.Module):
    """Costs 1 ms per sample up to ``knee`` samples per pass and 4 ms beyond (a batch that
    no longer fits the caches), on its own clock: the probe's verdict does not depend on
    the machine's load."""

    def __init__(self, model, knee):
        super().__init__()
        self.model, self.knee, self.sizes = model, knee, []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def forward(self, x):
        self.sizes.append(x.shape[0])
        self.now += (1e-3 if x.shape[0] <= self.knee else 4e-3) * x.shape[0]
        return self.model(x)


def test_cpu_auto_batch_is_the_fastest_probed_size():
    setup = tiny_setup()  # 10 examples: probes 10, 20, 40, 80, 160 pairs
    wrapper = SlowAbove(setup.model, knee=40)
    masked = MaskedModel(wrapper, component_spec(wrapper, "conv_filters"))
    best = fastest_cpu_batch(
        masked,
        setup.inputs,
        setup.labels,
        margin,
        largest=200,
        min_seconds=0.2,
        clock=wrapper.clock,
    )
    assert best == 40
    assert sorted(set(wrapper.sizes)) == [10, 20, 40, 80, 160]
    # 160: once in the first sweep, twice when timed (the second size past the knee)
    assert wrapper.sizes.count(160) == 1 + 2


def test_cpu_auto_batch_probes_no_size_past_a_slow_pass():
    setup = tiny_setup()
    wrapper = SlowAbove(setup.model, knee=0)  # 4 ms per sample: 80 pairs take 0.32 s
    masked = MaskedModel(wrapper, component_spec(wrapper, "conv_filters"))
    fastest_cpu_batch(
        masked,
        setup.inputs,
        setup.labels,
        margin,
        max_pass_seconds=0.3,
        min_seconds=0.01,
        clock=wrapper.clock,
    )
    assert max(wrapper.sizes) == 80


def test_cpu_auto_batch_times_nothing_when_the_first_pass_is_slow():
    setup = tiny_setup()
    wrapper = SlowAbove(setup.model, knee=0)  # 10 pairs take 40 ms
    masked = MaskedModel(wrapper, component_spec(wrapper, "conv_filters"))
    best = fastest_cpu_batch(
        masked, setup.inputs, setup.labels, margin, max_pass_seconds=0.02, clock=wrapper.clock
    )
    assert best == 10 and wrapper.sizes == [10, 10]  # slow twice in a row: no more probes


class SlowFirstPass(SlowAbove):
    """1 ms per sample, but the first pass costs 5 s more (one-time costs of a process)."""

    def forward(self, x):
        if not self.sizes:
            self.now += 5.0
        return super().forward(x)


def test_cpu_auto_batch_probes_on_when_only_the_first_pass_was_slow():
    setup = tiny_setup()
    wrapper = SlowFirstPass(setup.model, knee=10**6)
    masked = MaskedModel(wrapper, component_spec(wrapper, "conv_filters"))
    best = fastest_cpu_batch(
        masked, setup.inputs, setup.labels, margin, largest=160, clock=wrapper.clock
    )
    assert best == 160 and sorted(set(wrapper.sizes)) == [10, 20, 40, 80, 160]


def test_roofline_counts_conv_flops_and_measures_a_matmul_peak():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    assert forward_flops(lambda: conv(x)) == 2 * 2 * 8 * 5 * 5 * 3 * 3 * 3
    assert matmul_peak(torch.device("cpu"), torch.float32, size=128, rounds=1) > 1e6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("name", ["imagenet_resnet50", "imagenet_vit", "gpt2"])
def test_cuda_bf16_engine_tracks_zeroing(name, compile):
    """On the GPU (bf16 autocast, optionally compiled) the engine still tracks literally
    zeroed weights, up to bf16 rounding."""
    model = build(name, size="tiny", seed=0).cuda()
    spec = component_spec(model, architecture(name).kind)
    inputs, _ = random_inputs(name, model, 4, seed=0, size="tiny", seq_len=8)
    inputs = {k: v.cuda() for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.cuda()
    masks = torch.from_numpy(sample_masks(0, "test", range(3), len(spec), 0.2)).cuda()
    masked = MaskedModel(model, spec, compile=compile)
    with masked, torch.autocast("cuda", dtype=torch.bfloat16):
        got = masked(inputs, masks)
    got = getattr(got, "logits", got).float()
    reference = []
    for keep in masks:
        ablated = zero_components(copy.deepcopy(model), spec, keep)
        out = ablated(**inputs) if isinstance(inputs, dict) else ablated(inputs)
        reference.append(getattr(out, "logits", out).float())
    reference = torch.cat(reference)
    assert (got - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3
