"""Outputs and inputs of Hugging Face models: `margin` on SequenceClassifierOutput,
`next_token_margin` for causal LMs at each example's last non-padding position, inputs
as a tokenizer's BatchEncoding everywhere (attribute, AttributionRun, evaluate, edit),
and output functions checked for one float per example before any ablation."""

import copy

import numpy as np
import pytest
import torch
from transformers import (
    BatchEncoding,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

import coar
from coar.edit import logits_under_masks
from coar.outputs import OUTPUTS, labels_for, last_positions, next_token_labels


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config).eval()


def token_batch(n=6, length=7, seed=0, vocab=40):
    """A tokenizer's output for right-padded sequences of varying length."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, length), generator=generator)
    lengths = torch.tensor([length - (j % 3) for j in range(n)])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return BatchEncoding({"input_ids": ids * mask, "attention_mask": mask})


def intermediate_neurons(model):
    return coar.ComponentSpec(
        [(f"bert.encoder.layer.{i}.intermediate.dense", 32) for i in range(2)]
    )


def test_margin_takes_hugging_face_outputs_and_refuses_sequence_logits():
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
    output = SequenceClassifierOutput(logits=logits)
    assert torch.equal(coar.margin(output, torch.tensor([0, 2])), torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="use output='next_token_margin'"):
        coar.margin(torch.zeros(2, 5, 3), torch.tensor([0, 1]))
    assert OUTPUTS["next_token_margin"] is coar.next_token_margin


def test_next_token_margin_is_taken_at_the_last_non_padding_position():
    batch = token_batch()
    positions = last_positions(batch)
    assert positions.tolist() == [6, 5, 4, 6, 5, 4]
    left_padded = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"].flip(1),
    }
    assert last_positions(left_padded).tolist() == [6] * 6
    model = tiny_gpt2()
    with torch.no_grad():
        logits = model(**batch).logits
    tokens = torch.arange(6)
    labels = next_token_labels(batch, tokens)
    expected = torch.stack(
        [coar.margin(logits[j, positions[j]][None], tokens[j : j + 1])[0] for j in range(6)]
    )
    assert torch.allclose(coar.next_token_margin(logits, labels), expected)
    # None: the unablated model's own next token there, whose margin is positive.
    predicted = labels_for(coar.next_token_margin, model, batch)
    assert torch.equal(predicted[:, 0], positions)
    assert (coar.next_token_margin(logits, predicted) > 0).all()
    with pytest.raises(ValueError, match=r"\(batch, 2\) rows \(position, token\)"):
        coar.next_token_margin(logits, tokens)


def test_next_token_margin_attributions_of_a_causal_lm_match_zeroed_weights():
    model, batch = tiny_gpt2(), token_batch()
    spec = coar.gpt2_rows(model)
    tokens = torch.arange(6) + 3
    run = coar.AttributionRun(
        model,
        batch,
        tokens,
        components=spec,
        output="next_token_margin",
        n_masks=4,
        masks_per_batch=2,
        solver=None,
        progress=False,
    )
    assert torch.equal(run.labels, next_token_labels(batch, tokens))
    masks, outputs = run.ablate_rows([0, 1])
    for keep, row in zip(masks, outputs, strict=True):
        zeroed = coar.zero_components(copy.deepcopy(model), spec, torch.from_numpy(keep))
        with torch.no_grad():
            true = coar.next_token_margin(zeroed(**batch), run.labels)
        np.testing.assert_allclose(row, true.numpy(), atol=1e-4)


def test_a_tokenizers_batch_encoding_works_everywhere(tmp_path):
    model, batch = tiny_bert(), token_batch(vocab=50)
    spec = intermediate_neurons(model)
    settings = dict(components=spec, n_masks=128, alpha=0.1, progress=False, masks_per_batch=32)
    attributions = coar.attribute(model, batch, **settings)
    assert attributions.weight.shape == (64, 6)
    run = coar.AttributionRun(model, batch, store=tmp_path, **settings)
    for shard in range(2):
        run.ablate(shard=shard, n_shards=2)
    np.testing.assert_allclose(run.fit().weight, attributions.weight, atol=1e-8)
    result = coar.evaluate(
        attributions, model, batch, components=spec, n_masks=20, progress=False, masks_per_batch=20
    )
    assert np.isfinite(result.correlations).any()
    masks = np.ones((2, len(spec)), dtype=bool)
    masks[1, :32] = False
    logits = logits_under_masks(model, spec, batch, masks)
    assert logits.shape == (2, 6, 3)
    with torch.no_grad():
        assert torch.allclose(logits[0], model(**batch).logits, atol=1e-5)


def test_an_output_function_of_the_wrong_shape_is_refused_before_ablating():
    model, batch = tiny_bert(), token_batch(vocab=50)

    def per_class(output, labels):  # (batch, classes): not one float per example
        return output.logits

    def column(output, labels):  # (batch, 1): would reshape silently into (masks, examples)
        return coar.margin(output, labels)[:, None]

    for wrong, shape in ((per_class, r"\(4, 3\)"), (column, r"\(4, 1\)")):
        with pytest.raises(
            ValueError, match=f"{wrong.__name__} returned a tensor of shape {shape}"
        ):
            coar.attribute(model, batch, components=intermediate_neurons(model), output=wrong)
    with pytest.raises(ValueError, match="returned a float"):
        coar.attribute(
            model, batch, components=intermediate_neurons(model), output=lambda o, y: 1.0
        )


def test_bad_inputs_and_labels_are_named():
    model, batch = tiny_bert(), token_batch(vocab=50)
    spec = intermediate_neurons(model)
    uneven = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"][:3]}
    with pytest.raises(ValueError, match="must hold the same examples along dimension 0"):
        coar.attribute(model, uneven, components=spec)
    ragged = {"input_ids": [[1, 2, 3], [4, 5]], "attention_mask": [[1, 1, 1], [1, 1]]}
    with pytest.raises(ValueError, match=r"inputs\['input_ids'\] is not a tensor .*padding=True"):
        coar.attribute(model, ragged, components=spec)
    with pytest.raises(TypeError, match="inputs must be a tensor of examples or a mapping"):
        coar.attribute(model, "some text", components=spec)
    with pytest.raises(ValueError, match=r"\(batch,\) class indices"):
        coar.attribute(model, batch, torch.zeros(6, 2, dtype=torch.long), components=spec)
    with pytest.raises(ValueError, match="nothing to fit"):
        coar.fit.fit_from_batches(
            lambda: [],
            10,
            component_names=[],
            example_ids=[0],
            fit_config={"solver": "least_squares", "val_fraction": 0.1, "seed": 0},
            meta={},
        )
