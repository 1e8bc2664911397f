"""Provenance that cannot lie: each test damages a results tree or runs other code than
the checkout's, the way a real run goes wrong, and shows `chain` / `coar provenance`
say so (a failed check, exit 1) instead of vouching for it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults import truncate
from test_provenance import step

from coar_workflow.cli import main
from coar_workflow.provenance import chain, code_digests, format_chain, sidecar_path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def toy_chain(tmp_path, monkeypatch):
    """data/x.txt (from a source file raw.txt) -> out/w.txt -> fig/f.pdf, in the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw.txt").write_text("raw")
    step(tmp_path, "prepare", ["raw.txt"], "data/x.txt", "data", seed=0)
    step(tmp_path, "fit", ["data/x.txt"], "out/w.txt", "weights", lam=0.1)
    step(tmp_path, "figure", ["out/w.txt", "data/x.txt"], "fig/f.pdf", "figure")
    return tmp_path


def cli(capsys, *args) -> tuple[int, str, str]:
    """`coar provenance ARGS`: (exit status, stdout, stderr); any other exception (a
    traceback for the user) fails the test."""
    try:
        main(["provenance", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# -- 1. the record names the code that ran, not the checkout's src/ ----------------------
def report_with_another_copy(workdir: Path, copy: Path, monkeypatch) -> None:
    """A step that imports coar.atomic from `copy`, a changed copy of src/'s, while the
    workflow planned it with src/ (its `code` param, as code_of gives it)."""
    copy.parent.mkdir(parents=True)
    copy.write_text((SRC / "coar" / "atomic.py").read_text() + "\n# another copy\n")
    spec = importlib.util.spec_from_file_location("coar.atomic", copy)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "coar.atomic", module)
    spec.loader.exec_module(module)
    planned = code_digests(REPO / "workflow" / "scripts" / "provenance.py", SRC)
    step(workdir, "report", ["fig/f.pdf"], "rep/r.txt", "report", code=planned)
    monkeypatch.delitem(sys.modules, "coar.atomic")  # restored at teardown


def test_record_hashes_the_imported_module_copy_not_src(toy_chain, tmp_path, monkeypatch):
    copy = tmp_path / "other_install" / "coar" / "atomic.py"
    report_with_another_copy(toy_chain, copy, monkeypatch)
    record = json.loads(sidecar_path(toy_chain / "rep" / "r.txt").read_text())
    ran = record["code"]["modules"]
    assert ran["coar/atomic.py"] == {"file": str(copy), "sha256": sha256(copy)}
    assert sha256(copy) != sha256(SRC / "coar" / "atomic.py")
    assert record["params"]["code"]["coar/atomic.py"] == sha256(SRC / "coar" / "atomic.py")[:16]
    provenance = SRC / "coar_workflow" / "provenance.py"  # the rest came from src/
    assert ran["coar_workflow/provenance.py"]["file"] == str(provenance)
    steps = chain(toy_chain / "rep" / "r.txt")
    assert any(str(copy) in p and "coar/atomic.py" in p for p in steps[0].problems)
    assert f"WARNING: rep/r.txt: ran {copy}" in format_chain(steps)


def test_cli_flags_a_step_that_ran_another_copy(toy_chain, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "other_install" / "coar" / "atomic.py"
    report_with_another_copy(toy_chain, copy, monkeypatch)
    code, out, _ = cli(capsys, "rep/r.txt")
    assert code == 1
    # The code line names both folders (sorted, so their order depends on the checkout).
    roots = ", ".join(sorted([str(copy.parent.parent), str(SRC)]))
    assert f"imported from {roots}" in out
    assert f"WARNING: rep/r.txt: ran {copy} (sha256 {sha256(copy)[:16]})" in out


SNAKEFILE = """\
from pathlib import Path
from coar_workflow.provenance import code_digests

rule make:
    output: "out/x.txt"
    params: code=code_digests(Path(workflow.basedir) / "job.py", {src!r})
    script: "job.py"
"""
JOB = """\
import coar.masks
from coar_workflow.provenance import record_provenance

open(snakemake.output[0], "w").write("x")
record_provenance(snakemake)
"""


def test_a_snakemake_job_importing_another_install_records_that_install(tmp_path):
    """The real case: Snakemake plans the step with the checkout's src/ (the `code`
    param), the job imports the installed packages, here another copy, first on the path."""
    install = tmp_path / "site"
    for package in ("coar", "coar_replication", "coar_workflow"):
        shutil.copytree(
            SRC / package, install / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    with open(install / "coar" / "masks.py", "a") as f:
        f.write("\n# the installed copy differs from the checkout\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE.format(src=str(SRC)))
    (work / "job.py").write_text(JOB)
    env = {**os.environ, "PYTHONPATH": str(install)}
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "all"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    record = json.loads(sidecar_path(work / "out" / "x.txt").read_text())
    masks = record["code"]["modules"]["coar/masks.py"]
    assert masks == {"file": str(install / "coar" / "masks.py"), "sha256": sha256(masks["file"])}
    assert record["params"]["code"]["coar/masks.py"] == sha256(SRC / "coar" / "masks.py")[:16]
    assert not masks["sha256"].startswith(record["params"]["code"]["coar/masks.py"])
    # The script as Snakemake ran it (its temporary copy, less the preamble).
    assert record["code"]["script"] == {
        "file": str(work / "job.py"),
        "sha256": sha256(work / "job.py"),
    }

    shown = subprocess.run(
        [sys.executable, "-m", "coar_workflow.cli", "provenance", "out/x.txt"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 1, shown.stderr
    assert f"WARNING: out/x.txt: ran {install / 'coar' / 'masks.py'}" in shown.stdout
    assert "Traceback" not in shown.stderr


def test_a_script_other_than_planned_is_flagged(toy_chain, tmp_path, monkeypatch):
    """A Snakemake job runs a temporary copy of its script: preamble, then the text."""
    script = tmp_path / "scripts" / "fit.py"
    script.parent.mkdir()
    script.write_text("print('planned')\n")
    planned = {"script:fit.py": sha256(script)[:16]}
    ran = tmp_path / ".snakemake" / "tmpabc.fit.py"
    ran.parent.mkdir()
    preamble = "######## snakemake preamble start ########\nimport sys\n"
    ran.write_text(preamble + "######## snakemake preamble end #########\nprint('edited')\n")
    main_module = sys.modules["__main__"]
    monkeypatch.setattr(main_module, "__real_file__", str(ran), raising=False)
    monkeypatch.setattr(main_module, "__file__", str(script), raising=False)
    step(toy_chain, "fit2", ["data/x.txt"], "out/v.txt", "v", code=planned)
    record = json.loads(sidecar_path(toy_chain / "out" / "v.txt").read_text())
    executed = hashlib.sha256(b"print('edited')\n").hexdigest()
    assert record["code"]["script"] == {"file": str(script), "sha256": executed}
    problems = chain(toy_chain / "out" / "v.txt")[0].problems
    assert any(f"ran {script} (sha256 {executed[:16]})" in p for p in problems)


def test_a_module_edited_while_the_step_ran_keeps_the_loaded_version(toy_chain, monkeypatch):
    """A module loaded before the edit ran as it was loaded: the record holds that, and
    says the file changed (no failed check: the record is right; the next run reruns)."""
    from coar_workflow import provenance

    file = str(SRC / "coar" / "atomic.py")
    monkeypatch.setitem(provenance._AT_IMPORT, file, "0" * 64)  # as loaded: other text
    step(toy_chain, "fit2", ["data/x.txt"], "out/v.txt", "v")
    module = json.loads(sidecar_path(toy_chain / "out" / "v.txt").read_text())["code"]
    assert module["modules"]["coar/atomic.py"] == {
        "file": file,
        "sha256": "0" * 64,
        "changed_while_running": True,
    }
    text = format_chain(chain(toy_chain / "out" / "v.txt"))
    assert f"    note      {file} changed on disk while the step ran" in text


# -- 2. the queried file itself is checked -----------------------------------------------
def test_a_changed_result_fails_its_own_check(toy_chain, capsys):
    figure = toy_chain / "fig" / "f.pdf"
    stat = figure.stat()
    figure.write_text("FIGURE")  # same size, and the old mtime: only the content tells
    os.utime(figure, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, out, _ = cli(capsys, "fig/f.pdf")
    assert code == 1
    assert f"sha256    {hashlib.sha256(b'figure').hexdigest()}" in out  # what it recorded
    assert (
        "WARNING: fig/f.pdf: changed since its record was written "
        f"(sha256 now {hashlib.sha256(b'FIGURE').hexdigest()[:16]}"
    ) in out
    assert "rerun rule figure" in out


def test_a_deleted_result_with_its_record_left_fails(toy_chain, capsys):
    (toy_chain / "fig" / "f.pdf").unlink()
    code, out, _ = cli(capsys, "fig/f.pdf")
    assert code == 1 and "WARNING: fig/f.pdf: missing now" in out


# -- 3. a deleted upstream record is missing provenance, not a source file ---------------
def test_a_deleted_upstream_record_is_missing_provenance(toy_chain, capsys):
    sidecar_path(toy_chain / "data" / "x.txt").unlink()
    steps = chain(toy_chain / "fig" / "f.pdf")
    x = next(s for s in steps if s.path == "data/x.txt")
    assert x.record is None and not x.source
    assert "made by rule prepare" in x.problems[0] and "rerun rule prepare" in x.problems[0]
    code, out, _ = cli(capsys, "fig/f.pdf")
    assert code == 1
    assert "a source file" not in out
    assert "WARNING: data/x.txt: missing provenance: fig/f.pdf used it as made by rule" in out


def test_a_genuine_source_file_passes(toy_chain, capsys):
    steps = chain(toy_chain / "fig" / "f.pdf")
    raw = next(s for s in steps if s.path == "raw.txt")
    assert raw.record is None and raw.source and raw.problems == []
    code, out, _ = cli(capsys, "fig/f.pdf")
    assert code == 0
    assert "[4] raw.txt\n    no provenance record: not made by the workflow (a source file)" in out
    assert "WARNING" not in out


def test_an_older_record_that_cannot_tell_fails_rather_than_guessing(toy_chain):
    """Records from before inputs named their producer: a missing record is not
    assumed to be a source file."""
    for output in ("fig/f.pdf", "out/w.txt"):
        sidecar = sidecar_path(toy_chain / output)
        record = json.loads(sidecar.read_text())
        for inp in record["inputs"]:
            del inp["made_by"]
        sidecar.write_text(json.dumps(record))
    sidecar_path(toy_chain / "data" / "x.txt").unlink()
    x = next(s for s in chain(toy_chain / "fig" / "f.pdf") if s.path == "data/x.txt")
    assert not x.source and "does not say whether it was a source file" in x.problems[0]


# -- 4. a truncated or corrupt record: one line naming it and what to do -------------------
def test_a_truncated_upstream_record_is_named(toy_chain, capsys):
    sidecar = sidecar_path(toy_chain / "data" / "x.txt")
    truncate(sidecar, 200)
    code, out, err = cli(capsys, "fig/f.pdf")
    assert code == 1 and "Traceback" not in err
    assert (
        "WARNING: data/x.txt: data/x.txt.provenance.json: unusable provenance record "
        "(truncated or corrupt JSON"
    ) in out
    assert "rerun rule prepare to rewrite it (snakemake --force data/x.txt" in out


def test_a_truncated_record_of_the_queried_file_is_one_line(toy_chain, capsys):
    truncate(sidecar_path(toy_chain / "fig" / "f.pdf"), 300)
    code, out, err = cli(capsys, "fig/f.pdf")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("coar provenance: fig/f.pdf.provenance.json: unusable provenance")
    assert "rerun rule figure to rewrite it" in err  # the rule, read from what is left


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "truncated or corrupt JSON"), ("[1, 2]", "a JSON list"), ('{"format": 1}', "no rule")],
)
def test_an_unusable_record_is_named(toy_chain, capsys, text, reason):
    sidecar_path(toy_chain / "fig" / "f.pdf").write_text(text)
    code, _, err = cli(capsys, "fig/f.pdf")
    assert code == 1 and err.count("\n") == 1 and reason in err


def test_a_step_can_record_after_a_damaged_input_record(toy_chain):
    truncate(sidecar_path(toy_chain / "data" / "x.txt"), 200)
    step(toy_chain, "fit2", ["data/x.txt"], "out/v.txt", "v")
    record = json.loads(sidecar_path(toy_chain / "out" / "v.txt").read_text())
    assert record["inputs"][0]["made_by"] == "prepare"
    assert record["inputs"][0]["sha256"] == hashlib.sha256(b"data").hexdigest()


# -- 5. exit status ----------------------------------------------------------------------
def test_warnings_exit_1_also_with_json(toy_chain, capsys):
    (toy_chain / "data" / "x.txt").write_text("tampered")
    code, out, _ = cli(capsys, "fig/f.pdf")
    assert code == 1 and "WARNING: data/x.txt, input of fig/f.pdf: changed since" in out
    code, out, err = cli(capsys, "fig/f.pdf", "--json")
    assert code == 1 and "WARNING: data/x.txt, input of fig/f.pdf" in err
    assert json.loads(out)[0]["inputs"][1] == ["data/x.txt", "changed since it was used"]


def test_usage_errors_exit_2_without_traceback(toy_chain, capsys):
    code, out, err = cli(capsys, "fig/nope.pdf")
    assert (code, out, err) == (2, "", "coar provenance: fig/nope.pdf: no such file\n")
    code, _, err = cli(capsys, "fig/f.pdf.provenance.json")
    assert code == 2 and "give the file it describes, fig/f.pdf" in err
    code, _, err = cli(capsys, "raw.txt")  # exists, but the workflow did not make it
    assert code == 2 and err.count("\n") == 1 and "raw.txt has no provenance record" in err
    with pytest.raises(SystemExit) as e:
        main(["provenance"])  # argparse: no FILE
    assert e.value.code == 2


def test_the_command_exits_2_for_a_missing_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "coar_workflow.cli", "provenance", "results/fig1.pdf"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr == "coar provenance: results/fig1.pdf: no such file\n"
    assert run.stdout == ""
