/* The panel engine (conv_panels.c): a direct 2-D convolution of any subset of a layer's
 * outputs, the dense kernel of the C backend's convolutions: the exact conv (conv.c: every
 * row at every pixel, weights packed once per layer) and DrowsyNet's tile, pixel and channel
 * granularities (drowsy.c: the kept rows of each block of pixels, or the kept pixels only).
 * Not on it: depthwise convolutions and the neuron granularity (kernels of their own), and
 * the shapes panel_fits refuses (conv.c falls back to im2col + sgemm). Also the vector types
 * and the run-time AVX2 dispatch that the conv kernels share. Not part of the public API. */
#ifndef AIPN_CONV_PANELS_H
#define AIPN_CONV_PANELS_H

#include "internal.h"

/* the fused activation of one output (ACT_*) */
static inline float apply(float v, int act, float p0, float p1) {
    switch (act) {
    case ACT_RELU: return v < 0.0f ? 0.0f : v;
    case ACT_CLIP: { float r = v < p0 ? p0 : v; return r > p1 ? p1 : r; }
    case ACT_LEAKY: return v < 0.0f ? v * p1 : v;
    default: return v;
    }
}

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
#define INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DISPATCH 1
#define have_avx2 aipn_cpu_has_avx2_fma
#define AVX2_ATTR __attribute__((target("avx2,fma")))
#endif

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

/* The output pixels to compute ("slots") are cut in blocks of PANEL_BLK (the DrowsyNet tile
 * width, so that a tile is one block's rows). */
enum { PANEL_BLK = DROWSY_TILE_P, PANEL_PFMAX = 64 };
/* a block's segment: slots s0 .. s0 + n - 1, in one panel, whose taps (0, 0) lie at xpad
 * offsets b0, b0 + 1, ... (consecutive pixels of one output row; int32 offsets: a channel
 * plane Hp x pitch < 2^31 floats) */
typedef struct pseg { int32_t b0; int16_t s0, n; } pseg;
typedef struct pitem { int32_t b, g0, g1; } pitem;   /* block b, row groups [g0, g1) */
/* a window of a block of scattered slots (PANEL_PIXELS): the 8 consecutive floats at xpad
 * offset src hold a tap of each of its slots (pixels at most 7 floats apart), idx[l] that of
 * its l-th slot; they go to panel float dst (panel j, lane l: j K 16 + l). The AVX2 gather
 * copies a block's windows in place of gathering slot by slot. */
typedef struct pwin { int32_t src, dst; uint8_t idx[8]; } pwin;

/* what the row lists hold, which sizes the scratch:
 *   PANEL_SHARED  one list for every block (rows of the whole layer, M entries): exact, channel
 *   PANEL_BLOCKS  a list per block (mg entries each): tile
 *   PANEL_PIXELS  one shared list, the slots are the kept pixels only (their sums go through
 *                 a compact buffer and are scattered to their pixels): pixel */
enum { PANEL_SHARED = 0, PANEL_BLOCKS = 1, PANEL_PIXELS = 2 };

typedef struct panel_conv {
    /* the layer (panel_bind) */
    const conv_params *cp;
    int64_t K, P, mg, kc;           /* kc: the K chunk */
    int64_t Hp, Wq, pitch;          /* the padded input's layout (panel_bind) */
    int mode;                       /* PANEL_* */
    int alias;                      /* the group's input is its own padded image (nothing to copy) */
    float *xpad;                    /* the padded input of a group (alias: unused) */
    int64_t *pix;                   /* slot -> output pixel */
    int64_t *roff;                  /* patch row r = (c, ti, tj) -> xpad offset of tap (ti, tj) of channel c */
    uint8_t *lead;                  /* patch row r: the first tap of its stride phase in its kernel row */
    int64_t pfext;                  /* how far the taps of a phase reach past its first one (floats) */
    int32_t *base;                  /* slot -> xpad offset of its tap (0, 0), -1 past the last block's end */
    pseg *segs; int32_t *nsegs, *bw;   /* block b: segs + b PANEL_BLK, nsegs[b], bw[b] slots */
    int32_t *pfo, *npfo;            /* block b: its input's lines, npfo[b] offsets at pfo + b PANEL_PFMAX */
    pwin *wins; int32_t *nwins;     /* PANEL_PIXELS, block b: nwins[b] windows at wins + b PANEL_BLK (0: none) */
    float *cols; int64_t room;      /* the blocks' panels (room: for that many panels of K x 16) */
    int32_t *rowbuf;                /* room for the row lists */
    int32_t *nkept;                 /* block b's kept rows (set by the caller) */
    pitem *items; int64_t *istart;  /* the work items of a run */
    float *cbuf;                    /* PANEL_PIXELS: the compact partial sums, else NULL */
    /* the slots (panel_slots): pix[0 .. nslot) in nblk blocks */
    int64_t nslot, nblk;
    /* one run (set by the caller): block b's output rows (of the whole layer) are
     * rows + b rstride, its nkept[b] kept ones first, the others zeroed (PANEL_PIXELS: every
     * row is kept and the pixels that are not slots are zeroed) */
    const int32_t *rows; int64_t rstride;
    const float *x;                 /* the group's input channels (C/group x H x W) */
    const float *w, *bias;          /* all weights (M x K), the biases (M) or NULL */
    const float *wpack;             /* or NULL: the group's weights packed by gemm_pack_a (rows must
                                     * then be row0 .. row0 + mg - 1 in order, all kept) */
    float *y;                       /* the image's output (M x P) */
    int64_t row0;                   /* the group's first output row */
    int act; float p0, p1, scale;   /* computed outputs: act(acc + bias) * scale */
} panel_conv;

/* 0 when the engine cannot take the shape (a plane past int32 offsets, nothing to compute) */
int panel_fits(const conv_params *cp);
/* bytes of the engine's scratch (64-byte aligned regions) */
size_t panel_scratch_bytes(const conv_params *cp, int mode);
/* the regions of scratch (64-byte aligned) bound to pc, its geometry and patch row offsets */
void panel_bind(const conv_params *cp, int mode, void *scratch, panel_conv *pc);
/* the slots: pix[0 .. nslot) (ascending pixels, set by the caller) cut in blocks (of PANEL_BLK
 * slots but the last, which has up to PANEL_BLK + 16 in PANEL_SHARED mode) */
void panel_slots(panel_conv *pc, int64_t nslot);
/* one image and group in one pool pass: every output of rows row0 .. row0 + mg - 1 written
 * (rows and nkept as above); returns the outputs computed */
uint64_t panel_run(pool *p, panel_conv *pc);

#endif
