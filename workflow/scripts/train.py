"""Train the embedded default's MiniResNet and log its test accuracy."""

import json

import numpy as np
import torch

from coar.atomic import atomic_path
from coar_replication.checkpoints import save_model
from coar_replication.models import digits_miniresnet
from coar_replication.training import accuracy, train_classifier
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
arch, hp = snakemake.params.model, snakemake.params.train

with np.load(snakemake.input.data) as data:
    arrays = {key: data[key] for key in data.files}
torch.manual_seed(hp["seed"])
model = digits_miniresnet(arch, arrays["x_train"], arrays["y_train"])
train_classifier(
    model,
    arrays["x_train"],
    arrays["y_train"],
    epochs=hp["epochs"],
    batch_size=hp["batch_size"],
    lr=hp["lr"],
    weight_decay=hp["weight_decay"],
    seed=hp["seed"],
)
metrics = {
    split: accuracy(
        model, torch.from_numpy(arrays[f"x_{split}"]), torch.from_numpy(arrays[f"y_{split}"])
    )
    for split in ("train", "test")
}
log.info("train accuracy %.4f, test accuracy %.4f", metrics["train"], metrics["test"])
save_model(model, snakemake.output.model, metrics=metrics)
with atomic_path(snakemake.output.metrics) as tmp:
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
record_provenance(snakemake)
