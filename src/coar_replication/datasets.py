"""The paper's evaluation sets: CIFAR-10, ImageNet val (and train), the original's FFCV betons.

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


CIFAR10_BATCHES = {
    "train": [f"data_batch_{k}" for k in range(1, 6)],
    "test": ["test_batch"],
}


def read_cifar10(tarball, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's images (N, 32, 32, 3) uint8 and labels of one split, in the official
    order: ``test`` (10,000 images) or ``train`` (50,000: data_batch_1 to data_batch_5)."""
    if split not in CIFAR10_BATCHES:
        raise DatasetError(f"CIFAR-10 has no split {split!r} (splits: {sorted(CIFAR10_BATCHES)})")
    with tarfile.open(tarball, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        missing = [name for name in CIFAR10_BATCHES[split] if name not in members]
        if missing:
            raise DatasetError(f"{tarball}: no cifar-10-batches-py/{missing} inside")
        batches = [
            _NumpyOnlyUnpickler(
                io.BytesIO(tar.extractfile(members[name]).read()), encoding="bytes"
            ).load()
            for name in CIFAR10_BATCHES[split]
        ]
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


# --- ImageNet validation and training sets (provided by the user) -------------------------

IMAGENET_SETS = {
    # config key -> (what it is, example file, how the class folders are made)
    "imagenet_val": (
        "the ILSVRC2012 validation set",
        "val/n01440764/ILSVRC2012_val_00000293.JPEG",
        "the flat archive is sorted into folders by the usual valprep.sh",
    ),
    "imagenet_train": (
        "the ILSVRC2012 training set",
        "train/n01440764/n01440764_10026.JPEG",
        "ILSVRC2012_img_train.tar holds one archive per class: unpack each into its folder",
    ),
}


def check_imagenet_folders(
    path,
    n_classes: int = 1000,
    images_per_class: int = 50,
    name: str = "imagenet_val",
    at_least: bool = False,
) -> dict:
    """Check the class-folder layout of an ImageNet set (``nXXXXXXXX/*.JPEG``).

    Every class folder needs exactly ``images_per_class`` images (``at_least``: that
    many or more, of which the first ``images_per_class`` are kept). Raises
    DatasetError saying precisely what is missing; returns a summary.
    """
    if name not in IMAGENET_SETS:
        raise DatasetError(f"unknown ImageNet set {name!r} (known: {sorted(IMAGENET_SETS)})")
    what, example, how = IMAGENET_SETS[name]
    title = "ImageNet " + name.removeprefix("imagenet_")
    root = Path(path)
    hint = (
        f"Set config key {name}.path to {what} in class-folder "
        f"layout (one folder per WordNet id, e.g. {example}; {how})."
    )
    if not root.is_dir():
        raise DatasetError(f"{title}: {root} does not exist or is not a directory. {hint}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and WNID.match(d.name))
    problems = []
    if not class_dirs:
        flat = sum(1 for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        raise DatasetError(
            f"{title}: {root} has no class folders (nXXXXXXXX)"
            + (f" but {flat} images directly inside (the flat layout)" if flat else "")
            + f". {hint}"
        )
    if len(class_dirs) != n_classes:
        problems.append(f"{len(class_dirs)} class folders, expected {n_classes}")
    short = []
    for d in class_dirs:
        count = sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if count < images_per_class or (count > images_per_class and not at_least):
            short.append(f"{d.name} ({count})")
    if short:
        wanted = "at least" if at_least else "exactly"
        problems.append(
            f"{len(short)} class folders without {wanted} {images_per_class} images: "
            + ", ".join(short[:10])
            + (" ..." if len(short) > 10 else "")
        )
    if problems:
        raise DatasetError(f"{title} at {root}: " + "; ".join(problems) + f". {hint}")
    return {
        "path": str(root.resolve()),
        "classes": len(class_dirs),
        "images": len(class_dirs) * images_per_class,
    }


def check_imagenet_val(path, n_classes: int = 1000, images_per_class: int = 50) -> dict:
    """Check ImageNet val: exactly ``images_per_class`` images in each class folder."""
    return check_imagenet_folders(path, n_classes, images_per_class, "imagenet_val")


def imagenet_files(path, per_class: int | None = None) -> tuple[list[Path], np.ndarray]:
    """Image files in (class, file name) order and their labels (index of the sorted WordNet
    ids, torchvision's class order); with ``per_class``, the first ``per_class`` file names
    of each class in sorted order."""
    class_dirs = sorted(d for d in Path(path).iterdir() if d.is_dir() and WNID.match(d.name))
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        names = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in names[:per_class]:
            files.append(f)
            labels.append(label)
    return files, np.asarray(labels, dtype=np.int64)


def check_imagenet_set(name: str, cfg: dict | None) -> dict:
    """Check the ImageNet set of config key ``name``: ``imagenet_val`` needs exactly
    ``images_per_class`` images per class, ``imagenet_train`` at least ``per_class``."""
    if cfg is None:
        raise DatasetError(
            f"config key {name} is not set; setups using {name}.beton need its path "
            "(see config/config.yaml)"
        )
    if name == "imagenet_train":
        return check_imagenet_folders(
            cfg["path"], cfg["n_classes"], cfg.get("per_class", 10), name, at_least=True
        )
    return check_imagenet_folders(cfg["path"], cfg["n_classes"], cfg["images_per_class"], name)


def imagenet_set_files(name: str, cfg: dict) -> tuple[list[Path], np.ndarray]:
    """The images of config key ``name`` that go into its beton (all of val; the first
    ``per_class`` of each training class)."""
    per_class = cfg.get("per_class", 10) if name == "imagenet_train" else None
    return imagenet_files(cfg["path"], per_class)


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


def select_every(
    n: int, every: int, limit: int | None = None, start: int = 0, stop: int | None = None
) -> np.ndarray:
    """Positions start, start + every, ... below stop (default n): setup C uses every 10th
    image, the editing experiments carve validation and test parts out of one set by
    position. At most `limit` of them."""
    stop = n if stop is None else stop
    if not 0 <= start < stop <= n:
        raise DatasetError(f"positions [{start}, {stop}) do not fit a set of {n} examples")
    ids = np.arange(start, stop, every, dtype=np.int64)
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
