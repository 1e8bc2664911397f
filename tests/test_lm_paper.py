"""The paper config's GPT-2 and Phi-2 rules, end to end on CPU, from a loopback server
serving tiny stand-ins of the Hugging Face files (config.json, model.safetensors in the
hub's layout, phi-2's two shards, tokenizer.json) and of TinyStories-valid.txt, each checked
against its pinned digest (here: the stand-ins')."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from loopback import FileServer
from test_workflow import planned_jobs, write_yaml
from test_workflow import snakemake as run_snakemake
from tiny_sources import PHI_ARCH, write_hf_phi

from coar.attributions import Attributions
from coar_replication.lm import tiny_gpt2
from coar_replication.stories import stories

PAPER = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
PAPER_CONFIG = yaml.safe_load(PAPER.read_text())
# The heads' path is the same rules with another component kind (the mini workflow runs
# both): one GPT-2 setup here keeps the test short, and so does one Phi-2 setup, the MLP
# neurons (Phi's heads through the engine: tests/test_lm.py), run in the same Snakemake
# invocation (one start, one download of the stories).
LM_SETUP = "gpt2_rows"
PHI_SETUP, PHI_MASKS = "phi2_mlp", 40
N_STORIES, LAST = 12, 5


def write_hf_models(directory: Path) -> None:
    """A byte-level BPE tokenizer, a tiny random GPT-2 saved as the hub stores gpt2 and a
    tiny random Phi as the hub stores microsoft/phi-2 (two shards)."""
    from safetensors.torch import save_file
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        stories(0, 0, 200), vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tokenizer.save(str(directory / "gpt2_tokenizer.json"))
    arch = dict(n_layer=2, n_head=2, n_embd=16, n_inner=32)
    model = tiny_gpt2(tokenizer.get_vocab_size(), 64, arch, seed=0)
    config = {k: v for k, v in model.config.to_dict().items() if k != "transformers_version"}
    (directory / "gpt2_config.json").write_text(json.dumps(config))
    tensors = {
        k.removeprefix("transformer."): v.contiguous()
        for k, v in model.state_dict().items()
        if k != "lm_head.weight"
    }
    for layer in range(arch["n_layer"]):  # the hub file still carries the causal-mask buffer
        tensors[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
    save_file(tensors, directory / "gpt2_model.safetensors")
    text = "\n<|endoftext|>\n".join(stories(7, 0, N_STORIES)) + "\n<|endoftext|>\n"
    (directory / "TinyStories-valid.txt").write_text(text)
    # phi-2's tokenizer is a GPT-2-style BPE too: the same stand-in serves both.
    (directory / "phi2_tokenizer.json").write_bytes(
        (directory / "gpt2_tokenizer.json").read_bytes()
    )
    write_hf_phi(directory, tokenizer.get_vocab_size(), 64, prefix="phi2_", seed=0)


def overlay(url: str, files: dict) -> dict:
    return {
        "downloads": {
            name: {"url": f"{url}/{name}", "sha256": hashlib.sha256(body).hexdigest()}
            for name, body in files.items()
        },
        "language_models": {
            name: {"stories": {"last": LAST, "max_tokens": 48}} for name in ("gpt2", "phi2")
        },
        "setups": {
            setup: {
                "ablation": {"n_masks": n_masks, "n_shards": 1, "masks_per_batch": 10},
                "evaluation": {
                    "alpha_test": [PAPER_CONFIG["setups"][setup]["ablation"]["alpha_train"]],
                    "n_masks": 10,
                    "n_bootstrap": 100,
                    "baselines": ["atp"],
                },
            }
            for setup, n_masks in {LM_SETUP: 60, PHI_SETUP: PHI_MASKS}.items()
        },
        "figures": {
            "figI1": {"title": "Coar on GPT-2", "setups": [LM_SETUP]},
            "figPhi2": {"title": "Coar on Phi-2", "setups": [PHI_SETUP]},
        },
    }


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lm")
    served = workdir / "served"
    served.mkdir()
    write_hf_models(served)
    files = {path.name: path.read_bytes() for path in served.iterdir()}
    server = FileServer()
    server.files = {f"/{name}": body for name, body in files.items()}
    with server.running():
        result = run_snakemake(
            workdir,
            PAPER,
            write_yaml(workdir / "lm.yaml", overlay(server.url, files)),
            args=["--", "results/figures/figI1.pdf", "results/figures/figPhi2.pdf"],
        )
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, files


@pytest.mark.workflow
def test_gpt2_rules_run_from_pinned_downloads_to_figure(lm_run):
    workdir, files = lm_run
    results = workdir / "results"
    assert (results / "figures" / "figI1.pdf").read_bytes()[:4] == b"%PDF"
    for name, body in files.items():
        assert (workdir / "resources" / name).read_bytes() == body
    with np.load(results / "data" / "gpt2_rows.npz") as data:
        assert data["input_ids"].shape[0] == LAST
    rows = Attributions.load(results / "attributions" / "gpt2_rows" / "coar.pt")
    assert rows.weight.shape == (2 * (16 + 16 + 16 + 32), LAST)
    assert rows.component_names[0] == "transformer.h.0.attn.c_attn[0]"
    summary = pd.read_csv(results / "eval" / LM_SETUP / "summary.csv")
    assert set(summary.method) == {"coar", "atp"}
    assert np.isfinite(summary.mean_corr).all()


def test_paper_config_plans_gpt2_from_downloads_to_figure(tmp_path):
    result = run_snakemake(tmp_path, PAPER, args=["--dry-run", "--", "results/figures/figI1.pdf"])
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    for rule in (
        "download_gpt2_config_json",
        "download_gpt2_model_safetensors",
        "download_gpt2_tokenizer_json",
        "download_TinyStories_valid_txt",
        "lm_import",
        "lm_tinystories",
        "figI1",
    ):
        assert jobs.get(rule) == 1, (rule, jobs)
    assert jobs["lm_setup"] == jobs["fit"] == 2  # gpt2_rows and gpt2_heads
    assert jobs["ablate"] == 100 + 10


@pytest.mark.workflow
def test_phi2_rules_run_from_pinned_shards_to_figure(lm_run):
    workdir, files = lm_run
    results = workdir / "results"
    assert (results / "figures" / "figPhi2.pdf").read_bytes()[:4] == b"%PDF"
    log = (results / "logs" / "lm_import" / "phi2.log").read_text()
    assert "PhiForCausalLM from 2 weights file(s)" in log
    neurons = Attributions.load(results / "attributions" / PHI_SETUP / "coar.pt")
    size = PHI_ARCH["num_hidden_layers"] * PHI_ARCH["intermediate_size"]
    assert neurons.weight.shape == (size, LAST)
    assert neurons.component_names[0] == "model.layers.0.mlp.fc1[0]"
    summary = pd.read_csv(results / "eval" / PHI_SETUP / "summary.csv")
    assert set(summary.method) == {"coar", "atp"}
    assert np.isfinite(summary.mean_corr).all()


def test_paper_config_plans_phi2_from_shards_to_figure(tmp_path):
    result = run_snakemake(tmp_path, PAPER, args=["--dry-run", "--", "results/figures/figPhi2.pdf"])
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    for rule in (
        "download_phi2_config_json",
        "download_phi2_model_00001_of_00002_safetensors",
        "download_phi2_model_00002_of_00002_safetensors",
        "download_phi2_tokenizer_json",
        "download_TinyStories_valid_txt",
        "lm_import",
        "lm_tinystories",
        "figPhi2",
    ):
        assert jobs.get(rule) == 1, (rule, jobs)
    assert jobs["lm_setup"] == jobs["fit"] == 2  # phi2_heads and phi2_mlp
    assert jobs["ablate"] == 10 + 100
