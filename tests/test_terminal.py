"""What a user reads: the message a run ends with, the labels of progress bars, and how
a notebook finds its results (without running the workflow; tests/test_workflow.py
checks the same on a real run)."""

import doctest
import sys
from pathlib import Path

import pytest

from coar_workflow import closing, jobs, logs, notebook

TABLE = """# Results summary

<!-- summary:start -->
| result | value |
|---|---|
| Fig. 3, selectively forgetting a class (`mini_digits`) | class 3: class accuracy 2.7 % |
| Sample efficiency, `mini_digits`: ablations to reach r = 0.8 | ridge 2500 |
<!-- summary:end -->
"""


@pytest.mark.parametrize("module", [closing, jobs, logs, notebook], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_closing_message_names_the_numbers_and_the_files_that_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = Path("results/mini")
    (results / "figures").mkdir(parents=True)
    (results / "logs").mkdir()
    (results / "figures" / "fig3.pdf").write_bytes(b"%PDF")
    (results / "SUMMARY.md").write_text(TABLE)
    (tmp_path / "mini.yaml").write_text("")
    lines = closing.closing_message("results/mini", [tmp_path / "mini.yaml"]).splitlines()
    assert lines[:4] == [
        "Finished: the results are in results/mini/",
        "Headline numbers, from results/mini/SUMMARY.md (every number with its source):",
        "  Fig. 3, selectively forgetting a class (mini_digits): class 3: class accuracy 2.7 %",
        "  Sample efficiency, mini_digits: ablations to reach r = 0.8: ridge 2500",
    ]
    assert "Figures: results/mini/figures/ (fig3.pdf)" in lines
    assert "Logs: results/mini/logs/ (one per job)" in lines
    report = next(line for line in lines if line.startswith("HTML report"))
    assert report.endswith("--report results/mini/report.html --configfile mini.yaml")
    assert lines[-1].endswith("provenance results/mini/figures/fig3.pdf")


def test_closing_message_of_a_partial_run_names_no_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "mini" / "data").mkdir(parents=True)
    message = closing.closing_message("results/mini")
    assert "SUMMARY.md" not in message and "Figures" not in message
    assert "provenance" not in message and "--report results/mini/report.html" in message


def test_closing_message_says_a_summary_has_no_table_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("SUMMARY.md").write_text("# Results summary\n")
    assert closing.closing_message(".").splitlines()[1:3] == [
        "Headline numbers, from SUMMARY.md (every number with its source):",
        "  (none: SUMMARY.md has no table between <!-- summary:start --> and <!-- summary:end -->)",
    ]


def test_results_come_from_coar_results_or_the_first_results_mini_above(tmp_path, monkeypatch):
    monkeypatch.delenv("COAR_RESULTS", raising=False)
    (tmp_path / "results" / "mini").mkdir(parents=True)
    deep = tmp_path / "notebooks" / "sub"
    deep.mkdir(parents=True)
    assert notebook.find_results(start=deep) == tmp_path / "results" / "mini"
    monkeypatch.setenv("COAR_RESULTS", str(tmp_path / "results"))
    assert notebook.find_results(start=deep) == tmp_path / "results"


def test_missing_results_stop_a_script_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COAR_RESULTS", str(tmp_path / "nowhere"))
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    with pytest.raises(SystemExit) as stop:
        notebook.find_results()
    assert str(stop.value) == (
        f"ResultsNotFound: COAR_RESULTS={tmp_path / 'nowhere'}: no such directory; set "
        "COAR_RESULTS to a run's results directory (e.g. results/mini)"
    )


def test_missing_results_in_a_notebook_render_as_one_line():
    error = notebook.ResultsNotFound("no results/mini/ in /x or any directory above it")
    assert error._render_traceback_() == [
        "ResultsNotFound: no results/mini/ in /x or any directory above it"
    ]
