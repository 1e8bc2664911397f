"""Throughput of ablated-model evaluation against plain inference, in one run.

    python bench/ablation.py --setup mini_digits [--device cpu|cuda] [--masks 64]

Measures examples/s for (1) plain inference of the unablated model, (2) our
batched masking engine (many masks per forward pass), (3) the original code's
approach (deep-copy the model and zero the weights for every mask). Ratios are
against (1) measured in the same run. Uses the embedded default's architecture
with random weights, so it needs no workflow outputs.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from coar.components import conv_filters, zero_components
from coar.device import describe, resolve_device
from coar.masking import MaskedModel, ablated_outputs
from coar.masks import sample_masks
from coar.models import MiniResNet
from coar.outputs import margin

SETUPS = {
    "mini_digits": dict(
        model=dict(in_channels=1, planes=32, num_blocks=4, num_classes=10, pool=2, image_size=8),
        n_examples=360,
    ),
}


def best_times(fns: dict, rounds: int) -> dict[str, float]:
    """Best-of-`rounds` seconds per function, rounds interleaved so that warm-up and
    clock drift hit every method alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", choices=sorted(SETUPS), default="mini_digits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--masks", type=int, default=64, help="ablated models per measurement")
    parser.add_argument("--masks-per-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = SETUPS[args.setup]
    torch.manual_seed(0)
    model = MiniResNet(**cfg["model"]).to(device).eval()
    spec = conv_filters(model)
    side = cfg["model"]["image_size"]
    inputs = torch.randn(cfg["n_examples"], cfg["model"]["in_channels"], side, side, device=device)
    labels = torch.randint(0, 10, (cfg["n_examples"],), device=device)
    masks = torch.from_numpy(sample_masks(0, "bench", range(args.masks), len(spec), 0.1))
    n_evals = args.masks * cfg["n_examples"]

    @torch.no_grad()
    def plain():
        for _ in range(args.masks):
            margin(model(inputs), labels)

    masked = MaskedModel(model, spec)

    def engine():
        ablated_outputs(
            masked,
            inputs,
            labels,
            masks.to(device),
            margin,
            max_batch=args.masks_per_batch * cfg["n_examples"],
        )

    @torch.no_grad()
    def deepcopy_and_zero():
        cpu_model = model.cpu()
        for keep in masks:
            ablated = zero_components(copy.deepcopy(cpu_model), spec, keep).to(device)
            margin(ablated(inputs), labels)
        model.to(device)

    print(
        f"setup {args.setup}: {len(spec)} components, {cfg['n_examples']} examples, "
        f"{args.masks} masks, device {describe(device)}, {args.threads} threads"
    )
    seconds = best_times(
        {
            "plain inference": plain,
            "masking engine": engine,
            "deep copy + zero (original)": deepcopy_and_zero,
        },
        args.repeats,
    )
    baseline = n_evals / seconds["plain inference"]
    for name, sec in seconds.items():
        throughput = n_evals / sec
        print(f"{name:<28} {throughput:12,.0f} examples/s   {throughput / baseline:6.2f} x plain")


if __name__ == "__main__":
    main()
