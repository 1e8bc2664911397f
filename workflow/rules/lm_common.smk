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
