"""Progress bars for long work (tqdm on stderr; silent when not wanted)."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    return tqdm(total=total, desc=desc, unit="it", leave=False, disable=disable, dynamic_ncols=True)
