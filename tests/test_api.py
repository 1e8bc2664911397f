"""The public API: `coar.attribute`, `coar.AttributionRun`, `coar.evaluate` and the names
exported by `coar`, each with a runnable example."""

import copy
import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import torch
from torch import nn

import coar
import coar.store
from coar.store import ShardError


def tiny_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )
    return model.eval()


def examples(n=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 5, 5, generator=generator), torch.arange(n) % 4


def test_attribute_fits_the_least_squares_model_of_literally_zeroed_weights():
    model, (images, labels) = tiny_model(), examples()
    attributions = coar.attribute(
        model, images, labels, components="conv_filters", n_masks=80, alpha=0.2, progress=False
    )
    spec = coar.conv_filters(model)
    masks = coar.sample_masks(0, "train", range(80), len(spec), 0.2)
    with torch.no_grad():
        true = torch.stack(
            [
                coar.margin(coar.zero_components(copy.deepcopy(model), spec, keep)(images), labels)
                for keep in torch.from_numpy(masks)
            ]
        ).double()
    design = torch.cat([torch.ones(80, 1), torch.from_numpy(masks).double()], 1)
    solution = torch.linalg.lstsq(design, true).solution
    np.testing.assert_allclose(attributions.weight, solution[1:].numpy(), atol=1e-4)
    np.testing.assert_allclose(attributions.bias, solution[0].numpy(), atol=1e-4)
    assert attributions.weight.shape == (12, 10)
    assert attributions.component_names[0] == "0[0]"
    assert attributions.meta["n_masks"] == 80


def test_sharded_resumable_run_equals_one_call(tmp_path):
    model, (images, labels) = tiny_model(), examples()
    settings = dict(components="conv_filters", n_masks=60, alpha=0.2, progress=False)
    run = coar.AttributionRun(model, images, labels, store=tmp_path, **settings)
    assert run.missing_shards(3) == [0, 1, 2]
    for shard in (2, 0):  # any order
        run.ablate(shard=shard, n_shards=3)
    assert run.missing_shards(3) == [1]
    with pytest.raises(ShardError, match="missing"):
        run.fit()
    resumed = coar.AttributionRun(model, images, labels, store=tmp_path, **settings)
    finished = resumed.shard_path(0, 3).stat().st_mtime_ns
    for shard in range(3):  # a finished shard is not redone
        resumed.ablate(shard=shard, n_shards=3)
    assert resumed.shard_path(0, 3).stat().st_mtime_ns == finished
    sharded = resumed.fit()
    whole = coar.attribute(model, images, labels, **settings)
    np.testing.assert_allclose(sharded.weight, whole.weight, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sharded.bias, whole.bias, rtol=1e-10, atol=1e-10)


def test_a_store_of_another_run_is_refused(tmp_path):
    model, (images, labels) = tiny_model(), examples()
    coar.AttributionRun(
        model, images, labels, components="conv_filters", n_masks=60, store=tmp_path
    )
    with pytest.raises(ValueError, match="run.json records another run"):
        coar.AttributionRun(
            model, images, labels, components="conv_filters", n_masks=70, store=tmp_path
        )


def test_evaluate_on_fresh_masks_and_saved_attributions(tmp_path):
    model, (images, labels) = tiny_model(), examples()
    attributions = coar.attribute(
        model, images, labels, components="conv_filters", n_masks=200, alpha=0.2, progress=False
    )
    attributions.save(tmp_path / "coar.pt")
    loaded = coar.Attributions.load(tmp_path / "coar.pt")
    result = coar.evaluate(
        loaded,
        model,
        images,
        labels,
        components="conv_filters",
        alpha=0.2,
        n_masks=40,
        progress=False,
    )
    assert isinstance(result, coar.Evaluation)
    assert result.correlations.shape == (10,)
    assert result.mean > 0.5 and result.ci_low <= result.mean <= result.ci_high
    assert result.n_undefined == 0
    assert "mean correlation" in str(result)
    summary = result.summary()
    assert list(summary.columns[-2:]) == ["n_examples", "n_undefined"]


def test_evaluate_refuses_attributions_of_another_shape():
    model, (images, labels) = tiny_model(), examples()
    wrong = coar.Attributions(np.zeros((3, 10)), np.zeros(10), ["a", "b", "c"], list(range(10)))
    with pytest.raises(ValueError, match="do not fit 12 components x 10 examples"):
        coar.evaluate(wrong, model, images, labels, components="conv_filters", progress=False)


def test_labels_default_to_the_models_predictions():
    model, (images, _) = tiny_model(), examples()
    with torch.no_grad():
        predicted = model(images).argmax(1)
    settings = dict(components="conv_filters", n_masks=40, progress=False)
    implicit = coar.attribute(model, images, **settings)
    explicit = coar.attribute(model, images, predicted, **settings)
    np.testing.assert_array_equal(implicit.weight, explicit.weight)


class KeywordModel(nn.Module):
    """A model called with keyword tensors (like a tokenizer's output) that returns an
    object with ``.logits`` (like Hugging Face models)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.hidden = nn.Linear(8, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        h = (self.embed(input_ids) * attention_mask[..., None]).sum(1)
        return type("Output", (), {"logits": self.head(torch.relu(self.hidden(h)))})()


def test_mapping_inputs_and_logits_outputs():
    torch.manual_seed(0)
    model = KeywordModel().eval()
    inputs = {"input_ids": torch.randint(0, 20, (6, 5)), "attention_mask": torch.ones(6, 5)}
    spec = coar.ComponentSpec([("hidden", 16)])
    attributions = coar.attribute(
        model,
        inputs,
        torch.zeros(6, dtype=torch.long),
        components=spec,
        n_masks=64,
        progress=False,
    )
    assert attributions.weight.shape == (16, 6)
    assert np.isfinite(attributions.weight).all()


def test_user_errors_name_the_value_and_the_fix():
    model, (images, labels) = tiny_model(), examples()
    with pytest.raises(ValueError, match="output 'accuracy' is not a built-in output"):
        coar.attribute(model, images, labels, components="conv_filters", output="accuracy")
    with pytest.raises(ValueError, match="spec is empty"):
        coar.attribute(model, images, labels, components=coar.ComponentSpec([]))
    with pytest.raises(TypeError, match="components must be a ComponentSpec"):
        coar.attribute(model, images, labels, components=["0"])
    with pytest.raises(ValueError, match="5 labels for 10 examples"):
        coar.attribute(model, images, labels[:5], components="conv_filters")
    with pytest.raises(TypeError, match="neither a tensor nor has a .logits"):
        coar.margin(object(), labels)


def test_fewer_masks_than_components_warns_with_the_remedy(caplog):
    model, (images, labels) = tiny_model(), examples()
    coar.attribute(model, images, labels, components="conv_filters", n_masks=8, progress=False)
    assert "8 masks for 12 components" in caplog.text


def test_top_components():
    attributions = coar.Attributions(
        np.array([[0.5, 0.0], [-1.0, 1.0], [2.0, 0.0]]), np.zeros(2), ["a", "b", "c"], [7, 9]
    )
    assert attributions.top(0, k=2) == [("c", 2.0), ("a", 0.5)]
    assert attributions.top(0, k=1, largest=False) == [("b", -1.0)]
    with pytest.raises(IndexError, match="example 2 is not in 0..1"):
        attributions.top(2)


def test_every_public_name_has_a_docstring_with_an_example():
    missing = [name for name in coar.__all__ if ">>>" not in (getattr(coar, name).__doc__ or "")]
    assert missing == []


def library_modules():
    return [
        importlib.import_module(f"coar.{info.name}") for info in pkgutil.iter_modules(coar.__path__)
    ]


@pytest.mark.parametrize("module", [coar, *library_modules()], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_identity_fields_tell_runs_apart(tmp_path):
    model, (images, labels) = tiny_model(), examples()
    settings = dict(components="conv_filters", n_masks=30, progress=False)
    run = coar.AttributionRun(
        model, images, labels, store=tmp_path, identity={"examples": "train"}, **settings
    )
    path = run.ablate()
    assert coar.store.read_shard(path)["run"]["examples"] == "train"
    other = coar.AttributionRun(model, images, labels, **settings)
    with pytest.raises(ShardError, match="expected"):
        other.fit(shards=[path])
    with pytest.raises(ValueError, match="contradicts"):
        coar.AttributionRun(model, images, labels, identity={"seed": 5}, **settings)
