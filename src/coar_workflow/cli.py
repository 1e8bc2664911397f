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
    """Print the chain of a result; exit 1 if any check failed (an unreadable or missing
    record, a changed file, code other than planned), 2 if the file does not exist."""
    import sys
    from pathlib import Path

    from coar_workflow.provenance import (
        SIDECAR_SUFFIX,
        chain,
        chain_json,
        format_chain,
        problems,
        sidecar_path,
    )

    path = Path(args.result)
    if path.name.endswith(SIDECAR_SUFFIX):
        print(
            f"coar provenance: {path} is a provenance record; give the file it describes, "
            f"{path.with_name(path.name.removesuffix(SIDECAR_SUFFIX))}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if not path.exists() and not sidecar_path(path).exists():
        print(f"coar provenance: {path}: no such file", file=sys.stderr)
        raise SystemExit(2)
    try:
        steps = chain(path)
    except (OSError, ValueError) as e:  # no record, or an unusable one: the message says
        print(f"coar provenance: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(chain_json(steps) if args.json else format_chain(steps))
    failed = problems(steps)
    if failed:
        if args.json:  # the text has them as WARNING lines; JSON keeps stdout parseable
            for problem in failed:
                print(f"WARNING: {problem}", file=sys.stderr)
        print(f"coar provenance: {len(failed)} failed check(s)", file=sys.stderr)
        raise SystemExit(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="coar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("components", help="list the components of a setup or a checkpoint")
    p.add_argument(
        "setup",
        help="mini_digits, cifar_miniresnet, imagenet_resnet50, imagenet_vit, gpt2 "
        "(the paper's architecture) or phi2, or a MiniResNet checkpoint saved by the workflow",
    )
    p.add_argument(
        "--kind",
        choices=["conv_filters", "vit_neurons", "gpt2_rows", "attention_heads", "mlp_neurons"],
        help="component kind (default: the paper's kind for the setup)",
    )
    p.set_defaults(func=components)
    p = sub.add_parser(
        "provenance",
        help="print the chain of workflow steps that produced a result, with their params, "
        "input checksums, code version, packages and device, and check it",
        description="Print the chain of workflow steps that produced a result and check it: "
        "the result and every input are still the files their records describe, every "
        "workflow output has a readable record, every step ran the code it was planned "
        "with. Exit status: 0 all checks passed, 1 a check failed (WARNING lines), 2 a "
        "usage error.",
    )
    p.add_argument("result", help="a file made by the workflow, e.g. results/mini/figures/fig1.pdf")
    p.add_argument("--json", action="store_true", help="the full records, as JSON")
    p.set_defaults(func=provenance)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
