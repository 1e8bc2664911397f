"""CIFAR-10's test set (from the dataset's python tarball) as an FFCV beton."""

from coar.datasets import read_cifar10_test, write_image_beton
from coar.logs import log_to
from coar.provenance import record_provenance

log = log_to(snakemake.log[0])
images, labels = read_cifar10_test(snakemake.input[0])
write_image_beton(snakemake.output[0], lambda i: images[i], labels)
log.info("wrote %d CIFAR-10 test images to %s", len(labels), snakemake.output[0])
record_provenance(snakemake)
