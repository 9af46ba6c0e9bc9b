"""`aipnet demo`: an exact run of a built-in model with its info table.

(The trade-off demo of exact vs AIP vs DrowsyNet arrives with those techniques.)
"""

from __future__ import annotations

import argparse
import time

from . import builtin
from .info import format_table, layer_table, random_feeds
from .model import load
from .session import Session


def demo(args: argparse.Namespace) -> int:
    name = args.model or ("reference" if "reference" in builtin.builtin_names() else "vggf")
    model = load(name)
    print(format_table(layer_table(model)))
    sess = Session(model, threads=args.threads)
    if name == "reference":
        from .data import load_fashion_mnist

        x, labels, source = load_fashion_mnist("test")
        x, labels = x[:1000], labels[:1000]
        sess.run(x[:1])
        t0 = time.perf_counter()
        probs = sess.run(x)
        dt = time.perf_counter() - t0
        acc = float((probs.argmax(1) == labels).mean())
        print(f"\nexact run on {len(x)} images of {source}: top-1 {acc:.4f}, {dt / len(x) * 1e3:.3f} ms/image")
    else:
        feeds = random_feeds(model)
        sess.run(feeds)
        t0 = time.perf_counter()
        sess.run(feeds)
        print(f"\nexact run of {name} on a random input: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    return 0
