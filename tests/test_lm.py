"""Causal LMs: the margin output, stories and tokenizer, GPT-2 and Phi checkpoints, setups."""

import json

import numpy as np
import pytest
import torch
from tiny_sources import PHI_ARCH, write_hf_phi

from coar.components import component_spec, zero_components
from coar.masking import MaskedModel, ablated_outputs
from coar.masks import sample_masks
from coar_replication.checkpoints import save_model
from coar_replication.lm import (
    IGNORE,
    check_right_padded,
    import_hf_causal_lm,
    load_causal_lm,
    load_lm,
    mean_token_margin,
    next_token_targets,
    read_tinystories,
    tiny_gpt2,
)
from coar_replication.stories import PAD, WordTokenizer, stories, story

ARCH = dict(n_layer=2, n_head=4, n_embd=16, n_inner=32)


def margin_loop(logits, input_ids, attention_mask):
    """The original code's per-sequence loop: for a sequence of L real tokens, positions
    0..L-2 predict tokens 1..L-1; margin = correct logit - max of the other logits."""
    result = []
    for row in range(len(input_ids)):
        length = int(attention_mask[row].sum())
        margins = []
        for t in range(length - 1):
            scores = logits[row, t].double().clone()
            correct = scores[input_ids[row, t + 1]].item()
            scores[input_ids[row, t + 1]] = -np.inf
            margins.append(correct - scores.max().item())
        result.append(np.mean(margins))
    return np.array(result)


def padded_batch(lengths, vocab, width, generator):
    input_ids = torch.randint(3, vocab, (len(lengths), width), generator=generator)
    attention_mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


def test_mean_token_margin_equals_the_loop():
    generator = torch.Generator().manual_seed(0)
    input_ids, attention_mask = padded_batch([7, 2, 12, 5], 50, 12, generator)
    logits = torch.randn(4, 12, 50, generator=generator) * 3
    # A tie between the correct token and the best other one: margin 0 there.
    logits[0, 0, input_ids[0, 1]] = logits[0, 0].max() + 1
    logits[0, 0, 3 if input_ids[0, 1] != 3 else 4] = logits[0, 0, input_ids[0, 1]]
    targets = next_token_targets(input_ids, attention_mask)
    expected = margin_loop(logits, input_ids, attention_mask)
    np.testing.assert_allclose(mean_token_margin(logits, targets).numpy(), expected, rtol=1e-5)
    # Padding: whatever the logits at pad positions, the result does not change.
    noisy = logits.clone()
    noisy[attention_mask == 0] = 1e4
    np.testing.assert_allclose(mean_token_margin(noisy, targets).numpy(), expected, rtol=1e-5)


def test_mean_token_margin_in_bf16_is_the_margin_of_the_bf16_logits():
    generator = torch.Generator().manual_seed(1)
    input_ids, attention_mask = padded_batch([9, 4], 40, 9, generator)
    logits = torch.randn(2, 9, 40, generator=generator).bfloat16()
    targets = next_token_targets(input_ids, attention_mask)
    expected = margin_loop(logits.float(), input_ids, attention_mask)
    np.testing.assert_allclose(mean_token_margin(logits, targets).numpy(), expected, rtol=1e-5)


def test_next_token_targets_follow_the_attention_mask():
    input_ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    targets = next_token_targets(input_ids, attention_mask)
    assert targets.tolist() == [[6, 7, IGNORE, IGNORE], [9, IGNORE, IGNORE, IGNORE]]


def test_a_sequence_without_a_counted_token_is_named():
    targets = next_token_targets(torch.tensor([[5, 0], [5, 6]]), torch.tensor([[1, 0], [1, 1]]))
    with pytest.raises(ValueError, match=r"sequences \[0\]"):
        mean_token_margin(torch.zeros(2, 2, 10), targets)


def test_left_padding_is_refused():
    with pytest.raises(ValueError, match=r"sequences \[1\]"):
        check_right_padded(np.array([[1, 1, 0], [0, 1, 1]]), "data.npz")


def test_stories_are_deterministic_and_tokenize_round_trip():
    assert story(0, 5) == story(0, 5) != story(1, 5)
    texts = stories(0, 0, 200)
    assert len(set(texts)) > 150
    tokenizer = WordTokenizer.fit(texts)
    batch = tokenizer.encode_batch(texts[:3], max_tokens=200)
    check_right_padded(batch["attention_mask"], "stories")
    row = batch["input_ids"][0][batch["attention_mask"][0] == 1]
    assert row[0] == tokenizer.bos_id and row[-1] == tokenizer.eos_id
    assert tokenizer.decode(row[1:-1]).replace(" ", "") == texts[0].replace(" ", "")
    assert tokenizer.vocab[0] == PAD
    with pytest.raises(KeyError, match="Zebra"):
        tokenizer.encode("Zebra had a ball.")


def test_right_padding_needs_no_attention_mask_in_the_model():
    """Causal attention keeps pads out of real tokens' context: same logits without a mask."""
    model = tiny_gpt2(30, 16, ARCH, seed=0)
    input_ids, attention_mask = padded_batch([16, 9, 3], 30, 16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(input_ids=input_ids).logits
        masked = model(input_ids=input_ids, attention_mask=attention_mask).logits
    real = attention_mask.bool()
    torch.testing.assert_close(plain[real], masked[real], rtol=1e-5, atol=1e-5)


def test_engine_on_gpt2_equals_zeroing_weights(tmp_path):
    """The LM path through the masking engine: masks x stories per batch, per-token margin."""
    model = tiny_gpt2(30, 16, ARCH, seed=0)
    input_ids, attention_mask = padded_batch([16, 9, 3], 30, 16, torch.Generator().manual_seed(2))
    targets = next_token_targets(input_ids, attention_mask)
    for kind in ("gpt2_rows", "attention_heads"):
        spec = component_spec(model, kind)
        masks = torch.from_numpy(sample_masks(0, "test", range(5), len(spec), 0.3))
        fast = ablated_outputs(
            MaskedModel(model, spec), input_ids, targets, masks, mean_token_margin, max_batch=6
        )
        for k, keep in enumerate(masks):
            ablated = zero_components(tiny_gpt2(30, 16, ARCH, seed=0), spec, keep)
            with torch.no_grad():
                logits = ablated(input_ids=input_ids).logits
            expected = margin_loop(logits, input_ids, attention_mask)
            np.testing.assert_allclose(fast[k].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_gpt2_small_component_counts():
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config())
    assert len(component_spec(model, "gpt2_rows")) == 64_512
    assert len(component_spec(model, "attention_heads")) == 144


def test_checkpoint_round_trip_and_setup(tmp_path):
    model = tiny_gpt2(30, 16, ARCH, seed=0)
    save_model(model, tmp_path / "model.pt", components="attention_heads")
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert list(checkpoint) == ["format", "config", "state_dict", "components"]
    assert checkpoint["format"] == "gpt2" and "lm_head.weight" not in checkpoint["state_dict"]
    loaded, meta = load_lm(tmp_path / "model.pt")
    assert meta["components"] == "attention_heads"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()

    input_ids, attention_mask = padded_batch([16, 4], 30, 16, torch.Generator().manual_seed(0))
    np.savez(tmp_path / "data.npz", input_ids=input_ids.numpy(), attention_mask=attention_mask)
    setup = load_causal_lm("lm", tmp_path / "model.pt", tmp_path / "data.npz", torch.device("cpu"))
    assert len(setup.spec) == 8 and setup.n_examples == 2
    with torch.no_grad():
        out = setup.output_fn(setup.model(setup.inputs), setup.labels)
    np.testing.assert_allclose(
        out.numpy(),
        margin_loop(model(input_ids=input_ids).logits.detach(), input_ids, attention_mask),
        rtol=1e-5,
    )


def test_hugging_face_files_import(tmp_path):
    """The hub's layout: config.json, and tensors named without the transformer. prefix
    plus the attention-mask buffers that the model no longer has."""
    from safetensors.torch import save_file

    model = tiny_gpt2(30, 16, ARCH, seed=3)
    config = {k: v for k, v in model.config.to_dict().items() if k != "transformers_version"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = {
        k.removeprefix("transformer."): v.contiguous()
        for k, v in model.state_dict().items()
        if k != "lm_head.weight"
    }
    tensors["h.0.attn.bias"] = torch.ones(1, 1, 16, 16)
    save_file(tensors, tmp_path / "model.safetensors")
    imported = import_hf_causal_lm(tmp_path / "config.json", tmp_path / "model.safetensors")
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(imported(input_ids=ids).logits, model(input_ids=ids).logits)


def test_tinystories_text_file(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text("One day, a cat.\n<|endoftext|>\nTom ran.\nHe was happy.\n<|endoftext|>\n\n")
    assert read_tinystories(path) == ["One day, a cat.", "Tom ran.\nHe was happy."]


PHI_SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def test_sharded_hugging_face_phi_imports_and_round_trips(tmp_path):
    """phi-2's layout: config.json and float16 weights in two shards."""
    model = write_hf_phi(tmp_path, vocab_size=30, n_positions=16, seed=1)
    shards = [tmp_path / name for name in PHI_SHARDS]
    imported = import_hf_causal_lm(tmp_path / "config.json", shards)
    assert type(imported).__name__ == "PhiForCausalLM" and not imported.training
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        torch.testing.assert_close(imported(input_ids=ids).logits, expected)
    save_model(imported, tmp_path / "model.pt", components="mlp_neurons")
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["format"] == "phi" and "lm_head.bias" in checkpoint["state_dict"]
    loaded, meta = load_lm(tmp_path / "model.pt")
    assert meta["components"] == "mlp_neurons"
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected)


def test_a_missing_or_repeated_shard_is_named(tmp_path):
    write_hf_phi(tmp_path, vocab_size=30, n_positions=16)
    config, (first, second) = tmp_path / "config.json", [tmp_path / n for n in PHI_SHARDS]
    with pytest.raises(KeyError, match=r"missing \['lm_head.bias'.*is a shard missing"):
        import_hf_causal_lm(config, [first])
    with pytest.raises(ValueError, match="model.embed_tokens.weight' is in both"):
        import_hf_causal_lm(config, [first, second, first])
    (tmp_path / "other.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        import_hf_causal_lm(tmp_path / "other.json", [first, second])


def test_phi_setup_and_engine_equal_zeroing_weights(tmp_path):
    """Phi through the setup loader and the masking engine, for both component kinds."""
    model = write_hf_phi(tmp_path, vocab_size=30, n_positions=16, seed=2)
    input_ids, attention_mask = padded_batch([16, 9, 3], 30, 16, torch.Generator().manual_seed(2))
    np.savez(tmp_path / "data.npz", input_ids=input_ids.numpy(), attention_mask=attention_mask)
    layers, heads = PHI_ARCH["num_hidden_layers"], PHI_ARCH["num_attention_heads"]
    counts = {
        "attention_heads": layers * heads,
        "mlp_neurons": layers * PHI_ARCH["intermediate_size"],
    }
    for kind, count in counts.items():
        save_model(model, tmp_path / "model.pt", components=kind)
        setup = load_causal_lm(
            "phi", tmp_path / "model.pt", tmp_path / "data.npz", torch.device("cpu")
        )
        assert len(setup.spec) == count
        masks = torch.from_numpy(sample_masks(0, "test", range(4), count, 0.3))
        fast = ablated_outputs(
            MaskedModel(setup.model, setup.spec),
            setup.inputs,
            setup.labels,
            masks,
            mean_token_margin,
            max_batch=6,
        )
        for k, keep in enumerate(masks):
            ablated = zero_components(load_lm(tmp_path / "model.pt")[0], setup.spec, keep)
            with torch.no_grad():
                logits = ablated(input_ids=input_ids).logits
            expected = margin_loop(logits, input_ids, attention_mask)
            np.testing.assert_allclose(fast[k].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_phi_2_component_counts(capsys):
    from coar_workflow.cli import main

    main(["components", "phi2"])
    assert capsys.readouterr().out.splitlines()[-1] == "total: 1024"
    main(["components", "phi2", "--kind", "mlp_neurons"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mlp_neurons of architecture phi2 (no weights)"
    assert lines[2].split() == ["model.layers.0.mlp.fc1", "10240"]
    assert lines[-1] == "total: 327680"
