"""The source layout: the library, the replication and the workflow glue, one way.

src/coar (the library) imports neither the replication nor the workflow glue, nor any
of the workflow's packages at import time; src/coar_replication never imports the
workflow glue; no package has an import cycle, function-level imports included. The
library's declared dependencies are what it imports, and pip resolves it without the
workflow's packages.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGES = ("coar", "coar_replication", "coar_workflow")
# What each package may import of ours: dependencies point workflow -> replication -> library.
ALLOWED = {
    "coar": {"coar"},
    "coar_replication": {"coar", "coar_replication"},
    "coar_workflow": {"coar", "coar_replication", "coar_workflow"},
}
# The workflow's packages: never needed to attribute a model with the library.
WORKFLOW_PACKAGES = (
    "snakemake",
    "ffcv",
    "open_clip",
    "transformers",
    "jupytext",
    "seaborn",
    "cv2",
)
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, id(node) in top_level))
            # `from coar import api` imports the module coar.api
            found += [(f"{node.module}.{a.name}", id(node) in top_level) for a in node.names]
    return found


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((SRC / package).rglob("*.py"))
    }


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {
        name: {imported for imported, _ in imports_of(path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_three_packages_exist_and_hold_every_module():
    assert {path.parent.name for path in SRC.glob("*/__init__.py")} == set(PACKAGES)
    assert len(our_modules()) > 40


def test_no_import_cycles_function_level_imports_included():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependencies_point_workflow_to_replication_to_library():
    wrong = [
        f"{module} imports {imported}"
        for module, imported_modules in import_graph().items()
        for imported in imported_modules
        if imported.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    assert wrong == []


def test_library_never_imports_the_workflows_packages_at_import_time():
    at_import_time = [
        f"{module_name(path)} imports {imported}"
        for path in sorted((SRC / "coar").rglob("*.py"))
        for imported, top_level in imports_of(path)
        if top_level and imported.split(".")[0] in (*WORKFLOW_PACKAGES, "snakemake")
    ]
    assert at_import_time == []


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the library must work without it")
sys.meta_path.insert(0, Block())
"""


def run_without(packages, code: str, timeout=300) -> subprocess.CompletedProcess:
    """Run Python code in a process where ``packages`` cannot be imported."""
    program = BLOCKER.format(blocked=tuple(packages)) + code
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_import_coar_loads_none_of_the_workflow_or_replication():
    result = run_without(
        WORKFLOW_PACKAGES,
        "import sys, coar\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules})\n"
        "print(' '.join(loaded))\n",
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "coar" in loaded
    assert loaded.isdisjoint(
        {
            *WORKFLOW_PACKAGES,
            "coar_replication",
            "coar_workflow",
            "torchvision",
            "sklearn",
            "matplotlib",
        }
    )


def test_the_blocker_blocks():
    result = run_without(("snakemake",), "import snakemake\n")
    assert result.returncode != 0 and "blocked" in result.stderr


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def distribution(import_name: str) -> str:
    return DISTRIBUTIONS.get(import_name, import_name).lower()


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def third_party_imports(package: str) -> dict[str, bool]:
    """Top-level third-party modules a package imports -> whether any import is at module
    level."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, bool] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        for imported, top_level in imports_of(path):
            root = imported.split(".")[0]
            if root in stdlib or root in PACKAGES or root == "__future__":
                continue
            found[root] = found.get(root, False) or top_level
    return found


def test_library_dependencies_are_its_imports_as_ranges():
    project = pyproject()["project"]
    declared = {requirement_name(r): r for r in project["dependencies"]}
    assert all("==" not in r for r in declared.values()), "the library pins nothing exactly"
    imported = third_party_imports("coar")
    at_import_time = {distribution(m) for m, top in imported.items() if top}
    assert at_import_time <= set(declared), at_import_time - set(declared)
    # Every declared dependency is used, and every lazy import is in an extra.
    assert set(declared) <= {distribution(m) for m in imported} | {"torch"}
    extras = {requirement_name(r) for rs in project["optional-dependencies"].values() for r in rs}
    lazy = {distribution(m) for m, top in imported.items() if not top} - set(declared)
    assert lazy <= extras, lazy - extras


def test_requires_python_and_ruffs_target_agree():
    data = pyproject()
    assert data["project"]["requires-python"] == ">=3.10"
    assert data["tool"]["ruff"]["target-version"] == "py310"
    classifiers = data["project"]["classifiers"]
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


def other_pythons() -> list[Path]:
    """Working Python 3.10, 3.12 and 3.13 interpreters of this machine (pyenv's, or on the
    PATH; a pyenv shim of a version that is not installed does not count)."""
    import shutil

    found = []
    for minor in (10, 12, 13):
        candidates = sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python"))
        on_path = shutil.which(f"python3.{minor}")
        candidates += [Path(on_path)] if on_path else []
        for candidate in candidates:
            check = subprocess.run([str(candidate), "-V"], capture_output=True, text=True)
            if check.returncode == 0 and check.stdout.startswith(f"Python 3.{minor}."):
                found.append(candidate)
                break
    return found


def test_every_module_compiles_on_python_310_to_313():
    pythons = other_pythons()
    assert pythons, "no Python 3.10, 3.12 or 3.13 found to compile the sources with"
    files = [str(p) for p in sorted(SRC.rglob("*.py"))]
    for python in pythons:
        code = (
            "import sys\nfor path in sys.argv[1:]:\n    compile(open(path).read(), path, 'exec')\n"
        )
        result = subprocess.run(
            [str(python), "-c", code, *files], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{python}: {result.stderr[-2000:]}"


def test_pip_resolves_the_library_without_the_workflows_packages(tmp_path):
    """pip's own resolution of the library without extras (a dry run, nothing installed)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-build-isolation",
            "--quiet",
            "--report",
            str(report),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    install = json.loads(report.read_text())["install"]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in install}
    workflow = {"snakemake", "ffcv", "open-clip-torch", "transformers", "jupytext", "seaborn"}
    assert names.isdisjoint(workflow | {"opencv-python", "snakemake-executor-plugin-slurm"})
    (coar,) = [item for item in install if item["metadata"]["name"] == "coar"]
    unconditional = {
        requirement_name(r)
        for r in coar["metadata"].get("requires_dist", [])
        if "extra ==" not in r
    }
    assert unconditional == {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
