"""The ways an example set selects its examples (`coar_replication.edit_examples`),
without torch, so that the workflow can read them while it builds its graph."""

SELECTIONS = ("all", "random", "per_class", "per_group", "misclassified")
# Selections that depend on the model's predictions, not only on the labels: the workflow
# makes them once (rule select_examples) and every step that needs the examples reads that.
MODEL_SELECTIONS = ("misclassified",)
