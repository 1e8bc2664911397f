"""Provenance sidecars, the chain that `coar provenance` prints, and code digests."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from coar_workflow.cli import main
from coar_workflow.provenance import (
    chain,
    code_digests,
    format_chain,
    record_provenance,
    sidecar_path,
)

REPO = Path(__file__).resolve().parents[1]


class Names(dict):
    """Snakemake's named lists: iterable over values, `.items()` over names."""

    def __iter__(self):
        return iter(self.values())


def step(tmp_path, rule, inputs, output, content, **params):
    """Run a fake workflow step: write `output`, then its provenance, as a script would."""
    (tmp_path / output).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / output).write_text(content)
    smk = SimpleNamespace(
        rule=rule,
        input=Names({f"i{k}": p for k, p in enumerate(inputs)}),
        output=Names({"o": output}),
        params=Names(params),
        wildcards=Names({"setup": "toy"}),
        log=Names({"l": f"logs/{rule}.log"}),
        threads=1,
        scriptdir=str(REPO / "workflow" / "scripts"),
    )
    return record_provenance(smk)


@pytest.fixture
def toy_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    step(tmp_path, "prepare", [], "data/x.txt", "data", seed=0)
    step(tmp_path, "fit", ["data/x.txt"], "out/w.txt", "weights", lam=0.1)
    step(tmp_path, "figure", ["out/w.txt", "data/x.txt"], "fig/f.pdf", "figure")
    return tmp_path


def test_sidecar_records_rule_params_checksums_code_and_device(toy_chain):
    record = json.loads(sidecar_path(toy_chain / "out" / "w.txt").read_text())
    assert record["rule"] == "fit" and record["params"] == {"lam": 0.1}
    assert record["inputs"][0]["path"] == "data/x.txt"
    assert record["inputs"][0]["sha256"] == (
        "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"  # sha256("data")
    )
    assert record["git"]["commit"] and "dirty" in record["git"]
    assert record["packages"]["python"] and record["device"]["used"] == "cpu"


def test_chain_visits_each_step_once_newest_first(toy_chain):
    steps = chain(toy_chain / "fig" / "f.pdf")
    assert [s.path for s in steps] == ["fig/f.pdf", "out/w.txt", "data/x.txt"]
    assert all(status == "ok" for s in steps for _, status in s.inputs)


def test_chain_flags_an_input_changed_after_use(toy_chain):
    (toy_chain / "data" / "x.txt").write_text("tampered")
    steps = chain(toy_chain / "fig" / "f.pdf")
    statuses = dict(steps[0].inputs)
    assert statuses["data/x.txt"] == "changed since it was used"
    assert "WARNING: data/x.txt, input of fig/f.pdf: changed since it was used" in (
        format_chain(steps)
    )


def test_chain_follows_a_moved_results_tree(toy_chain, tmp_path_factory, monkeypatch):
    moved = tmp_path_factory.mktemp("elsewhere") / "copy"
    toy_chain.rename(moved)
    monkeypatch.chdir(moved.parent)
    assert [s.path for s in chain(moved / "fig" / "f.pdf")][-1] == "data/x.txt"


def test_cli_prints_the_chain(toy_chain, capsys):
    main(["provenance", "fig/f.pdf"])
    text = capsys.readouterr().out
    assert re.search(r"\[2\] out/w.txt\n    rule      fit \(setup=toy\)", text)
    assert "lam = 0.1" in text and "git commit (every step):" in text
    main(["provenance", "fig/f.pdf", "--json"])
    assert json.loads(capsys.readouterr().out)[1]["record"]["params"] == {"lam": 0.1}


def test_a_file_without_record_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="a.txt has no provenance record"):
        chain(tmp_path / "a.txt")


def test_code_digests_follow_imports_through_the_library(tmp_path):
    src = tmp_path / "src" / "coar"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("from .b import f\n")
    (src / "b.py").write_text("def f():\n    from coar import c\n")
    (src / "c.py").write_text("import numpy\n")
    (src / "unused.py").write_text("")
    script = tmp_path / "step.py"
    script.write_text("import numpy\nfrom coar.a import f\n")
    digests = code_digests(script, tmp_path / "src")
    assert set(digests) == {
        "script:step.py",
        "coar/__init__.py",
        "coar/a.py",
        "coar/b.py",
        "coar/c.py",
    }
    (src / "c.py").write_text("import numpy  # changed\n")
    changed = code_digests(script, tmp_path / "src")
    assert [k for k in digests if digests[k] != changed[k]] == ["coar/c.py"]


def test_every_workflow_script_records_its_provenance():
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        assert "record_provenance(snakemake)" in script.read_text(), script.name
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"(?m)^(?=rule )", smk.read_text()):
            if m := re.search(r'script:\n\s+"\.\./scripts/(\w+\.py)"', block):
                assert f'code=code_of("{m[1]}")' in block, f"{smk.name}: {block[:40]}"
