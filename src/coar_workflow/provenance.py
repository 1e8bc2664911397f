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
whose scripts use it (Snakemake itself only watches the script). The record of a step
holds, besides, the code that actually ran (:func:`imported_code`): the files of the
modules of our packages that the job had imported, by path and checksum, which may not
be the checkout's ``src/`` if another copy of the packages is installed.

Reading never vouches for more than it checked: :func:`chain` compares the queried file
with its own record, tells a source file from an output whose record was lost, names an
unreadable record and what to do about it, and compares the code that ran with the code
the workflow planned the step with. Every failed check is a :attr:`Step.problems` entry
and a ``WARNING`` line of :func:`format_chain`; ``coar provenance`` exits 1 on any.
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
import sys
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


def _imported_modules(path: Path, module: str | None) -> frozenset[str]:
    """Modules of our packages imported anywhere in `path` (function-level imports
    included). Each file is parsed once per version: every rule's `code_of` walks the
    same modules, and parsing them anew made each Snakemake start take seconds."""
    stat = path.stat()
    return _imports_of(path, module, stat.st_mtime_ns, stat.st_size)


@cache
def _imports_of(path: Path, module: str | None, mtime_ns: int, size: int) -> frozenset[str]:
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
    return frozenset(m for m in found if m.split(".")[0] in PACKAGES)


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


def _cached_checksum(path: Path, record: dict | None) -> dict:
    """A file's checksum, taken from its own record when size and mtime still match it."""
    if record is not None and path.is_file():
        stat = path.stat()
        out = _own_output(record)
        if (
            "sha256" in out
            and out.get("bytes") == stat.st_size
            and out.get("mtime_ns") == stat.st_mtime_ns
        ):
            return {"sha256": out["sha256"], "bytes": out["bytes"]}
    return checksum(path)


def _input_entry(path) -> dict:
    """An input as a step records it: checksum, and the rule that made it (`made_by`):
    the rule named by its record, None when it had no record (a source file)."""
    record, made_by = None, None
    if sidecar_path(path).exists():
        try:
            record = _read(Path(path))
            made_by = record["rule"]
        except ProvenanceError:  # made by the workflow, but which rule is unreadable
            made_by = _rule_in(sidecar_path(path)) or "unknown"
    return {"path": str(path), **_cached_checksum(Path(path), record), "made_by": made_by}


def _sha256(path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _loaded_modules() -> dict[str, str]:
    """Loaded modules of our packages: "coar/masks.py" -> the file it was imported from."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.split(".")[0] not in PACKAGES or not file:
            continue  # another package's, or a namespace package
        parts = name.split(".")
        if hasattr(module, "__path__"):  # a package: its __init__
            parts.append("__init__")
        found["/".join(parts) + Path(file).suffix] = os.path.abspath(file)
    return dict(sorted(found.items()))


SCRIPT_PREAMBLE_END = b"######## snakemake preamble end #########\n"


def _executed_script() -> dict | None:
    """The workflow script this process runs, as Snakemake ran it: Snakemake runs a
    temporary copy (``__real_file__``), its preamble followed by the script's text."""
    main = sys.modules.get("__main__")
    real = getattr(main, "__real_file__", None)
    if real is None:
        return None
    try:
        text = Path(real).read_bytes()
    except OSError:
        return None
    if SCRIPT_PREAMBLE_END not in text:
        return None
    source = text.split(SCRIPT_PREAMBLE_END, 1)[1]
    return {
        "file": str(getattr(main, "__file__", real)),
        "sha256": hashlib.sha256(source).hexdigest(),
    }


def imported_code() -> dict:
    """The code this process runs: {"script": {file, sha256}} (a Snakemake script) and
    {"modules": {"coar/masks.py": {file, sha256}, ...}} for every loaded module of our
    packages, from the file it was imported from. A module already loaded when this module
    was imported is hashed as it was then; one whose file changed since is marked
    ``changed_while_running``."""
    modules = {}
    for key, file in _loaded_modules().items():
        then, now = _AT_IMPORT.get(file), _sha256(file)
        modules[key] = {"file": file, "sha256": then or now}
        if then is not None and now != then:
            modules[key]["changed_while_running"] = True
    code = {"modules": modules}
    if (script := _executed_script()) is not None:
        code["script"] = script
    return code


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
        "code": imported_code(),
        "threads": snakemake.threads,
        "inputs": [_input_entry(p) for p in snakemake.input],
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
class ProvenanceError(ValueError):
    """A provenance record that cannot be read: the message names it and what to do."""


# The keys of a record that `chain` and `format_chain` read.
REQUIRED = (
    "rule",
    "wildcards",
    "params",
    "inputs",
    "outputs",
    "output",
    "git",
    "packages",
    "host",
    "slurm",
    "device",
    "finished",
)


def _rule_in(sidecar: Path) -> str | None:
    """The rule named in a record too damaged to parse (it comes first), if legible."""
    try:
        match = re.search(r'"rule":\s*"([^"\\]+)"', sidecar.read_text(errors="replace"))
    except OSError:
        return None
    return match[1] if match else None


def _rerun(path, rule: str | None, purpose: str = "to rewrite it") -> str:
    """What to do about a failed check of `path`: rerun the step that made it."""
    step = f"rule {rule}" if rule and rule != "unknown" else "the step that made it"
    return f"rerun {step} {purpose} (snakemake --force {path}, with the run's options)"


def _own_output(record: dict) -> dict:
    return next(o for o in record["outputs"] if o["path"] == record["output"])


def _problem_with(record) -> str | None:
    """What makes a parsed record unusable, or None."""
    if not isinstance(record, dict):
        return f"not a provenance record but a JSON {type(record).__name__}"
    if record.get("format") != FORMAT:
        return f"provenance format {record.get('format')}, expected {FORMAT}"
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        return f"no {', '.join(missing)}"
    types = {"inputs": list, "outputs": list, "output": str, "rule": str, "host": str}
    types |= {k: dict for k in ("wildcards", "params", "git", "packages", "slurm", "device")}
    wrong = [key for key, kind in types.items() if not isinstance(record[key], kind)]
    if wrong or not all(k in record["device"] for k in ("used", "cpu", "cpus", "gpus")):
        return f"malformed {', '.join(wrong) or 'device'}"
    entries = [*record["inputs"], *record["outputs"]]
    if not all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in entries):
        return "an input or output without a path"
    if not any(o["path"] == record["output"] for o in record["outputs"]):
        return f"its outputs do not list {record['output']}"
    return None


def _read(path: Path, rule: str | None = None) -> dict | None:
    """The record of `path`; None if it has none. A record that cannot be read raises
    ProvenanceError naming it and the step to rerun (`rule`, if known, else the rule the
    damaged record names)."""
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None
    try:
        record = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        problem = f"truncated or corrupt JSON: {e.msg} at line {e.lineno}"
    except UnicodeDecodeError:
        problem = "not text"
    except OSError as e:
        problem = f"cannot be read: {e.strerror or e}"
    else:
        problem = _problem_with(record)
        if problem is None:
            return record
    rule = rule or _rule_in(sidecar)
    raise ProvenanceError(
        f"{sidecar}: unusable provenance record ({problem}); {_rerun(path, rule)}"
    )


@dataclass
class Step:
    """One step of a result's history: a file and the record of the job that made it.

    `problems` are its failed checks: for the queried file, that it is still the file its
    record describes; for a file without a usable record, that its record is missing or
    unreadable (a `source` file, one that had no record when a step used it, has none);
    for every record, that the code that ran is the code the workflow planned it with."""

    path: str
    record: dict | None
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (input path, status)
    problems: list[str] = field(default_factory=list)
    source: bool = False


def _key(entry: dict) -> str:
    return "sha256" if "sha256" in entry else "listing_sha256"


def _status(recorded: dict, producer: dict | None, current: Path) -> str:
    """Whether an input is still the file that was used, and the one its producer made."""
    if not current.exists():
        return "missing now"
    key = _key(recorded)
    made = _own_output(producer).get(key) if producer is not None else None
    if made is not None and made != recorded.get(key):
        return "differs from what its producer recorded"
    now = checksum(current).get(key)
    return "ok" if now == recorded.get(key) else "changed since it was used"


def _own_status(record: dict, current: Path) -> str | None:
    """Why `current` is not the file its own record describes, or None."""
    if not current.exists():
        return f"missing now (its record {sidecar_path(current)} remains)"
    out = _own_output(record)
    key = _key(out)
    now = checksum(current).get(key)
    if now == out.get(key):
        return None
    return (
        f"changed since its record was written (sha256 now {str(now)[:16]}, recorded "
        f"{str(out.get(key))[:16]}): it is not the file the record describes; "
        + _rerun(record["output"], record["rule"], "to remake it")
    )


def _missing_record(name: str, consumer: str, entry: dict) -> str | None:
    """Why a file without a record is a failed check; None for a source file: one that
    had no record either when `consumer` used it."""
    if "made_by" not in entry:  # a record from before inputs named their producer
        return (
            f"no provenance record ({sidecar_path(name)}), and the record of {consumer} "
            "does not say whether it was a source file or a workflow output that lost its "
            f"record; if a rule made it, {_rerun(name, None, 'to remake its record')}"
        )
    if entry["made_by"] is None:
        return None
    return (
        f"missing provenance: {consumer} used it as made by rule {entry['made_by']}, but "
        f"its record {sidecar_path(name)} is gone; {_rerun(name, entry['made_by'], 'to remake it')}"
    )


def _code_problems(record: dict) -> list[str]:
    """Where the code that ran (record["code"]) is not the code the workflow planned the
    step with (its `code` param, read from the checkout's src/ when the DAG was built)."""
    code = record.get("code")
    planned = record["params"].get("code")
    if not isinstance(code, dict):  # a record from before steps recorded their code
        return []
    planned = planned if isinstance(planned, dict) else {}
    problems = []
    ran = dict(code.get("modules") or {})
    if isinstance(script := code.get("script"), dict):
        ran[f"script:{Path(str(script.get('file'))).name}"] = script
    for key, module in ran.items():
        if not isinstance(module, dict):
            continue
        sha, file = str(module.get("sha256")), module.get("file")
        rerun = _rerun(record["output"], record["rule"], "to remake it")
        want = planned.get(key)
        if want and not sha.startswith(str(want)):
            problems.append(
                f"ran {file} (sha256 {sha[:16]}), not the {key.removeprefix('script:')} "
                f"the workflow planned the step with ({want}, its checkout's): another copy "
                "was imported (is the checkout the installed copy? pip install -e .), or the "
                f"file changed in between; {rerun}"
            )
    return problems


def chain(path) -> list[Step]:
    """The steps that produced `path`, consumers before producers, each file once, with
    the checks of :class:`Step`. Raises FileNotFoundError if `path` has no record and
    ProvenanceError if its record is unusable."""
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
    if recorded.name != path.name:
        raise ProvenanceError(
            f"{sidecar_path(path)} is the record of {recorded}, not of {path} (copied or "
            f"renamed?); {_rerun(path, None, 'to remake it')}"
        )
    base = path.resolve()
    for _ in recorded.parts:
        base = base.parent
    if recorded.is_absolute():
        base = Path("/")

    steps, index = [], {}
    todo: list[tuple[str, str | None, dict]] = [(str(recorded), None, {})]
    while todo:
        name, consumer, entry = todo.pop(0)
        if name in index:
            step = index[name]
            if step.record is None and step.source and consumer is not None:
                if (problem := _missing_record(name, consumer, entry)) is not None:
                    step.source, step.problems = False, [problem]
            continue
        made_by = entry.get("made_by")
        try:
            record = _read(base / name, made_by if isinstance(made_by, str) else None)
        except ProvenanceError as e:
            record, unusable = None, [str(e).replace(str(base / name), name)]
        else:
            unusable = []
        step = Step(name, record, problems=unusable)
        index[name] = step
        steps.append(step)
        if record is None:
            if not unusable and consumer is not None:
                problem = _missing_record(name, consumer, entry)
                step.problems, step.source = ([problem], False) if problem else ([], True)
            continue
        if consumer is None and (problem := _own_status(record, path)) is not None:
            step.problems.append(problem)
        step.problems += _code_problems(record)
        for inp in record["inputs"]:
            try:
                producer = _read(base / inp["path"])
            except ProvenanceError:
                producer = None  # reported at its own step
            step.inputs.append((inp["path"], _status(inp, producer, base / inp["path"])))
            todo.append((inp["path"], name, inp))
    return steps


def problems(steps: list[Step]) -> list[str]:
    """Every failed check of a chain, one line each ("file: what failed")."""
    found = [f"{s.path}: {p}" for s in steps for p in s.problems]
    found += [f"{i}, input of {s.path}: {st}" for s in steps for i, st in s.inputs if st != "ok"]
    return found


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


def _code_line(record: dict) -> str | None:
    """The code of a step: what it ran when recorded, else the planned `code` param."""
    code, planned = record.get("code"), record["params"].get("code") or {}
    if isinstance(code, dict) and isinstance(code.get("modules"), dict):
        modules = {k: str(m.get("sha256"))[:16] for k, m in code["modules"].items()}
        files = [(Path(str(m.get("file"))), len(k.split("/"))) for k, m in code["modules"].items()]
        # The folder each module was imported from: the one holding its top package.
        roots = sorted({str(f.parents[n - 1]) for f, n in files if len(f.parents) >= n})
        script = code.get("script")
        scripts = (
            f"{Path(str(script.get('file'))).name} {str(script.get('sha256'))[:8]} + "
            if isinstance(script, dict)
            else ""
        )
        where = f" imported from {', '.join(roots)}" if roots else ""
        what = f"{scripts}{len(modules)} modules{where}"
    elif planned:
        scripts = [f"{k.removeprefix('script:')} {v[:8]}" for k, v in planned.items() if ":" in k]
        modules = {k: v for k, v in planned.items() if ":" not in k}
        what = f"{', '.join(scripts)} + {len(modules)} coar modules"
    else:
        return None
    combined = hashlib.sha256(json.dumps(modules, sort_keys=True).encode()).hexdigest()
    return f"    code      {what} (digest of their checksums {combined[:8]}; --json lists them)"


def format_chain(steps: list[Step]) -> str:
    """A readable account of `chain(path)`, its failed checks last (``WARNING:`` lines)."""
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
        failed = [f"    FAILED    {p}" for p in step.problems]
        if r is None:
            if step.source:
                lines += ["    no provenance record: not made by the workflow (a source file)", ""]
            else:
                lines += ["    no provenance record", *failed, ""]
            continue
        out = _own_output(r)
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
        if (code := _code_line(r)) is not None:
            lines.append(code)
        ran = r.get("code") if isinstance(r.get("code"), dict) else {}
        for m in (ran.get("modules") or {}).values():  # the record holds what ran: no failure
            if isinstance(m, dict) and m.get("changed_while_running"):
                lines.append(
                    f"    note      {m.get('file')} changed on disk while the step ran "
                    "(recorded: the version the step had loaded)"
                )
        inputs = {i["path"]: i for i in r["inputs"]}
        for i, (inp, status) in enumerate(step.inputs):
            digest = inputs[inp].get("sha256") or inputs[inp].get("listing_sha256")
            lines.append(
                f"    {'inputs' if i == 0 else '':<9} [{number[inp]}] {inp}  "
                f"sha256 {str(digest)[:16]}  {status}"
            )
        if "packages" not in common:
            pkgs = ", ".join(f"{k} {v}" for k, v in r["packages"].items())
            lines.append(f"    packages  {pkgs}")
        lines += [*failed, ""]
    if "git" in common:
        lines.append(f"git commit (every step): {_git_line(common['git'])}")
    if "packages" in common:
        pkgs = ", ".join(f"{k} {v}" for k, v in common["packages"].items())
        lines.append(f"packages (every step): {pkgs}")
    lines += [f"WARNING: {problem}" for problem in problems(steps)]
    return "\n".join(lines)


def chain_json(steps: list[Step]) -> str:
    """`chain(path)` as JSON: each step's path, full record, input statuses and failed
    checks."""
    return json.dumps(
        [
            {
                "path": s.path,
                "record": s.record,
                "inputs": s.inputs,
                "problems": s.problems,
                "source": s.source,
            }
            for s in steps
        ],
        indent=1,
    )


# The code files of the modules already loaded when this module was imported (a job's
# script imports it first thing), as they were then: see `imported_code`.
_AT_IMPORT = {file: _sha256(file) for file in _loaded_modules().values()}
