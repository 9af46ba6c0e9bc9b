"""Fashion-MNIST data: the IDX reader, the preprocessing the reference model expects,
and the 1,000-image subset that ships with aipnet.

The full data set comes from Debian's ``dataset-fashion-mnist`` package, which installs
the four IDX files (gzip'd) in :data:`DEFAULT_DATA_DIR`. Where it is absent, the test
split falls back to a balanced 1,000-image subset of it (100 images per class) that
ships inside the package (``engine/data/fashion_mnist_subset.npz``, made by
``train/make_subset.py``).

Preprocessing (what :func:`preprocess` does, and what a C program must do to feed the
reference model): each uint8 pixel ``p`` becomes the float32 ``(float)p / 255.0f``
(an IEEE division, correctly rounded, so C and numpy agree bit for bit), and the images
are laid out ``N x 1 x 28 x 28`` (NCHW, one channel), row-major, in the IDX file's
pixel order. There is no mean subtraction and no other normalisation.

Every problem with a data file (missing, truncated, trailing bytes, a bad header, a
corrupt gzip stream) raises :class:`aipnet.errors.DataError` whose message begins with
the file's path.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from .errors import DataError

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DATA_DIR",
    "SUBSET_PATH",
    "IMAGE_SHAPE",
    "read_idx",
    "preprocess",
    "load_fashion_mnist",
    "load_fashion_mnist_raw",
    "load_subset",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"

#: The balanced 1,000-image subset of the test split that ships with aipnet.
SUBSET_PATH = Path(__file__).resolve().parent / "data" / "fashion_mnist_subset.npz"

#: The ten Fashion-MNIST classes, indexed by label.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Height and width of a Fashion-MNIST image.
IMAGE_SHAPE = (28, 28)

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

# File names of each split in the Debian package (and in the original distribution).
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _read_upto(f: BinaryIO, n: int) -> bytes:
    """Read at most ``n`` bytes, fewer only at end of file (chunked, so a corrupt
    header that claims a huge size cannot make us allocate it up front)."""
    parts = []
    left = n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _parse_idx(f: BinaryIO, name: str) -> np.ndarray:
    """Parse an IDX stream; errors name ``name``."""
    magic = _read_upto(f, 4)
    if len(magic) < 4:
        raise DataError(f"{name}: truncated: expected a 4-byte IDX header, found {len(magic)} bytes")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{name}: not an IDX file: bad magic number 0x{magic.hex()} "
            "(expected 0x0000 followed by a type code and the number of dimensions)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise DataError(f"{name}: unknown IDX data type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{name}: IDX header gives 0 dimensions")
    raw_dims = _read_upto(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{name}: truncated: expected {4 * ndim} bytes of dimension sizes "
            f"for {ndim} dimensions, found {len(raw_dims)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = _IDX_DTYPES[code]
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    payload = _read_upto(f, expected)
    if len(payload) < expected:
        raise DataError(
            f"{name}: truncated: expected {expected} bytes of data, found {len(payload)} "
            f"(shape {'x'.join(map(str, dims))}, {dtype.itemsize} byte(s) each)"
        )
    extra = _read_upto(f, 1)
    if extra:
        raise DataError(
            f"{name}: trailing bytes after the {expected} bytes of data "
            f"the header declares (shape {'x'.join(map(str, dims))})"
        )
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions ``n``, then ``n``
    big-endian uint32 sizes, then the big-endian data in row-major order. Compression is
    detected from the content (the gzip magic number), not the file name.

    Args:
        path: the file to read.

    Returns:
        An array of the declared shape in native byte order (e.g. uint8 ``N x 28 x 28``
        for Fashion-MNIST images, uint8 ``N`` for labels).

    Raises:
        DataError: the file is missing or unreadable, its gzip stream is corrupt, its
            header is invalid, or its payload is shorter or longer than the header's
            dimensions say. The message begins with the path.
    """
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot open: {e.strerror or e}") from None
    with f:
        try:
            head = f.read(2)
            f.seek(0)
        except OSError as e:
            raise DataError(f"{name}: cannot read: {e.strerror or e}") from None
        if head == _GZIP_MAGIC:
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    return _parse_idx(g, name)
            except DataError:
                raise
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"{name}: corrupt gzip stream: {e}") from None
        try:
            return _parse_idx(f, name)
        except OSError as e:
            raise DataError(f"{name}: cannot read: {e.strerror or e}") from None


def preprocess(images: np.ndarray) -> np.ndarray:
    """Turn uint8 Fashion-MNIST images into the reference model's input.

    ``x = float32(p) / 255.0f`` per pixel, shaped ``N x 1 x 28 x 28`` (NCHW). No mean
    subtraction or other normalisation.

    Args:
        images: uint8 array ``N x 28 x 28`` or ``N x 1 x 28 x 28``.

    Returns:
        A C-contiguous float32 array ``N x 1 x 28 x 28`` with values in ``[0, 1]``.

    Raises:
        DataError: the array is not uint8 or not of one of those shapes.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"preprocess: expected uint8 images, got {images.dtype}")
    if images.ndim == 3 and images.shape[1:] == IMAGE_SHAPE:
        images = images[:, None, :, :]
    if images.ndim != 4 or images.shape[1:] != (1, *IMAGE_SHAPE):
        raise DataError(
            f"preprocess: expected images of shape N x 28 x 28 or N x 1 x 28 x 28, got {images.shape}"
        )
    return np.ascontiguousarray(images.astype(np.float32) / np.float32(255.0))


def _find(data_dir: Path, stem: str) -> Path | None:
    """The gzip'd or plain file ``stem`` in ``data_dir``, or None."""
    for cand in (data_dir / f"{stem}.gz", data_dir / stem):
        if cand.is_file():
            return cand
    return None


def _split_files(split: str, data_dir: Path) -> tuple[Path | None, Path | None]:
    prefix = _SPLIT_PREFIX[split]
    return (
        _find(data_dir, f"{prefix}-images-idx3-ubyte"),
        _find(data_dir, f"{prefix}-labels-idx1-ubyte"),
    )


def _check_split(split: str) -> None:
    if split not in _SPLIT_PREFIX:
        raise DataError(f"unknown Fashion-MNIST split {split!r} (expected 'train' or 'test')")


def _validate(images: np.ndarray, labels: np.ndarray, img_name: str, lab_name: str) -> None:
    """Check that an images/labels pair is Fashion-MNIST-shaped and consistent."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{img_name}: expected uint8 images N x 28 x 28, found {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{lab_name}: expected a 1-D integer label array, found {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(
            f"{lab_name}: {len(labels)} labels for {len(images)} images in {img_name}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{lab_name}: labels outside 0..{len(CLASS_NAMES) - 1}")


def load_fashion_mnist_raw(split: str = "test", data_dir: PathLike = DEFAULT_DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the full Fashion-MNIST data from IDX files, unpreprocessed.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    Returns:
        ``(images, labels)``: uint8 ``N x 28 x 28`` and int64 ``N``.

    Raises:
        DataError: an unknown split, missing files, or a bad file.
    """
    _check_split(split)
    d = Path(data_dir)
    img_path, lab_path = _split_files(split, d)
    prefix = _SPLIT_PREFIX[split]
    for got, stem in ((img_path, f"{prefix}-images-idx3-ubyte"), (lab_path, f"{prefix}-labels-idx1-ubyte")):
        if got is None:
            raise DataError(
                f"{d / (stem + '.gz')}: no such file (nor an uncompressed {stem}); "
                "install the full data with 'apt-get install dataset-fashion-mnist' "
                "or point --data at a folder holding the Fashion-MNIST IDX files"
            )
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    _validate(images, labels, str(img_path), str(lab_path))
    return images, labels.astype(np.int64)


def load_subset() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load the shipped balanced subset of the Fashion-MNIST test split.

    1,000 images, 100 per class, chosen with a fixed seed by ``train/make_subset.py``.

    Returns:
        ``(images, labels, indices)``: uint8 ``1000 x 28 x 28``, int64 labels, and the
        int64 positions of those images in the full 10,000-image test split.

    Raises:
        DataError: the subset file is missing or corrupt.
    """
    name = str(SUBSET_PATH)
    try:
        with np.load(name, allow_pickle=False) as z:
            images, labels, indices = z["images"], z["labels"], z["indices"]
    except FileNotFoundError:
        raise DataError(f"{name}: no such file (the shipped Fashion-MNIST subset is missing)") from None
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise DataError(f"{name}: corrupt subset file: {e}") from None
    _validate(images, labels, name, name)
    if indices.shape != labels.shape:
        raise DataError(f"{name}: {len(indices)} indices for {len(labels)} images")
    return images, labels.astype(np.int64), indices.astype(np.int64)


def load_fashion_mnist(
    split: str = "test", data_dir: PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Load Fashion-MNIST, preprocessed for the reference model.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: a folder holding the IDX files. ``None`` means
            :data:`DEFAULT_DATA_DIR` if it holds the split's files, else (test split
            only) the shipped 1,000-image subset. An explicit folder that lacks the
            files is an error, never a silent fallback.

    Returns:
        ``(images, labels, source)``: float32 ``N x 1 x 28 x 28`` (see
        :func:`preprocess`), int64 labels, and a one-line description of where the
        data came from.

    Raises:
        DataError: an unknown split, missing or bad files, or the train split asked
            for without the full data set.
    """
    _check_split(split)
    if data_dir is not None:
        images, labels = load_fashion_mnist_raw(split, data_dir)
        return preprocess(images), labels, f"Fashion-MNIST {split} split, {len(labels)} images, from {data_dir}"
    img_path, lab_path = _split_files(split, Path(DEFAULT_DATA_DIR))
    if img_path is not None and lab_path is not None:
        images, labels = load_fashion_mnist_raw(split, DEFAULT_DATA_DIR)
        return (
            preprocess(images),
            labels,
            f"Fashion-MNIST {split} split, {len(labels)} images, from {DEFAULT_DATA_DIR}",
        )
    if split != "test":
        raise DataError(
            f"{DEFAULT_DATA_DIR}: the Fashion-MNIST {split} split is not installed and only the "
            "test split ships (as a subset); install it with 'apt-get install dataset-fashion-mnist' "
            "or pass --data FOLDER holding the IDX files"
        )
    images, labels, _ = load_subset()
    return (
        preprocess(images),
        labels,
        f"shipped balanced subset of the Fashion-MNIST test split ({len(labels)} images, "
        f"{SUBSET_PATH.name}); the full data set is not installed at {DEFAULT_DATA_DIR} "
        "('apt-get install dataset-fashion-mnist')",
    )
