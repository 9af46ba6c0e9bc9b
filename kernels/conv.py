"""Exact 2-D convolution: the implicit GEMM (kernels/conv_gemm.py, shared with DrowsyNet)
for the general case, BLAS for large pointwise convs, a direct kernel for depthwise.

The GEMM shape is deliberate (DESIGN.md, DrowsyNet): dropping output channels drops
rows of the weight matrix and dropping output pixels drops columns of the patch matrix,
so masked variants stay a smaller dense problem at full SIMD speed, on the exact conv's
own engine.

Layouts: activations NCHW float32; weights as ONNX stores them, M x (C/group) x KH x KW;
``pads`` = (top, left, bottom, right).
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange
from .activation import bias_act_rows
from .conv_gemm import conv_gemm, prepare
from .parallel import matmul_rows


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    group: int,
    out_hw: tuple[int, int],
    act: int = 0,
    act_p0: float = 0.0,
    act_p1: float = 0.0,
    threads: int = 1,
    prepared: tuple | None = None,
) -> np.ndarray:
    """Exact 2-D convolution with optional fused bias and activation.

    Args:
        x: N x C x H x W input.
        w: M x C/group x KH x KW weights.
        bias: M biases or None.
        out_hw: output height and width (the caller resolves auto_pad and ceil rules).
        act, act_p0, act_p1: fused activation (see kernels.activation).
        threads: threads for the kernels.
        prepared: :func:`aipnet.kernels.conv_gemm.prepare` of ``w`` made once by the
            caller (weights that are constants), else made here when needed.
    Returns:
        N x M x OH x OW output.
    """
    n_count, c_count, h, wd = x.shape
    m_count, cg, kh, kw = w.shape
    oh, ow = out_hw
    sh, sw = strides
    pt, pl, _, _ = pads
    dh, dw = dilations
    out = np.empty((n_count, m_count, oh, ow), dtype=np.float32)
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(1, np.float32)
    depthwise = group == c_count and cg == 1 and group > 1
    if depthwise or padded_plane_too_big(kh, kw, sh, sw, dh, dw, oh, ow):
        direct(x, w, group, sh, sw, dh, dw, pt, pl, out)
        for n in range(n_count):
            bias_act_rows(out[n].reshape(m_count, oh * ow), b, has_bias, act, act_p0, act_p1)
        return out
    if engine_for(w.shape, strides, pads, out_hw) == "gemm":
        if prepared is None:
            prepared = prepare(w, group)
        conv_gemm(x, *prepared, (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), b, has_bias, act, act_p0, act_p1,
                  out.reshape(n_count, m_count, oh * ow), threads)
        return out
    # pointwise: each image's input planes are the patch matrix
    mg = m_count // group
    w2 = w.reshape(group, mg, cg)
    for n in range(n_count):
        y = out[n].reshape(m_count, oh * ow)
        for g in range(group):
            matmul_rows(w2[g], x[n, g * cg:(g + 1) * cg].reshape(cg, h * wd), y[g * mg:(g + 1) * mg], threads)
        bias_act_rows(y, b, has_bias, act, act_p0, act_p1)
    return out


#: the implicit GEMM pads each input plane to every tap of every output; from this many
#: floats a plane (e.g. huge dilations with huge pads, which read only a few of them) is
#: past the C engine's 32-bit offsets and not worth the memory: the direct kernel instead
MAX_PADDED_PLANE = 1 << 31


def padded_plane_too_big(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int, ow: int) -> bool:
    """True when the zero-padded plane that the implicit GEMM (and DrowsyNet's kernels) would
    build, every tap of every output pixel, has MAX_PADDED_PLANE floats or more."""
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    return oh > 0 and ow > 0 and hp * wp >= MAX_PADDED_PLANE


@kernel()
def direct_pixel(x, c0, w, m, oy, ox, sh, sw, dh, dw, pt, pl):
    """Output pixel (oy, ox) of output channel m before bias: its taps over input channels
    c0 .. c0 + C/group of one image x (C x H x W), with bounds checks instead of padding."""
    h, wd = x.shape[1], x.shape[2]
    cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    acc = np.float32(0.0)
    for c in range(cg):
        for i in range(kh):
            iy = oy * sh - pt + i * dh
            if iy < 0 or iy >= h:
                continue
            for j in range(kw):
                ix = ox * sw - pl + j * dw
                if 0 <= ix < wd:
                    acc += x[c0 + c, iy, ix] * w[m, c, i, j]
    return acc


@kernel(parallel=True)
def direct(x, w, group, sh, sw, dh, dw, pt, pl, out):
    """Direct convolution with bounds checks, no padded copy: depthwise convs (group == C,
    where a GEMM has nothing to share) and the rare shapes whose padded plane is too big
    (:func:`padded_plane_too_big`); bias and activation are the caller's.

    x: N x C x H x W, w: M x C/group x KH x KW, out: N x M x OH x OW.
    """
    n_count = x.shape[0]
    m_count, cg = w.shape[0], w.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    mg = m_count // group
    for t in prange(n_count * m_count):
        n = t // m_count
        m = t % m_count
        c0 = (m // mg) * cg
        for oy in range(oh):
            for ox in range(ow):
                out[n, m, oy, ox] = direct_pixel(x[n], c0, w, m, oy, ox, sh, sw, dh, dw, pt, pl)


#: 1x1 convs with stride 1 and no pads from this many output pixels on run on BLAS
POINTWISE_BLAS_PIXELS = 128


def engine_for(w_shape, strides, pads, out_hw) -> str:
    """Which exact kernel a (non-depthwise) conv runs on: "gemm" or "blas".

    w_shape: M x C/group x KH x KW. The implicit GEMM (kernels/conv_gemm.py) everywhere
    but on pointwise convs (1x1, stride 1, no pads) of POINTWISE_BLAS_PIXELS pixels or
    more: those need no im2col, BLAS multiplies the input itself, and with no window
    overlap the implicit GEMM's in-place patch reads get little reuse from cache; measured
    (1 thread, one process) at 0.9-1.2 of BLAS's time from P = 196 up (the GEMM slower
    for K = 64), 0.84-0.95 at P = 49 (BLAS packs the weights at every call).
    """
    _, _, kh, kw = w_shape
    pointwise = kh == 1 and kw == 1 and tuple(strides) == (1, 1) and tuple(pads) == (0, 0, 0, 0)
    return "blas" if pointwise and out_hw[0] * out_hw[1] >= POINTWISE_BLAS_PIXELS else "gemm"
