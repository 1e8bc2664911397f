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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="coar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("components", help="list the conv-filter components of a checkpoint")
    p.add_argument("checkpoint", help="a model saved by the workflow (results/.../models/*.pt)")
    p.set_defaults(func=components)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
