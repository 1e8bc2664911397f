"""The `coar` command."""

from __future__ import annotations

import argparse

from coar import __version__


def components(args) -> None:
    """Print the components of a setup's architecture (or of a checkpoint): one line per
    module group with its count, then ``total: N``."""
    from pathlib import Path

    import torch

    from coar.components import component_spec
    from coar_replication.architectures import ARCHITECTURES, architecture, build
    from coar_replication.checkpoints import load_model

    if args.setup in ARCHITECTURES:
        kind = args.kind or architecture(args.setup).kind
        with torch.device("meta"):  # the architecture is all we need: no weights
            model = build(args.setup)
    elif Path(args.setup).is_file():
        kind = args.kind or "conv_filters"
        model = load_model(args.setup)
    else:
        raise SystemExit(
            f"coar components: {args.setup!r} is neither a setup ({', '.join(ARCHITECTURES)}) "
            "nor a checkpoint file"
        )
    spec = component_spec(model, kind)
    width = max(len(label) for label, _ in spec.table())
    for label, size in spec.table():
        print(f"{label:<{width}}  {size}")
    print(f"total: {len(spec)}")


def provenance(args) -> None:
    from coar_workflow.provenance import chain, chain_json, format_chain

    steps = chain(args.result)
    print(chain_json(steps) if args.json else format_chain(steps))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="coar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("components", help="list the components of a setup or a checkpoint")
    p.add_argument(
        "setup",
        help="mini_digits, cifar_miniresnet, imagenet_resnet50, imagenet_vit or gpt2 "
        "(the paper's architecture), or a MiniResNet checkpoint saved by the workflow",
    )
    p.add_argument(
        "--kind",
        choices=["conv_filters", "vit_neurons", "gpt2_rows", "attention_heads"],
        help="component kind (default: the paper's kind for the setup)",
    )
    p.set_defaults(func=components)
    p = sub.add_parser(
        "provenance",
        help="print the chain of workflow steps that produced a result, with their params, "
        "input checksums, code version, packages and device",
    )
    p.add_argument("result", help="a file made by the workflow, e.g. results/mini/figures/fig1.pdf")
    p.add_argument("--json", action="store_true", help="the full records, as JSON")
    p.set_defaults(func=provenance)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
