"""Fit Coar's per-example linear models from the component dataset."""

import torch

from coar.device import resolve_device
from coar.fit import fit_from_beton
from coar_workflow.jobs import example_set_of_rule, load_setup_of_rule
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
device = resolve_device(snakemake.params.device)
# The setup gives the component names and example ids; its images are freed before the
# fit (on the device that runs it: float32 images of setup B would take ~30 GB of host
# memory on the CPU).
setup = load_setup_of_rule(snakemake, device, examples=example_set_of_rule(snakemake))
name, component_names, example_ids = setup.name, setup.spec.names(), setup.ids()
del setup
if device.type == "cuda":
    torch.cuda.empty_cache()
attributions = fit_from_beton(
    snakemake.input.beton,
    component_names=component_names,
    example_ids=example_ids,
    fit_config=snakemake.params.fit,
    meta={"setup": name, "method": "coar", **snakemake.params.ablation},
    device=device,
    progress=True,  # "fit: reading <beton>": the beton's path names setup and example set
)
attributions.save(snakemake.output[0])
record_provenance(snakemake)
