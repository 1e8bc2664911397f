"""One split of CIFAR-10 (from the dataset's python tarball) as an FFCV beton."""

from coar_replication.datasets import read_cifar10, write_image_beton
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
split = snakemake.params.split
images, labels = read_cifar10(snakemake.input[0], split)
write_image_beton(snakemake.output[0], lambda i: images[i], labels)
log.info("wrote %d CIFAR-10 %s images to %s", len(labels), split, snakemake.output[0])
record_provenance(snakemake)
