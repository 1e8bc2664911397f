"""The embedded default's story corpus: generated stories, word tokenizer, token ids."""

import numpy as np

from coar.atomic import atomic_path
from coar_replication.stories import WordTokenizer, stories
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.corpus
train = stories(cfg["seed"], 0, cfg["n_train"])
held_out = stories(cfg["seed"], cfg["n_train"], cfg["n_train"] + cfg["n_eval"])
tokenizer = WordTokenizer.fit(train)
arrays = {}
for split, texts in (("train", train), ("eval", held_out)):
    encoded = tokenizer.encode_batch(texts, cfg["max_tokens"])
    arrays.update({f"{split}_{key}": value for key, value in encoded.items()})
    lengths = encoded["attention_mask"].sum(1)
    log.info(
        "%s: %d stories, %d tokens (%.1f per story, longest %d)",
        split,
        len(texts),
        lengths.sum(),
        lengths.mean(),
        lengths.max(),
    )
log.info("vocabulary: %d words; first story:\n%s", len(tokenizer), train[0])
tokenizer.save(snakemake.output.tokenizer)
with atomic_path(snakemake.output.corpus) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)
record_provenance(snakemake)
