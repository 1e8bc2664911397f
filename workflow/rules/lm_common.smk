# Helpers of the causal-LM rules (workflow/rules/lm.smk).
LANGUAGE_MODELS = config.get("language_models", {})


def language_models(source):
    return (
        "|".join(n for n, c in LANGUAGE_MODELS.items() if c["source"] == source)
        or "(?!)"
    )


def lm_config(wildcards):
    return LANGUAGE_MODELS[wildcards.lm]


def setup_language_model(wildcards):
    name = setup_config(wildcards)["language_model"]
    if name not in LANGUAGE_MODELS:
        raise ValueError(
            f"config key setups.{wildcards.setup}.language_model names {name!r}, "
            f"which is not under language_models (defined: {sorted(LANGUAGE_MODELS)})"
        )
    return name


def lm_weight_files(wildcards):
    """The downloads holding a Hugging Face model's weights: one file, or its shards."""
    weights = lm_config(wildcards)["files"]["weights"]
    return [weights] if isinstance(weights, str) else weights


def lm_import_memory(input, attempt):
    """mem_mb of lm_import: the weights (as stored, e.g. float16) read into memory, the
    float32 model built from them and its checkpoint's copy, plus 2 GB; grown per attempt.
    """
    stored_mb = (
        sum(Path(f).stat().st_size for f in input.weights if Path(f).exists()) / 2**20
    )
    return int((2000 + 5 * stored_mb) * attempt)
