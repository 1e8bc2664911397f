"""The `coar` command."""

from __future__ import annotations

import argparse

from coar import __version__


def components(args) -> None:
    from coar.components import conv_filters
    from coar.models import load_model

    spec = conv_filters(load_model(args.checkpoint))
    width = max(len(module) for module, _ in spec.table())
    for module, size in spec.table():
        print(f"{module:<{width}}  {size}")
    print(f"total: {len(spec)}")


def provenance(args) -> None:
    from coar.provenance import chain, chain_json, format_chain

    steps = chain(args.result)
    print(chain_json(steps) if args.json else format_chain(steps))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="coar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("components", help="list the conv-filter components of a checkpoint")
    p.add_argument("checkpoint", help="a model saved by the workflow (results/.../models/*.pt)")
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
