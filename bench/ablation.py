"""Throughput of ablated-model evaluation: plain inference, our engine, the original's procedure.

    python bench/ablation.py --setup SETUP [--device cpu|cuda] [--compile]
                             [--precision auto|fp32|bf16] [--examples N] [--masks K]
                             [--original-masks K]

SETUP: mini_digits, cifar_miniresnet (A), imagenet_resnet50 (B), imagenet_vit (C), gpt2.

Measures in one run, on the same model (random weights) and the same random inputs:

(a) plain inference of the unablated model at its best settings (evaluation set on
    the device, channels-last for convnets, bf16 autocast on CUDA (``--precision``:
    also on the CPU), optional torch.compile, large batches);
(b) our ablated evaluation: ``coar.ablate``'s path, (masks x examples) per forward
    pass, every sample masked by its own keep-mask, same settings as (a);
(c) the original code's procedure re-enacted: per mask, deep-copy the model on the
    CPU, zero the ablated weights, move it to the device, and evaluate it under
    fp16 autocast (CUDA only, as ``torch.cuda.amp.autocast``), reading the evaluation
    set from host memory batch by batch (batch 500; 12 for GPT-2, with its
    per-sequence margins), as its ``make_dataset.py`` scripts do.

Prints examples/s (tokens/s for GPT-2), the ratios b/a and b/c, and the projected
device-hours of the paper's full m x N component dataset for that setup at (b) and
(c) speed (the original's reported seconds per mask, REFERENCE.md section 4, are
printed alongside).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import torch

from coar.components import component_spec, zero_components
from coar.device import describe, resolve_device
from coar.masking import (
    PRECISIONS,
    MaskedModel,
    ablated_outputs,
    auto_max_batch,
    autocast_context,
    repeat_batch,
    take,
    to_channels_last,
    uses_bf16,
)
from coar.masks import sample_masks
from coar.outputs import margin
from coar_replication.architectures import architecture, build, random_inputs
from coar_workflow.roofline import forward_flops, matmul_peak


@dataclass(frozen=True)
class BenchSetup:
    paper_m: tuple[int, ...]  # masks of the paper's component dataset (a range: low, high)
    paper_n: int  # examples of the paper's component dataset
    alpha: float  # the paper's alpha_train
    examples: dict  # examples measured here, per device type
    masks: dict  # ablated models measured by (b), per device type
    original_masks: dict  # ablated models measured by (c), per device type
    original_batch: int = 500  # the original's evaluation batch size
    original_s_per_mask: str = ""  # what the paper's authors report
    seq_len: int = 0  # tokens per sequence (language models)
    masks_per_batch: int | str = "auto"  # as the setup's ablate stage runs


SETUPS = {
    # The embedded default (config/mini.yaml: 5,000 masks x 360 test digits).
    "mini_digits": BenchSetup(
        (5_000,),
        360,
        0.1,
        dict(cpu=360, cuda=360),
        dict(cpu=64, cuda=512),
        dict(cpu=32, cuda=64),
    ),
    "cifar_miniresnet": BenchSetup(
        (50_000,),
        10_000,
        0.10,
        dict(cpu=500, cuda=10_000),
        dict(cpu=4, cuda=32),
        dict(cpu=2, cuda=4),
        original_s_per_mask="~0.73 s",
    ),
    "imagenet_resnet50": BenchSetup(
        (100_000,),
        50_000,
        0.05,
        dict(cpu=32, cuda=2_048),
        dict(cpu=2, cuda=48),
        dict(cpu=1, cuda=4),
        original_s_per_mask="~8-11 s",
    ),
    "imagenet_vit": BenchSetup(
        (100_000, 200_000),
        5_000,
        0.05,
        dict(cpu=16, cuda=5_000),
        dict(cpu=2, cuda=12),
        dict(cpu=1, cuda=3),
        original_s_per_mask="~2.5 s",
    ),
    # Last 500 TinyStories validation stories; seq_len tokens each (assumed: stories are
    # at most 1,024 tokens and mostly much shorter).
    "gpt2": BenchSetup(
        (100_000,),
        500,
        0.025,
        dict(cpu=4, cuda=500),
        dict(cpu=2, cuda=16),
        dict(cpu=1, cuda=3),
        original_batch=12,
        seq_len=256,
    ),
}


def lm_mean_margin(output, ids: torch.Tensor) -> torch.Tensor:
    """Per sequence: next-token margin averaged over its tokens (no padding here)."""
    logits = getattr(output, "logits", output)[:, :-1]
    margins = margin(logits.flatten(0, 1), ids[:, 1:].flatten())
    return margins.view(ids.shape[0], -1).mean(1)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def call(model, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def to_device(inputs, device, non_blocking=False):
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=non_blocking)


def best_times(fns: dict, device: torch.device, rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` seconds per function after one warm-up call each (which also
    compiles); rounds interleaved so that load changes on a shared machine hit all alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", choices=sorted(SETUPS), default="mini_digits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--examples", type=int, help="examples measured (default per setup)")
    parser.add_argument("--masks", type=int, help="ablated models measured by (b)")
    parser.add_argument("--original-masks", type=int, help="ablated models measured by (c)")
    parser.add_argument(
        "--masks-per-batch",
        help="ablated models per forward pass, or auto (default: as the setup's ablate stage)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile (a) and (b)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="(a) and (b): auto = bf16 autocast on CUDA, fp32 on the CPU (as ablation.precision)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (best is kept)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    bf16 = uses_bf16(device, args.precision)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = SETUPS[args.setup]
    arch = architecture(args.setup)
    language = arch.task == "language"
    n_examples = args.examples or cfg.examples[device.type]
    n_masks = args.masks or cfg.masks[device.type]
    n_original = args.original_masks or cfg.original_masks[device.type]

    model = build(args.setup, seed=0)
    spec = component_spec(model, arch.kind)
    host_inputs, host_labels = random_inputs(
        args.setup, model, n_examples, seed=0, seq_len=cfg.seq_len or None
    )
    output_fn = lm_mean_margin if language else margin
    units = cfg.seq_len if language else 1  # tokens (or images) per example
    unit_name = "tokens" if language else "examples"
    masks = torch.from_numpy(
        sample_masks(0, "bench", range(max(n_masks, n_original)), len(spec), cfg.alpha)
    )
    cpu_model = copy.deepcopy(model)  # the original keeps its model on the CPU

    # (a) and (b): evaluation set on the device, channels-last, bf16 on CUDA, compile.
    model = model.to(device)
    inputs = to_channels_last(model, to_device(host_inputs, device))
    labels = host_labels.to(device)
    masked = MaskedModel(model, spec, compile=args.compile)
    plain_model = torch.compile(model) if args.compile else model
    with masked:
        masks_per_batch = args.masks_per_batch or cfg.masks_per_batch
        if masks_per_batch == "auto":
            max_batch = auto_max_batch(masked, inputs, labels, output_fn, bf16)
        else:
            max_batch = int(masks_per_batch) * n_examples
        # (a) runs the same (mask, example) batches as (b), without masks: the examples
        # repeated to fill a pass (or split, when they are more than a pass holds).
        repeats = max(1, min(n_masks, max_batch // n_examples))
        plain_batch = min(n_examples, max_batch)
        plain_passes = -(-n_masks // repeats)

        @torch.no_grad()
        def plain():
            with autocast_context(device, bf16):
                for _ in range(plain_passes):
                    for e0 in range(0, n_examples, plain_batch):
                        x = repeat_batch(take(inputs, slice(e0, e0 + plain_batch)), repeats)
                        y = repeat_batch(labels[e0 : e0 + plain_batch], repeats)
                        output_fn(call(plain_model, x), y).float().cpu()

        def ablated():
            ablated_outputs(
                masked, inputs, labels, masks[:n_masks].to(device), output_fn, max_batch, bf16
            )

        print(
            f"setup {args.setup}: {len(spec):,} {arch.kind} components, {n_examples:,} "
            f"examples{f' x {cfg.seq_len} tokens' if language else ''}, device "
            f"{describe(device)}, {args.threads} CPU threads, compile {args.compile}, "
            f"{'bf16' if bf16 else 'fp32'}, {max_batch:,} (mask, example) pairs per pass"
        )

        @torch.no_grad()
        def original():
            # Per mask: CPU deep copy, zeroed weights, to the device, fp16 autocast (CUDA
            # only), the evaluation set read from host memory batch by batch.
            for keep in masks[:n_original]:
                ablated_model = zero_components(copy.deepcopy(cpu_model), spec, keep).to(device)
                ablated_model.eval()
                batch = cfg.original_batch
                for e0 in range(0, n_examples, batch):
                    x = to_device(take(host_inputs, slice(e0, e0 + batch)), device)
                    y = host_labels[e0 : e0 + batch].to(device)
                    with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                        out = call(ablated_model, x)
                    if language:  # the original: one .item() per sequence
                        for i in range(y.shape[0]):
                            lm_mean_margin(out.logits[i : i + 1], y[i : i + 1]).item()
                    else:
                        margin(out, y).cpu()
                del ablated_model
                if cuda:
                    torch.cuda.empty_cache()

        names = ("(a) plain inference", "(b) ablated (ours)", "(c) original re-enacted")
        best = best_times(
            dict(zip(names, (plain, ablated, original), strict=True)), device, args.rounds
        )
    ablated_models = (plain_passes * repeats, n_masks, n_original)
    seconds = {name: best[name] / k for name, k in zip(names, ablated_models, strict=True)}

    rates = {name: n_examples * units / s for name, s in seconds.items()}
    # Roofline: the model's FLOPs per example (a few examples, unablated) against the
    # dense-matmul peak measured here in each procedure's precision ((c): fp16 on CUDA).
    probe = min(n_examples, 8)
    flops_per_example = forward_flops(lambda: call(model, take(inputs, slice(0, probe)))) / probe
    ours_dtype = torch.bfloat16 if bf16 else torch.float32
    original_dtype = torch.float16 if cuda else torch.float32
    peaks = {dtype: matmul_peak(device, dtype) for dtype in {ours_dtype, original_dtype}}
    dtypes = dict(zip(names, (ours_dtype, ours_dtype, original_dtype), strict=True))
    for name, rate in rates.items():
        achieved = rate / units * flops_per_example
        fraction = achieved / peaks[dtypes[name]]
        print(
            f"{name:<26} {rate:14,.1f} {unit_name}/s   {seconds[name]:9.4f} s per mask   "
            f"{achieved / 1e9:9,.1f} GFLOP/s = {fraction:6.1%} of the "
            f"{dtype_name(dtypes[name])} matmul peak"
        )
    a, b, c = (rates[name] for name in seconds)
    print(f"b/a = {b / a:.3f}   b/c = {b / c:.2f}")
    print(
        f"model: {flops_per_example / 1e6:,.2f} MFLOP per example; measured matmul peaks: "
        + ", ".join(f"{dtype_name(d)} {p / 1e9:,.0f} GFLOP/s" for d, p in peaks.items())
    )
    # What the speed-up targets ask of the hardware (issue targets: b/c 2 on CUDA, 3 on CPU).
    needed = [k * c / units * flops_per_example / peaks[ours_dtype] for k in (2, 3)]
    print(
        f"b/c = 2 and 3 need {needed[0]:.0%} and {needed[1]:.0%} of the "
        f"{dtype_name(ours_dtype)} matmul peak"
    )
    work = [m * cfg.paper_n * units for m in cfg.paper_m]
    for name in ("(b) ablated (ours)", "(c) original re-enacted"):
        hours = " - ".join(
            f"{w / rates[name] / 3600:,.{1 if w / rates[name] > 360 else 4}f}" for w in work
        )
        print(
            f"projected {describe(device)} hours for m = "
            f"{' - '.join(f'{m:,}' for m in cfg.paper_m)} x N = {cfg.paper_n:,}: {hours} ({name})"
        )
    if cfg.original_s_per_mask:
        print(f"the original's reported cost: {cfg.original_s_per_mask} per mask")


if __name__ == "__main__":
    main()
