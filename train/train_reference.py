"""Train aipnet's reference CNN on Fashion-MNIST (CPU, PyTorch) and export it to ONNX.

The model is shaped like VGG-f (Chatfield et al., 2014) scaled down to 1 x 28 x 28
inputs: four convolutions with ReLU, local response normalisation after the first two,
max pooling, then two wide fully-connected layers (ReLU, dropout 0.5 in training), then
a 10-way FC and a softmax. The wide FC layers are what aipnet's AIP technique
approximates, and they were trained with dropout, as the technique assumes.

With ``--conv-dropout P`` the conv layers are also trained with dropout of their outputs
shaped like DrowsyNet's inference-stage dropout (``ConvDropout``): each minibatch, each
conv layer draws a rate uniformly from [0, P] and one of DrowsyNet's granularities
(neuron, pixel, channel, tile), with a fresh mask per image and survivors scaled by
1/(1-p), so that the exported network tolerates the drop rates ``aipnet tune`` picks.
The dropout lives inside the ReLU modules and exports as a plain ``Relu``, so the ONNX
node names do not change. ``--init`` starts from the weights of an earlier export (the
shipped model was made this way: 8 epochs without, then a conv-dropout fine-tune).

Outputs:

- ``--out`` (default ``engine/models/reference.onnx``): the ONNX graph, input
  ``"input"`` float32 ``[N, 1, 28, 28]`` (dynamic batch), output ``"probs"`` float32
  ``[N, 10]`` (softmax probabilities);
- the same path with ``.json``: architecture, training settings, wall time and top-1 /
  top-5 accuracy measured with onnxruntime on the exported file, on the full test split
  and on the shipped 1,000-image subset.

Usage::

    python train/train_reference.py [--epochs 8] [--threads 2] [--out engine/models/reference.onnx]
    python train/train_reference.py --init engine/models/reference.onnx --conv-dropout 0.7 --epochs 3 --lr 5e-4

Needs the ``train`` extra (``pip install -e .[train]``) and the full Fashion-MNIST
(``apt-get install dataset-fashion-mnist``, or ``--data FOLDER``). torch is used only
here, never by the engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

# With 2 OpenMP threads on a machine where another process holds a core, spinning
# threads make each step ~5x slower; passive waiting costs nothing when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from aipnet.data import DEFAULT_DATA_DIR, load_fashion_mnist_raw, load_subset, preprocess

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "engine" / "models" / "reference.onnx"
OPSET = 17
PREPROCESSING = (
    "x = float32(pixel) / 255.0f for each uint8 pixel of the IDX image, laid out "
    "N x 1 x 28 x 28 (NCHW); no mean subtraction or other normalisation "
    "(aipnet.data.preprocess)"
)


class _LRNExport(torch.autograd.Function):
    """Exports as one ONNX ``LRN`` node (the traced decomposition would be dozens)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # noqa: D102
        return nn.functional.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):  # noqa: D102
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    """Local response normalisation across channels, with ONNX ``LRN`` semantics:

    ``y[c] = x[c] / (k + alpha / size * sum(x[c']^2 for c' in [c - (size-1)//2, c + size//2]))^beta``

    (the same as ``nn.LocalResponseNorm``), computed with a 1x1 convolution by a 0/1
    band matrix, about twice as fast on a CPU as torch's pooling-based version.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _LRNExport.apply(x, self.size, self.alpha, self.beta, self.k)
        c = torch.arange(x.shape[1])
        lo, hi = (self.size - 1) // 2, self.size // 2
        band = ((c[None, :] >= c[:, None] - lo) & (c[None, :] <= c[:, None] + hi)).to(x.dtype)
        window_sum = nn.functional.conv2d(x * x, band[:, :, None, None])
        return x / (self.k + (self.alpha / self.size) * window_sum).pow(self.beta)


#: DrowsyNet's tile shape (aipnet.kernels.drowsy): 16 output channels x 64 output pixels
TILE_CHANNELS, TILE_PIXELS = 16, 64
GRANULARITIES = ("neuron", "pixel", "channel", "tile")


def drowsy_keep_mask(shape: torch.Size, p: float, granularity: str, gen: torch.Generator) -> torch.Tensor:
    """A float 0/1 keep mask broadcastable to an ``N x C x H x W`` conv output, one per image.

    The units are DrowsyNet's: single outputs (neuron), output pixels across all channels
    (pixel), whole channels (channel) or 16-channel x 64-pixel tiles of the row-major
    pixel order (tile).
    """
    n, c, h, w = shape
    if granularity == "neuron":
        return (torch.rand((n, c, h, w), generator=gen) >= p).float()
    if granularity == "pixel":
        return (torch.rand((n, 1, h, w), generator=gen) >= p).float()
    if granularity == "channel":
        return (torch.rand((n, c, 1, 1), generator=gen) >= p).float()
    cb, pb = -(-c // TILE_CHANNELS), -(-(h * w) // TILE_PIXELS)
    tiles = (torch.rand((n, cb, pb), generator=gen) >= p).float()
    full = tiles.repeat_interleave(TILE_CHANNELS, 1)[:, :c].repeat_interleave(TILE_PIXELS, 2)[:, :, :h * w]
    return full.reshape(n, c, h, w)


class ConvDropoutReLU(nn.ReLU):
    """ReLU, then (training only, when ``max_rate`` > 0) DrowsyNet-shaped dropout.

    Dropping after the ReLU equals DrowsyNet's zeroing of the conv output (the mask is
    applied after bias and activation there too). Each call draws ``p ~ U[0, max_rate]``
    and a granularity, so one network learns to tolerate every setting the tuner may
    pick per layer. In eval mode and in ONNX export it is exactly ``nn.ReLU``.
    """

    def __init__(self) -> None:
        super().__init__(inplace=False)
        self.max_rate = 0.0
        self.granularities: tuple[str, ...] = GRANULARITIES
        self.gen: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        if not self.training or self.max_rate <= 0.0 or self.gen is None:
            return x
        p = float(torch.rand((), generator=self.gen)) * self.max_rate
        gran = self.granularities[int(torch.randint(len(self.granularities), (), generator=self.gen))]
        return x * drowsy_keep_mask(x.shape, p, gran, self.gen) / (1.0 - p)


class ReferenceCNN(nn.Module):
    """VGG-f-shaped CNN for 1 x 28 x 28 images; ``forward`` returns logits.

    The LRN layers follow the pooling (the CaffeNet order, rather than VGG-f's
    norm-then-pool): the same operators, on a 4x smaller tensor, which makes training
    about 30% faster on a CPU. Weights use torch's default initialisation.
    """

    def __init__(self, fc_width: int = 1024, num_classes: int = 10) -> None:
        super().__init__()
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # VGG-f / AlexNet LRN
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),    # conv1: 32 x 28 x 28
            ConvDropoutReLU(),
            nn.MaxPool2d(2),                               # 32 x 14 x 14
            LRN(**lrn),
            nn.Conv2d(32, 48, kernel_size=3, padding=1),   # conv2: 48 x 14 x 14
            ConvDropoutReLU(),
            nn.MaxPool2d(2),                               # 48 x 7 x 7
            LRN(**lrn),
            nn.Conv2d(48, 96, kernel_size=3, padding=1),   # conv3: 96 x 7 x 7
            ConvDropoutReLU(),
            nn.MaxPool2d(2),                               # 96 x 3 x 3
            nn.Conv2d(96, 192, kernel_size=3, padding=1),  # conv4: 192 x 3 x 3
            ConvDropoutReLU(),
        )
        self.flat_features = 192 * 3 * 3
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, fc_width),       # fc5
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(fc_width, fc_width),                 # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(fc_width, num_classes),              # fc7
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def set_conv_dropout(self, max_rate: float, granularities: tuple[str, ...], gen: torch.Generator) -> None:
        """Turn DrowsyNet-shaped training dropout on (``max_rate`` > 0) or off in every conv."""
        for mod in self.features:
            if isinstance(mod, ConvDropoutReLU):
                mod.max_rate, mod.granularities, mod.gen = max_rate, granularities, gen


def load_onnx_weights(model: nn.Module, path: Path) -> str:
    """Copy the initialisers of an earlier export (``net.<param>`` names) into ``model``.

    Returns the file's sha256, recorded in the metadata as where the weights started.
    """
    import onnx
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if "net." + k not in inits]
    if missing:
        raise SystemExit(f"{path}: no weights for {', '.join(missing)}; is it a reference-model export?")
    for k, v in state.items():
        src = inits["net." + k]
        if tuple(src.shape) != tuple(v.shape):
            raise SystemExit(f"{path}: {k} has shape {tuple(src.shape)}, the model expects {tuple(v.shape)}")
        v.copy_(torch.from_numpy(src.copy()))
    return sha256(path)


class WithSoftmax(nn.Module):
    """The exported model: the CNN followed by a softmax over classes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.net(x))


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop (zero padding ``pad``) per image."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    h, w = x.shape[2], x.shape[3]
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_epoch(model, opt, sched, x, y, batch, gen, desc) -> tuple[float, float]:
    """One pass over (x, y) in a seeded shuffled order; returns (mean loss, accuracy)."""
    model.train()
    order = torch.randperm(len(x), generator=gen)
    loss_fn = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(0, len(x), batch), desc=desc, unit="batch", mininterval=5.0)
    for start in bar:
        idx = order[start:start + batch]
        xb, yb = augment(x[idx], gen), y[idx]
        logits = model(xb)
        loss = loss_fn(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate_torch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of the torch model (eval mode)."""
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    return correct / len(x)


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export model + softmax to ONNX with a dynamic batch axis (TorchScript exporter)."""
    wrapped = WithSoftmax(model).eval()
    dummy = torch.zeros(1, 1, 28, 28)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapped, (dummy,), str(path),
        input_names=["input"], output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
        opset_version=OPSET, do_constant_folding=True, dynamo=False,
    )


@torch.no_grad()
def check_export(model: nn.Module, path: Path, x: np.ndarray, threads: int) -> dict:
    """Compare onnxruntime on the exported file with torch on the same images."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ours = sess.run(["probs"], {"input": x})[0]
    ref = WithSoftmax(model).eval()(torch.from_numpy(x)).numpy()
    diff = float(np.abs(ours - ref).max())
    same = int((ours.argmax(1) == ref.argmax(1)).sum())
    if diff > 1e-4:
        raise SystemExit(f"export check failed: onnxruntime and torch differ by {diff:g}")
    return {"images": len(x), "max_abs_diff_probs": diff, "same_top1": same}


def topk_counts(probs: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """Number of images whose label is the top-1, and among the top-5, of ``probs``."""
    top1 = int((probs.argmax(1) == labels).sum())
    top5_idx = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    top5 = int((top5_idx == labels[:, None]).any(1).sum())
    return top1, top5


def onnx_metrics(path: Path, x: np.ndarray, y: np.ndarray, threads: int, batch: int = 500) -> dict:
    """Top-1 / top-5 of the exported ONNX file with onnxruntime."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    probs = np.concatenate([sess.run(["probs"], {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])
    top1, top5 = topk_counts(probs, y)
    return {"images": int(len(y)), "top1_correct": top1, "top5_correct": top5,
            "top1": top1 / len(y), "top5": top5 / len(y)}


def architecture(model: ReferenceCNN) -> list[dict]:
    """A per-layer summary: type, shape-defining settings, output shape, parameters."""
    layers, shape = [], (1, 28, 28)
    x = torch.zeros(1, *shape)
    for mod in list(model.features) + list(model.classifier) + [nn.Softmax(dim=1)]:
        if isinstance(mod, nn.Dropout):
            layers.append({"op": "Dropout", "p": mod.p, "note": "training only"})
            continue
        if isinstance(mod, ConvDropoutReLU) and mod.max_rate > 0:
            layers.append({"op": "ReLU", "conv_dropout_max_rate": mod.max_rate,
                           "note": "DrowsyNet-shaped dropout in training only"})
            x = torch.relu(x)
            continue
        x = mod(x)
        entry: dict = {"op": type(mod).__name__}
        if isinstance(mod, nn.Conv2d):
            entry.update(in_channels=mod.in_channels, out_channels=mod.out_channels,
                         kernel=list(mod.kernel_size), stride=list(mod.stride), padding=list(mod.padding))
        elif isinstance(mod, nn.Linear):
            entry.update(in_features=mod.in_features, out_features=mod.out_features)
        elif isinstance(mod, LRN):
            entry.update(size=mod.size, alpha=mod.alpha, beta=mod.beta, k=mod.k)
        elif isinstance(mod, nn.MaxPool2d):
            entry.update(kernel=mod.kernel_size, stride=mod.stride)
        entry["output_shape"] = list(x.shape[1:])
        n_params = sum(p.numel() for p in mod.parameters())
        if n_params:
            entry["params"] = n_params
        layers.append(entry)
    return layers


def cpu_name() -> str:
    """The CPU model, for the record of where the training time was measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def init_record(path: Path) -> dict | None:
    """The training record of the model a fine-tune starts from (its ``.json`` beside it),
    so that the metadata keeps the whole chain of runs that made the shipped weights."""
    try:
        return json.loads(path.with_suffix(".json").read_text()).get("training")
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train the aipnet reference CNN on Fashion-MNIST and export ONNX.")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write; metadata goes beside it as .json")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime (default 2)")
    ap.add_argument("--data", default=DEFAULT_DATA_DIR, help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights, data order and augmentation")
    ap.add_argument("--batch", type=int, default=128, help="minibatch size (default 128)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule (Adam)")
    ap.add_argument("--limit", type=int, default=0, help="train on only the first N images (smoke test)")
    ap.add_argument("--conv-dropout", type=float, default=0.0,
                    help="train the convs with DrowsyNet-shaped dropout at rates drawn from [0, P] (default 0: off)")
    ap.add_argument("--conv-dropout-granularities", default=",".join(GRANULARITIES),
                    help="comma-separated DrowsyNet granularities drawn in training (default: all four)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from the weights of an earlier ONNX export of this model (fine-tuning)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    xtr_u8, ytr = load_fashion_mnist_raw("train", args.data)
    xte_u8, yte = load_fashion_mnist_raw("test", args.data)
    if args.limit:
        xtr_u8, ytr = xtr_u8[:args.limit], ytr[:args.limit]
    xtr, xte = torch.from_numpy(preprocess(xtr_u8)), preprocess(xte_u8)
    ytr_t = torch.from_numpy(ytr)

    if not 0.0 <= args.conv_dropout < 1.0:
        raise SystemExit(f"--conv-dropout must be in [0, 1), got {args.conv_dropout}")
    model = ReferenceCNN()
    init_sha = load_onnx_weights(model, args.init) if args.init else None
    grans = tuple(g.strip() for g in args.conv_dropout_granularities.split(","))
    unknown = [g for g in grans if g not in GRANULARITIES]
    if unknown or not grans:
        raise SystemExit(f"--conv-dropout-granularities: unknown {unknown}; choose from {', '.join(GRANULARITIES)}")
    model.set_conv_dropout(args.conv_dropout, grans, gen)
    steps = args.epochs * math.ceil(len(xtr) / args.batch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.2)

    t0, c0 = time.perf_counter(), time.process_time()
    history = []
    for epoch in range(args.epochs):
        loss, acc = train_epoch(model, opt, sched, xtr, ytr_t, args.batch, gen, f"epoch {epoch + 1}/{args.epochs}")
        test_acc = evaluate_torch(model, torch.from_numpy(xte), torch.from_numpy(yte))
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": round(loss, 5), "train_acc": round(acc, 5),
                        "test_top1_torch": round(test_acc, 5), "elapsed_s": round(elapsed, 1)})
        print(f"epoch {epoch + 1}: loss {loss:.4f} train acc {acc:.4f} test top-1 {test_acc:.4f} "
              f"({elapsed:.0f} s elapsed)", flush=True)
    train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - c0

    export_onnx(model, args.out)
    check = check_export(model, args.out, xte[:1000], args.threads)
    print(f"export check on 1000 test images: max |onnxruntime - torch| = {check['max_abs_diff_probs']:.2e}, "
          f"same top-1 on {check['same_top1']}", flush=True)
    full = onnx_metrics(args.out, xte, yte, args.threads)
    sub_x, sub_y, _ = load_subset()
    subset = onnx_metrics(args.out, preprocess(sub_x), sub_y, args.threads)
    print(f"onnxruntime: full test top-1 {full['top1']:.4f} top-5 {full['top5']:.4f}; "
          f"subset top-1 {subset['top1']:.4f} top-5 {subset['top5']:.4f}", flush=True)

    meta = {
        "name": "aipnet reference CNN (VGG-f-shaped, Fashion-MNIST)",
        "file": args.out.name,
        "sha256": sha256(args.out),
        "input": {"name": "input", "dtype": "float32", "shape": ["N", 1, 28, 28]},
        "output": {"name": "probs", "dtype": "float32", "shape": ["N", 10], "meaning": "softmax probabilities"},
        "preprocessing": PREPROCESSING,
        "opset": OPSET,
        "export_check": check,
        "architecture": architecture(model),
        "params": sum(p.numel() for p in model.parameters()),
        "training": {
            "data": f"Fashion-MNIST train split, {len(xtr)} images",
            "seed": args.seed, "epochs": args.epochs, "batch": args.batch,
            "optimizer": "Adam", "lr_schedule": f"OneCycleLR max_lr={args.lr} pct_start=0.2",
            "augmentation": "random horizontal flip, random crop 28x28 from zero-padded 32x32",
            "conv_dropout": ({"max_rate": args.conv_dropout, "rate": "uniform on [0, max_rate] per minibatch and layer",
                              "granularities": list(grans), "rescale": "1/(1-p)"}
                             if args.conv_dropout else None),
            "init": ({"from": args.init.name, "sha256": init_sha, "training": init_record(args.init)}
                     if args.init else None),
            "loss": "cross-entropy on logits (softmax added at export)",
            "wall_time_s": round(train_s, 1), "cpu_time_s": round(train_cpu_s, 1),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "threads": args.threads,
            "torch_version": torch.__version__, "cpu": cpu_name(),
            "history": history,
        },
        "accuracy": {
            "evaluated_with": "onnxruntime on the exported file",
            "test_full": full,
            "test_subset": subset,
            "subset_file": "engine/data/fashion_mnist_subset.npz",
        },
    }
    meta_path = args.out.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {meta_path}; training took {train_s:.0f} s "
          f"({train_cpu_s:.0f} s of CPU time)")


if __name__ == "__main__":
    main()
