"""The paper's replication on top of the `coar` library: its setups, data, checkpoints,
language models, Coar-Edit experiments, figures and published-attribution comparisons.

Dependencies point one way: this package uses `coar`'s public API and never the workflow
glue (`coar_workflow`).
"""
