"""The paper's evaluation sets: CIFAR-10, ImageNet val, the original's FFCV betons.

Evaluation sets are FFCV betons with an ``image`` field (RGB, stored raw, so
exactly the pixels we prepared), an integer ``label`` and, for Waterbirds and
CelebA, an integer ``group`` -- the field names of the original's published
betons, so both read the same way. A setup's examples file (``data/SETUP.npz``)
holds, for each split it uses, uint8 images ``x_SPLIT`` (N, 3, H, W), labels
``y_SPLIT``, the examples' positions in their source ``ids_SPLIT`` and groups
``g_SPLIT`` where the source has them.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np

from coar.atomic import atomic_path

log = logging.getLogger(__name__)

WNID = re.compile(r"^n\d{8}$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


class DatasetError(ValueError):
    """A dataset is missing, incomplete or not in the expected layout."""


# --- CIFAR-10 (the python tarball from the dataset's home page) ---------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles of numpy arrays: allow numpy's array rebuilders only."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")


def read_cifar10_test(tarball) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's 10,000 test images (N, 32, 32, 3) uint8 and labels, in the official order."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/test_batch")), None)
        if member is None:
            raise DatasetError(f"{tarball}: no cifar-10-batches-py/test_batch inside")
        batch = _NumpyOnlyUnpickler(io.BytesIO(tar.extractfile(member).read()), encoding="bytes")
        batch = batch.load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[b"labels"], dtype=np.int64)


# --- ImageNet validation set (provided by the user) ---------------------------------------


def check_imagenet_val(path, n_classes: int = 1000, images_per_class: int = 50) -> dict:
    """Check the class-folder layout of ImageNet val (``val/nXXXXXXXX/*.JPEG``).

    Raises DatasetError saying precisely what is missing; returns a summary.
    """
    root = Path(path)
    hint = (
        "Set config key imagenet_val.path to the ILSVRC2012 validation set in class-folder "
        "layout (one folder per WordNet id, e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG; "
        "the flat archive is sorted into folders by the usual valprep.sh)."
    )
    if not root.is_dir():
        raise DatasetError(f"ImageNet val: {root} does not exist or is not a directory. {hint}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and WNID.match(d.name))
    problems = []
    if not class_dirs:
        flat = sum(1 for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        raise DatasetError(
            f"ImageNet val: {root} has no class folders (nXXXXXXXX)"
            + (f" but {flat} images directly inside (the flat layout)" if flat else "")
            + f". {hint}"
        )
    if len(class_dirs) != n_classes:
        problems.append(f"{len(class_dirs)} class folders, expected {n_classes}")
    short = []
    for d in class_dirs:
        count = sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if count != images_per_class:
            short.append(f"{d.name} ({count})")
    if short:
        problems.append(
            f"{len(short)} class folders without exactly {images_per_class} images: "
            + ", ".join(short[:10])
            + (" ..." if len(short) > 10 else "")
        )
    if problems:
        raise DatasetError(f"ImageNet val at {root}: " + "; ".join(problems) + f". {hint}")
    return {
        "path": str(root.resolve()),
        "classes": len(class_dirs),
        "images": len(class_dirs) * images_per_class,
    }


def imagenet_val_files(path) -> tuple[list[Path], np.ndarray]:
    """Image files in (class, file name) order and their labels (index of the sorted WordNet
    ids, torchvision's class order)."""
    class_dirs = sorted(d for d in Path(path).iterdir() if d.is_dir() and WNID.match(d.name))
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        for f in sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            files.append(f)
            labels.append(label)
    return files, np.asarray(labels, dtype=np.int64)


def resize_center_crop(file, resize: int, crop: int) -> np.ndarray:
    """torchvision's evaluation transform (Resize(resize) + CenterCrop(crop)), as uint8 HWC."""
    from PIL import Image
    from torchvision.transforms import functional as F

    with Image.open(file) as image:
        image = F.center_crop(F.resize(image.convert("RGB"), resize), crop)
        return np.asarray(image, dtype=np.uint8)


# --- FFCV betons ---------------------------------------------------------------------------


def write_image_beton(path, get_image, labels, groups=None, num_workers: int = 1) -> None:
    """Write an evaluation set; ``get_image(i)`` returns image i as uint8 (H, W, 3)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    labels = np.asarray(labels, dtype=np.int64)

    class _Examples:
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            item = (get_image(i), int(labels[i]))
            return item if groups is None else (*item, int(groups[i]))

    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField()}
    if groups is not None:
        fields["group"] = IntField()
    with atomic_path(path) as tmp:
        DatasetWriter(str(tmp), fields, num_workers=num_workers).from_indexed_dataset(_Examples())


def read_image_beton(
    path, decoder: str = "simple", image_size: int | None = None, crop_ratio: float = 1.0
) -> dict[str, np.ndarray]:
    """Images (N, H, W, 3) uint8, labels and (if present) groups of a beton, in order.

    ``decoder`` is the original's: ``simple`` (stored size; all images must share it)
    or ``center_crop`` (centre crop of ``crop_ratio`` x the shorter side, resized to
    ``image_size``).
    """
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.reader import Reader
    from ffcv.transforms import ToTensor

    if not Path(path).is_file():
        raise FileNotFoundError(f"beton {path} does not exist")
    fields = Reader(str(path)).field_names
    if "image" not in fields or "label" not in fields:
        raise DatasetError(f"{path}: fields {fields}, expected 'image' and 'label'")
    if decoder == "simple":
        image_decoder = SimpleRGBImageDecoder()
    elif decoder == "center_crop":
        image_decoder = CenterCropRGBImageDecoder((image_size, image_size), crop_ratio)
    else:
        raise DatasetError(f"unknown image decoder {decoder!r} (simple, center_crop)")
    names = ["image", "label"] + (["group"] if "group" in fields else [])
    pipelines = {name: None for name in fields}
    pipelines["image"] = [image_decoder, ToTensor()]
    for name in names[1:]:
        pipelines[name] = [IntDecoder(), ToTensor()]
    loader = Loader(
        str(path),
        batch_size=256,
        num_workers=1,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines=pipelines,
    )
    columns = {name: [] for name in names}
    for batch in loader:
        for name, value in zip(names, batch, strict=True):
            columns[name].append(value.numpy().copy())
    out = {name: np.concatenate(values) for name, values in columns.items()}
    out["label"] = out["label"].reshape(-1).astype(np.int64)
    if "group" in out:
        out["group"] = out["group"].reshape(-1).astype(np.int64)
    return out


def select_every(n: int, every: int, limit: int | None = None) -> np.ndarray:
    """Positions 0, every, 2*every, ... (setup C uses every 10th image), at most `limit`."""
    ids = np.arange(0, n, every, dtype=np.int64)
    return ids if limit is None else ids[:limit]


def split_arrays(name: str, data: dict[str, np.ndarray], ids: np.ndarray) -> dict:
    """The examples file's arrays for one split (images as uint8 N, 3, H, W)."""
    out = {
        f"x_{name}": np.ascontiguousarray(data["image"][ids].transpose(0, 3, 1, 2)),
        f"y_{name}": data["label"][ids],
        f"ids_{name}": ids,
    }
    if "group" in data:
        out[f"g_{name}"] = data["group"][ids]
    return out
