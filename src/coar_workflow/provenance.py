"""Provenance of workflow results: what made each file, from what, with which code.

Every workflow step ends with :func:`record_provenance`, which writes a sidecar
``<output>.provenance.json`` next to each of its outputs: the rule, wildcards and
params, the checksums of its inputs and outputs, the git commit and dirty state of
the workflow's checkout, package versions, host, Slurm job and device. The sidecars
travel with the results (no Snakemake database needed), and :func:`chain` follows
them from a result back through every step that led to it (``coar provenance``).

:func:`code_digests` is the staleness side of the same idea: checksums of a rule's
script and of every ``coar`` module it imports, directly or not. The workflow passes
them to each rule as a param, so a change to library code reruns exactly the rules
whose scripts use it (Snakemake itself only watches the script).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from coar.atomic import atomic_path

SIDECAR_SUFFIX = ".provenance.json"
FORMAT = 1
CHUNK = 1 << 20
PACKAGE = "coar"  # the distribution
# Its import packages: the library, the replication and the workflow glue.
PACKAGES = ("coar", "coar_replication", "coar_workflow")


# -- code digests (staleness) --------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _module_file(src: Path, module: str) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str | None) -> set[str]:
    """Modules of our packages imported anywhere in `path` (function-level imports
    included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module or "").rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                parts = (package or "").split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in [*parts, node.module or ""] if p)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from coar import x`
    return {m for m in found if m.split(".")[0] in PACKAGES}


@cache
def _code_digests(script: Path, src: Path, stamp: tuple) -> dict[str, str]:
    digests = {f"script:{script.name}": _digest(script)}
    todo, seen = [(script, None)], set()
    while todo:
        path, module = todo.pop()
        imported = _imported_modules(path, module)
        # A package's __init__ runs on any import of one of its modules.
        for name in sorted(imported | {m.split(".")[0] for m in imported}):
            file = _module_file(src, name)
            if file is None or name in seen:
                continue
            seen.add(name)
            digests[str(file.relative_to(src))] = _digest(file)
            todo.append((file, name))
    return dict(sorted(digests.items()))


def code_digests(script, src) -> dict[str, str]:
    """Checksums of `script` and of every module of our packages under `src` that it
    imports, directly or through other modules: {"script:ablate.py": ..., "coar/masks.py": ...}.
    """
    script, src = Path(script).resolve(), Path(src).resolve()
    if not script.is_file():
        raise FileNotFoundError(f"workflow script {script} does not exist")
    files = [script, *sorted(f for package in PACKAGES for f in (src / package).rglob("*.py"))]
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _code_digests(script, src, stamp)


# -- recording ------------------------------------------------------------------------
def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def checksum(path) -> dict:
    """sha256 and size of a file; for a directory, of its listing (names and sizes)."""
    path = Path(path)
    if path.is_dir():
        listing = hashlib.sha256()
        n_files = n_bytes = 0
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            size = file.stat().st_size
            listing.update(f"{file.relative_to(path)}\t{size}\n".encode())
            n_files, n_bytes = n_files + 1, n_bytes + size
        return {"listing_sha256": listing.hexdigest(), "files": n_files, "bytes": n_bytes}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _input_checksum(path) -> dict:
    """An input's checksum, taken from its producer's sidecar when the file is unchanged."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if path.is_file() and sidecar.is_file():
        stat = path.stat()
        for out in json.loads(sidecar.read_text()).get("outputs", []):
            if (
                out.get("path") == str(path)
                and out.get("bytes") == stat.st_size
                and out.get("mtime_ns") == stat.st_mtime_ns
            ):
                return {"sha256": out["sha256"], "bytes": out["bytes"]}
    return checksum(path)


def _git(repo: Path) -> dict:
    def git(*args):
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or f"git {args[0]} failed")
        return result.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changes = git("status", "--porcelain").splitlines()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "error": f"{repo} is not a usable git checkout: {e}"}
    return {"commit": commit, "dirty": bool(changes), "changes": changes[:50]}


def packages() -> dict[str, str]:
    """Versions of Python, this package and every package it depends on."""
    names = [PACKAGE]
    try:
        for requirement in importlib.metadata.requires(PACKAGE) or []:
            if "extra ==" not in requirement:
                names.append(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
    except importlib.metadata.PackageNotFoundError:
        pass
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device_name: str | None) -> dict:
    """The device a step computed on (from its `device` param) and the hardware it saw."""
    import torch

    from coar.device import describe, resolve_device

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    used = describe(resolve_device(device_name)) if device_name else "cpu"
    return {"used": used, "cpu": _cpu_model(), "cpus": os.cpu_count(), "gpus": gpus}


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def record_provenance(snakemake) -> list[Path]:
    """Write the provenance sidecar of every output of the current workflow step."""
    params = {k: _jsonable(v) for k, v in snakemake.params.items()}
    device = params.get("device") if isinstance(params.get("device"), str) else None
    outputs = []
    for path in snakemake.output:
        stat = Path(path).stat()
        outputs.append({"path": str(path), **checksum(path), "mtime_ns": stat.st_mtime_ns})
    slurm = {
        k.removeprefix("SLURM_").lower(): os.environ[k]
        for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME")
        if k in os.environ
    }
    entry = {
        "format": FORMAT,
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards.items()),
        "params": params,
        "threads": snakemake.threads,
        "inputs": [{"path": str(p), **_input_checksum(p)} for p in snakemake.input],
        "outputs": outputs,
        "logs": [str(p) for p in snakemake.log],
        "workdir": os.getcwd(),
        "git": _git(Path(snakemake.scriptdir)),
        "packages": packages(),
        "host": socket.gethostname(),
        "slurm": slurm,
        "device": device_info(device),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    written = []
    for out in outputs:
        sidecar = sidecar_path(out["path"])
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps({**entry, "output": out["path"]}, indent=1))
        written.append(sidecar)
    return written


# -- reading --------------------------------------------------------------------------
@dataclass
class Step:
    """One step of a result's history: a file and the record of the job that made it."""

    path: str
    record: dict | None
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (input path, status)


def _status(recorded: dict, producer: dict | None, current: Path) -> str:
    """Whether an input is still the file that was used, and the one its producer made."""
    if not current.exists():
        return "missing now"
    key = "sha256" if "sha256" in recorded else "listing_sha256"
    made = None
    if producer is not None:
        made = next(
            (o.get(key) for o in producer["outputs"] if o["path"] == producer["output"]), None
        )
    if made is not None and made != recorded.get(key):
        return "differs from what its producer recorded"
    now = _input_checksum(current).get(key)
    return "ok" if now == recorded.get(key) else "changed since it was used"


def chain(path) -> list[Step]:
    """The steps that produced `path`, consumers before producers, each file once."""
    path = Path(path)
    first = _read(path)
    if first is None:
        raise FileNotFoundError(
            f"{path} has no provenance record ({sidecar_path(path)}); was it made by the "
            "workflow, by a rule whose script calls coar_workflow.provenance.record_provenance?"
        )
    # Paths in records are relative to the workflow's working directory; find it from
    # the given file so that a moved results tree still resolves.
    recorded = Path(first["output"])
    base = path.resolve()
    for _ in recorded.parts:
        base = base.parent
    if recorded.is_absolute():
        base = Path("/")

    steps, index, todo = [], {}, [str(recorded)]
    while todo:
        name = todo.pop(0)
        if name in index:
            continue
        record = _read(base / name)
        step = Step(name, record)
        index[name] = step
        steps.append(step)
        for inp in (record or {}).get("inputs", []):
            producer = _read(base / inp["path"])
            step.inputs.append((inp["path"], _status(inp, producer, base / inp["path"])))
            todo.append(inp["path"])
    return steps


def _read(path: Path) -> dict | None:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    record = json.loads(sidecar.read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"{sidecar}: provenance format {record.get('format')}, expected {FORMAT}")
    return record


def _short(value, width: int = 100) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def _git_line(git: dict) -> str:
    if not git.get("commit"):
        return git.get("error", "unknown")
    if not git.get("dirty"):
        return f"{git['commit']} (clean)"
    changes = ", ".join(c.strip() for c in git["changes"][:5])
    more = "" if len(git["changes"]) <= 5 else f", ... ({len(git['changes'])} in all)"
    return f"{git['commit']} (dirty: {changes}{more})"


def format_chain(steps: list[Step]) -> str:
    """A readable account of `chain(path)`."""
    number = {s.path: i for i, s in enumerate(steps, 1)}
    records = [s.record for s in steps if s.record is not None]
    common = {}
    for key in ("git", "packages"):
        values = {json.dumps(r[key], sort_keys=True) for r in records}
        if len(values) == 1:
            common[key] = records[0][key]
    lines = [f"Provenance of {steps[0].path}", ""]
    for step in steps:
        r = step.record
        lines.append(f"[{number[step.path]}] {step.path}")
        if r is None:
            lines += ["    no provenance record: not made by the workflow (a source file)", ""]
            continue
        out = next(o for o in r["outputs"] if o["path"] == r["output"])
        wildcards = ", ".join(f"{k}={v}" for k, v in r["wildcards"].items())
        slurm = r["slurm"]
        where = r["host"] + (f", Slurm job {slurm['job_id']}" if "job_id" in slurm else "")
        if "array_task_id" in slurm:
            where += f" (array {slurm['array_job_id']}_{slurm['array_task_id']})"
        device = r["device"]
        gpus = f", GPUs seen: {', '.join(device['gpus'])}" if device["gpus"] else ""
        lines += [
            f"    rule      {r['rule']}" + (f" ({wildcards})" if wildcards else ""),
            f"    sha256    {out.get('sha256') or out.get('listing_sha256')}",
            f"    finished  {r['finished']} on {where}",
            f"    device    {device['used']} (CPU: {device['cpu']}, {device['cpus']} cores{gpus})",
        ]
        if "git" not in common:
            lines.append(f"    git       {_git_line(r['git'])}")
        params = {k: v for k, v in r["params"].items() if k != "code"}
        for i, (k, v) in enumerate(params.items()):
            lines.append(f"    {'params' if i == 0 else '':<9} {k} = {_short(v)}")
        code = r["params"].get("code", {})
        if code:
            scripts = [f"{k.removeprefix('script:')} {v[:8]}" for k, v in code.items() if ":" in k]
            modules = {k: v for k, v in code.items() if ":" not in k}
            combined = hashlib.sha256(json.dumps(modules, sort_keys=True).encode()).hexdigest()
            lines.append(
                f"    code      {', '.join(scripts)} + {len(modules)} coar modules "
                f"(digest of their checksums {combined[:8]}; --json lists them)"
            )
        inputs = {i["path"]: i for i in r["inputs"]}
        for i, (inp, status) in enumerate(step.inputs):
            digest = inputs[inp].get("sha256") or inputs[inp].get("listing_sha256")
            lines.append(
                f"    {'inputs' if i == 0 else '':<9} [{number[inp]}] {inp}  "
                f"sha256 {digest[:16]}  {status}"
            )
        if "packages" not in common:
            pkgs = ", ".join(f"{k} {v}" for k, v in r["packages"].items())
            lines.append(f"    packages  {pkgs}")
        lines.append("")
    if "git" in common:
        lines.append(f"git commit (every step): {_git_line(common['git'])}")
    if "packages" in common:
        pkgs = ", ".join(f"{k} {v}" for k, v in common["packages"].items())
        lines.append(f"packages (every step): {pkgs}")
    problems = [(s.path, inp, st) for s in steps for inp, st in s.inputs if st != "ok"]
    for consumer, inp, status in problems:
        lines.append(f"WARNING: {inp}, input of {consumer}: {status}")
    return "\n".join(lines)


def chain_json(steps: list[Step]) -> str:
    """`chain(path)` as JSON: each step's path, full record and input statuses."""
    return json.dumps(
        [{"path": s.path, "record": s.record, "inputs": s.inputs} for s in steps], indent=1
    )
