"""The `coar` command: inspect models and results of the Coar workflow.

A user error (a missing file, an unknown name, a file without a provenance record) is
one line on stderr naming the thing and what to pass instead, with exit status 2, never
a traceback; output cut short by a closed pipe (``coar ... | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys

from coar import __version__

DESCRIPTION = """\
Inspect the models and results of Coar (component attribution for PyTorch models) and
of its replication workflow: which components a model has, and how a result was made."""
EPILOG = """\
subcommands:
  components   list the components of a model, module by module, with their total:
               coar components resnet18
               coar components gpt2 --kind attention_heads
               coar components results/mini/models/tiny_gpt2_rows.pt
  provenance   print and check how the workflow made a result:
               coar provenance results/mini/figures/fig1.pdf

Run `coar SUBCOMMAND --help` for a subcommand's options.
"""
COMPONENTS_EPILOG = """\
TARGET is one of:
  a setup of the config          mini_noisy, imagenet_resnet50, tiny_gpt2_heads, ...
  an architecture of the paper   e.g. imagenet_vit, gpt2 (coar_replication.architectures)
  a torchvision model name       resnet18, vit_b_16, ... (built with weights=None)
  a checkpoint file              results/mini/models/mini_digits.pt (any model file the
                                 workflow writes, language models included)
  a Hugging Face config          path/to/config.json, or a model directory holding one
                                 (built from the config, offline)
  package.module:factory         a function called with no arguments that returns the model

Models named by a setup, an architecture, a torchvision name or a Hugging Face config are
built without weights (on PyTorch's meta device: nothing is downloaded or allocated):
the components depend only on the modules. The kind defaults to the setup's or
checkpoint's, else the model's attention heads, else its conv filters, else its
linear neurons.

examples:
  coar components resnet18
  coar components gpt2 --kind attention_heads
  coar components mini_noisy
  coar components results/mini/models/tiny_gpt2_rows.pt
  coar components resnet18 --include 'layer4.*'
  coar components torchvision.models:vit_b_16 --kind mlp_neurons
"""
PROVENANCE_DESCRIPTION = (
    "Print the chain of workflow steps that produced a result and check it: the result "
    "and every input are still the files their records describe, every workflow output "
    "has a readable record, every step ran the code it was planned with. Exit status: "
    "0 all checks passed, 1 a check failed (WARNING lines), 2 a usage error (no such "
    "file, or a file without a provenance record)."
)
# Exit status of a program that the closed end of a pipe stopped (128 + SIGPIPE), as
# for the tools that `coar ... | head` usually ends.
BROKEN_PIPE_STATUS = 141


class UsageError(Exception):
    """A user error: its one-line message goes to stderr, the exit status is 2."""


def components(args) -> None:
    """Print the components of a target: one line per module group with its count,
    then ``total: N``."""
    from coar_workflow.targets import TargetError, components_of, resolve

    try:
        target = resolve(args.target, args.configfile)
        kind, spec = components_of(target, args.kind, args.include, args.exclude)
    except TargetError as err:
        raise UsageError(str(err)) from None
    rows = spec.table()
    width = max(len("module"), *(len(label) for label, _ in rows))
    digits = max(len("components"), len(str(len(spec))))
    print(f"{kind} of {target.what}")
    print(f"{'module':<{width}}  {'components':>{digits}}")
    for label, size in rows:
        print(f"{label:<{width}}  {size:>{digits}}")
    print(f"total: {len(spec)}")


def provenance(args) -> None:
    """Print the chain of a result; exit 1 if any check failed (an unreadable record, a
    changed file, code other than planned), 2 if the file does not exist or has no record."""
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
        raise UsageError(
            f"{path} is a provenance record; give the file it describes, "
            f"{path.with_name(path.name.removesuffix(SIDECAR_SUFFIX))}"
        )
    if not path.exists() and not sidecar_path(path).exists():
        raise UsageError(f"{path}: no such file")
    try:
        steps = chain(path)
    except FileNotFoundError as e:  # the file has no record: the message says which
        raise UsageError(str(e)) from None
    except (OSError, ValueError) as e:  # an unusable record: a failed check
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


def parser() -> argparse.ArgumentParser:
    from coar.components import KINDS

    raw = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(
        prog="coar", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    top.add_argument("--version", action="version", version=f"coar {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser(
        "components",
        help="list the components of a model (a setup, a model name, a checkpoint, ...)",
        description="List the components of a model, one line per module with its count, "
        "then the total.",
        epilog=COMPONENTS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("target", metavar="TARGET", help="the model (see below)")
    p.add_argument(
        "--kind",
        choices=sorted(KINDS),
        metavar="KIND",
        help=f"component kind: {', '.join(sorted(KINDS))} (default: the setup's or "
        "checkpoint's kind, else one that suits the model)",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only modules whose path matches the glob PATTERN (e.g. 'layer4.*'); repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out modules whose path matches the glob PATTERN (replaces the "
        "kind's default, e.g. '*downsample*' of conv_filters); repeatable",
    )
    p.add_argument(
        "--configfile",
        "--config",
        action="append",
        metavar="FILE",
        help="the config whose setups TARGET may name, as for snakemake --configfile "
        "(repeatable, merged in order; default: every setup of config/config.yaml and "
        "config/mini.yaml)",
    )
    p.set_defaults(func=components)
    p = sub.add_parser(
        "provenance",
        help="print the chain of workflow steps that produced a result, with their params, "
        "input checksums, code version, packages and device, and check it",
        description=PROVENANCE_DESCRIPTION,
        epilog="example:\n  coar provenance results/mini/figures/fig1.pdf\n"
        "  coar provenance results/mini/figures/fig1.pdf --json | python -m json.tool",
        formatter_class=raw,
    )
    p.add_argument("result", help="a file made by the workflow, e.g. results/mini/figures/fig1.pdf")
    p.add_argument("--json", action="store_true", help="the full records, as JSON")
    p.set_defaults(func=provenance)
    return top


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what the
    closed pipe did not take raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv=None) -> None:
    try:
        try:
            args = parser().parse_args(argv)
        finally:  # --help and argparse's errors exit here: their output, too, meets the pipe
            sys.stdout.flush()
        try:
            args.func(args)
        except UsageError as err:
            print(f"coar {args.command}: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        sys.stdout.flush()  # here, where a closed pipe can still be handled
    except BrokenPipeError:
        _silence_stdout()
        raise SystemExit(BROKEN_PIPE_STATUS) from None


if __name__ == "__main__":
    main()
