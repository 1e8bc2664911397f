"""ImageNet val or train as an FFCV beton: Resize + CenterCrop (torchvision's evaluation
transform); train keeps the first per_class images of each class."""

from coar_replication.datasets import imagenet_set_files, resize_center_crop, write_image_beton
from coar_workflow.logs import log_to
from coar_workflow.provenance import record_provenance

log = log_to(snakemake.log[0])
cfg = snakemake.params.imagenet
files, labels = imagenet_set_files(snakemake.wildcards.imagenet, cfg)
log.info("%d images in %d classes from %s", len(files), labels.max() + 1, cfg["path"])
write_image_beton(
    snakemake.output[0],
    lambda i: resize_center_crop(files[i], cfg["resize"], cfg["crop"]),
    labels,
    num_workers=snakemake.threads,
)
log.info("wrote %s (resize %d, centre crop %d)", snakemake.output[0], cfg["resize"], cfg["crop"])
record_provenance(snakemake)
