"""The masking engine's overhead, as `coar.attribute` runs it: ablation examples/s
against plain inference of the same model on the same number of samples.

    python bench/attribute_overhead.py [--rounds R] [--masks K] [--threads T] [--device cpu|cuda]

Measures, in one run, for a torchvision ResNet-18 (all 3,904 conv filters, 32 x 32
images) and a Hugging Face BERT classifier (its MLP neurons and attention heads, 64
tokens), both with random weights:

- plain: the unablated model's forward (and margin) on K masks x E examples worth of
  samples, in batches of the size the ablation uses, examples on the device,
  channels-last for the CNN, under torch.no_grad;
- ablate: `coar.AttributionRun(...).ablate_rows` on K masks, the ablation that
  `coar.attribute` runs (same batch: ``masks_per_batch`` fixed, so no probing).

Rounds alternate plain and ablate so that both see the same machine load. Prints the
best round's examples/s of each, their ratio ablate/plain (the target: at least 0.9),
and the median over rounds of each round's own ratio (robust to a load that drifts).
Takes about a minute and a half on two CPU cores. The fit, one |C|^3 solve, is not part
of it (`coar.cost.fit_cost` projects it).
"""

from __future__ import annotations

import argparse
import time

import torch

import coar
from coar.masking import repeat_batch, to_channels_last


def resnet18_case(device):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval().to(device)
    images = torch.randn(16, 3, 32, 32, device=device)
    return "resnet18, 32x32", model, images, coar.conv_filters(model), 16, 2


def bert_case(device):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval().to(device)
    inputs = {
        "input_ids": torch.randint(1, 1000, (16, 64), device=device),
        "attention_mask": torch.ones(16, 64, dtype=torch.long, device=device),
    }
    heads, neurons = coar.attention_heads(model), coar.mlp_neurons(model)
    spec = coar.ComponentSpec(
        [(g.module, g.size, g.unit) for g in neurons.groups + heads.groups], kind="bert"
    )
    return "BERT classifier, 64 tokens", model, inputs, spec, 16, 2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def plain_seconds(model, inputs, labels, n_masks, masks_per_batch, device) -> float:
    """Seconds of the unablated forward (and margin) on n_masks x examples samples."""
    inputs = to_channels_last(model, inputs)
    batch = repeat_batch(inputs, masks_per_batch)
    batch_labels = labels.repeat(masks_per_batch)
    sync(device)
    start = time.perf_counter()
    for _ in range(0, n_masks, masks_per_batch):
        out = model(**batch) if isinstance(batch, dict) else model(batch)
        coar.margin(out, batch_labels).cpu()
    sync(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--masks", type=int, default=32, help="masks K per measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, {args.rounds} rounds (best)")
    header = f"{'model':28} {'components':>10} {'plain ex/s':>11} {'ablate ex/s':>12} "
    print(header + f"{'ablate/plain':>12} {'median paired':>14}")
    for case in (resnet18_case, bert_case):
        name, model, inputs, spec, n_examples, masks_per_batch = case(device)
        labels = coar.outputs.labels_for(coar.margin, model, inputs)
        run = coar.AttributionRun(
            model,
            inputs,
            labels,
            components=spec,
            n_masks=args.masks,
            masks_per_batch=masks_per_batch,
            progress=False,
            check_exact=False,
            solver=None,
        )
        rows = range(args.masks)
        samples = args.masks * n_examples
        run.ablate_rows(range(masks_per_batch))  # warm-up: one-time costs of both paths
        plain_seconds(model, inputs, labels, masks_per_batch, masks_per_batch, device)
        plain, ablate = [], []
        for _ in range(args.rounds):
            plain.append(plain_seconds(model, inputs, labels, args.masks, masks_per_batch, device))
            start = time.perf_counter()
            run.ablate_rows(rows)
            ablate.append(time.perf_counter() - start)
        plain_rate, ablate_rate = samples / min(plain), samples / min(ablate)
        paired = sorted(p / a for p, a in zip(plain, ablate, strict=True))
        print(
            f"{name:28} {len(spec):>10,} {plain_rate:>11,.0f} {ablate_rate:>12,.0f} "
            f"{ablate_rate / plain_rate:>12.2f} {paired[len(paired) // 2]:>14.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
