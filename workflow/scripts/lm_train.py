"""Train the embedded default's tiny GPT-2 on the generated stories."""

import json

import numpy as np
import torch

from coar.atomic import atomic_path
from coar_replication.checkpoints import save_model
from coar_replication.lm import lm_metrics, tiny_gpt2, train_lm
from coar_replication.stories import WordTokenizer
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
arch, hp = snakemake.params.model, snakemake.params.train
with np.load(snakemake.input.corpus) as data:
    corpus = {key: data[key] for key in data.files}
tokenizer = WordTokenizer.load(snakemake.input.tokenizer)
model = tiny_gpt2(len(tokenizer), snakemake.params.max_tokens, arch, seed=hp["seed"])
log.info("tiny GPT-2: %d parameters", sum(p.numel() for p in model.parameters()))
train_lm(
    model,
    corpus["train_input_ids"],
    corpus["train_attention_mask"],
    epochs=hp["epochs"],
    batch_size=hp["batch_size"],
    lr=hp["lr"],
    weight_decay=hp["weight_decay"],
    seed=hp["seed"],
)
metrics = {
    split: lm_metrics(model, corpus[f"{split}_input_ids"], corpus[f"{split}_attention_mask"])
    for split in ("train", "eval")
}
log.info("metrics: %s", metrics)
save_model(model, snakemake.output.model, metrics=metrics)
with atomic_path(snakemake.output.metrics) as tmp:
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
record_provenance(snakemake)
