"""The last TinyStories validation stories, tokenized with the language model's tokenizer
(right-padded)."""

import numpy as np

from coar.atomic import atomic_path
from coar_replication.lm import read_tinystories, tokenize_stories
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.stories
texts = read_tinystories(snakemake.input.stories)
log.info("%s: %d stories; keeping the last %d", snakemake.input.stories, len(texts), cfg["last"])
if len(texts) < cfg["last"]:
    raise ValueError(
        f"{snakemake.input.stories} holds {len(texts)} stories, fewer than {cfg['last']}"
    )
encoded = tokenize_stories(snakemake.input.tokenizer, texts[-cfg["last"] :], cfg["max_tokens"])
lengths = encoded["attention_mask"].sum(1)
log.info("%d tokens (%.1f per story, longest %d)", lengths.sum(), lengths.mean(), lengths.max())
with atomic_path(snakemake.output.corpus) as tmp, open(tmp, "wb") as f:
    np.savez(f, **{f"eval_{key}": value for key, value in encoded.items()})
record_provenance(snakemake)
