"""Make the balanced Fashion-MNIST test subset that ships with aipnet.

Picks 100 images of each class from the 10,000-image test split with a fixed seed and
writes ``engine/data/fashion_mnist_subset.npz`` (compressed) holding:

- ``images``: uint8, 1000 x 28 x 28, in the order of ``indices``;
- ``labels``: int64, 1000;
- ``indices``: int64, 1000, the positions of the images in the test split, sorted.

Usage::

    python train/make_subset.py [--data /usr/share/datasets/fashion-mnist] [--out PATH]

The same seed and data always give the same file contents.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aipnet.data import CLASS_NAMES, DEFAULT_DATA_DIR, SUBSET_PATH, load_fashion_mnist_raw

SEED = 20240601
PER_CLASS = 100


def choose_indices(labels: np.ndarray, per_class: int = PER_CLASS, seed: int = SEED) -> np.ndarray:
    """Pick ``per_class`` indices of each label at random (seeded), return them sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(len(CLASS_NAMES)):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise SystemExit(f"class {c} has only {len(pool)} test images, need {per_class}")
        chosen.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA_DIR, help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--out", default=str(SUBSET_PATH), help="output .npz file")
    args = ap.parse_args(argv)

    images, labels = load_fashion_mnist_raw("test", args.data)
    idx = choose_indices(labels)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images[idx], labels=labels[idx].astype(np.int64), indices=idx)
    counts = np.bincount(labels[idx], minlength=len(CLASS_NAMES))
    print(f"wrote {out} ({out.stat().st_size} bytes): {len(idx)} images, per class {counts.tolist()}")


if __name__ == "__main__":
    main()
