/* DrowsyNet (mirror of kernels/drowsy.py): the counter-based mask generator and masked
 * 2-D convolution that computes the kept outputs only.
 *
 * Masks: bit for bit the generator documented in kernels/drowsy.py (splitmix64 over
 * seed, image, layer and unit; unit numbering per granularity; 16 x 64 tiles), four units
 * at a time with AVX2. Dropped outputs are 0 whatever the fused activation; survivors are
 * act(acc + bias) * scale.
 *
 * Kernels, by granularity (each loops over kept work only):
 *   tile, pixel, channel: one panel engine (below): the patches of the pixels to compute
 *            gathered into panels of K x 16, multiplied by the weight rows to compute read
 *            in place (6 x 16 register tiles), the epilogue applied in registers:
 *              tile     per 64-pixel block, the rows of its kept tiles;
 *              pixel    blocks of the kept pixels only, every row, results scattered back
 *                       to their pixels;
 *              channel  every pixel, the kept rows only, so a dropped row costs nothing
 *                       but its zeroing;
 *   neuron   drowsy_neuron.c (eight dot products vectorised over K at a time).
 *   depthwise (group == C, one input channel per group) a direct kernel over kept outputs.
 * The inner loops are written with GCC vector extensions (SSE/AVX on x86-64, NEON on
 * AArch64) and compiled a second time with target("avx2,fma") on x86-64, chosen at run
 * time as in gemm.c; nothing assumes AVX-512. Threads: the pthread pool. */
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "drowsy_internal.h"

/* -- the mask generator (kernels/drowsy.py docstring) ------------------------------------ */
#define GAMMA 0x9E3779B97F4A7C15ULL

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t drowsy_key(uint64_t seed, uint64_t image, uint64_t layer) {
    uint64_t k = mix64(GAMMA * (seed + 1));
    k = mix64(k ^ (GAMMA * (image + 1)));
    return mix64(k ^ (GAMMA * (layer + 1)));
}

uint32_t drowsy_threshold(double p) {
    if (!(p > 0.0)) return 0;
    if (p >= 1.0) return 1u << 24;
    return (uint32_t)floor(p * 16777216.0);
}

int64_t drowsy_unit_count(int gran, int64_t m, int64_t p) {
    switch (gran) {
    case DROWSY_NEURON: return m * p;
    case DROWSY_PIXEL: return p;
    case DROWSY_CHANNEL: return m;
    default: return ((m + DROWSY_TILE_C - 1) / DROWSY_TILE_C) * ((p + DROWSY_TILE_P - 1) / DROWSY_TILE_P);
    }
}

typedef struct units_job { uint64_t key; uint32_t thr; uint8_t *keep; } units_job;

INLINE void units_scalar(const units_job *j, int64_t b, int64_t e) {
    for (int64_t u = b; u < e; u++) j->keep[u] = (mix64(j->key ^ (GAMMA * ((uint64_t)u + 1))) >> 40) >= j->thr;
}

#ifdef HAVE_DISPATCH
/* the same bits four units at a time. AVX2 has no 64-bit multiply: the low 64 bits of
 * z c are zl cl + ((zl ch + zh cl) << 32) from 32 x 32 -> 64-bit products */
AVX2_ATTR INLINE __m256i mul64_by(__m256i z, uint64_t c) {
    __m256i cl = _mm256_set1_epi64x((int64_t)(c & 0xffffffffu)), ch = _mm256_set1_epi64x((int64_t)(c >> 32));
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(z, ch), _mm256_mul_epu32(_mm256_srli_epi64(z, 32), cl));
    return _mm256_add_epi64(_mm256_mul_epu32(z, cl), _mm256_slli_epi64(cross, 32));
}
AVX2_ATTR static void units_avx2(const units_job *j, int64_t b, int64_t e) {
    /* lane l: unit u = b + l, then + 4 per step; GAMMA (u + 1) advances by 4 GAMMA */
    __m256i g = _mm256_set_epi64x((int64_t)(GAMMA * (uint64_t)(b + 4)), (int64_t)(GAMMA * (uint64_t)(b + 3)),
                                  (int64_t)(GAMMA * (uint64_t)(b + 2)), (int64_t)(GAMMA * (uint64_t)(b + 1)));
    __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * GAMMA)), key = _mm256_set1_epi64x((int64_t)j->key);
    __m256i thr = _mm256_set1_epi64x((int64_t)j->thr - 1);   /* h >= thr: h > thr - 1 (h < 2^24, signed compare) */
    int64_t u = b;
    for (; u + 4 <= e; u += 4, g = _mm256_add_epi64(g, g4)) {
        __m256i z = _mm256_xor_si256(key, g);
        z = mul64_by(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
        z = mul64_by(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
        z = _mm256_srli_epi64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 31)), 40);
        uint32_t m = (uint32_t)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(z, thr)));
        uint32_t v = (m & 1) | (m & 2) << 7 | (m & 4) << 14 | (m & 8) << 21;   /* byte l = bit l (x86: little endian) */
        memcpy(j->keep + u, &v, 4);
    }
    units_scalar(j, u, e);
}
#endif

static void units_task(void *ctx, int64_t b, int64_t e) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) { units_avx2(ctx, b, e); return; }
#endif
    units_scalar(ctx, b, e);
}

void drowsy_keep_units(pool *p, uint64_t key, uint32_t thr, uint8_t *keep, int64_t n) {
    units_job j = {key, thr, keep};
    pool_for(p, n, 4096, units_task, &j);
}

/* -- the panel engine (tile, pixel, channel) --------------------------------------------- */
/* The pixels to compute ("slots") are cut in blocks of BLK = 64; the patches of a block are
 * gathered from the padded input (conv_pad_input, conv.c: every tap of every output pixel
 * inside it, no bounds checks) into up to 4 panels of K x 16 (16 slots a k, the B operand).
 * The weights are not packed: a 6 x 16 micro-kernel broadcasts its A operand from six
 * weight rows read in place through row pointers, so any subset of rows (the kept channels,
 * the rows of the kept tiles) is computed without copying them. Each block has a list of
 * output rows, the kept ones first (computed in groups of at most 6), then the dropped
 * ones (zeroed). One item = a block x a range of row groups, K in chunks of gemm_kstep(K)
 * (both operands of a chunk stay in L1 / L2, as in the exact GEMM), the partial sums
 * accumulated in place and act(acc + bias) * scale applied in registers by the last chunk;
 * a narrow last panel (at most 8 pixels) is computed 8 wide, two row groups at a time. Tile and channel: a block is 64 consecutive pixels, the outputs go straight to
 * y (rows x consecutive pixels) and the block's first item zeroes its dropped rows. Pixel:
 * the blocks hold the kept pixels only, partial sums go to a compact buffer (rows x slots)
 * and the last chunk scatters each panel's 16 results to their pixels, zeroing the dropped
 * pixels between them (panel j owns pixels pix[16 j] .. pix[16 j + 16] - 1), so every
 * output is written by one item and nothing is cleared beforehand. */
enum { BLK = DROWSY_TILE_P, GMAX = 16 };

/* slots s0 .. s0 + n - 1 of a block, in one panel, whose taps (0, 0) lie at xpad offsets b0,
 * b0 + sw, ... (consecutive pixels of one output row): one copy a segment (int32 offsets: a
 * channel plane Hp x Wp < 2^31 floats) */
typedef struct pseg { int32_t b0; int16_t s0, n; } pseg;
typedef struct pitem { int32_t b, g0, g1; } pitem;   /* block b, row groups [g0, g1) */

/* the last K chunk's epilogue: act(v + bias[i]) * scale */
typedef struct ukepi { float bias[12]; int act; float p0, p1, scale; } ukepi;
struct ukset;   /* the micro-kernels of one ISA (below) */
struct pjob;
/* a micro-kernel (below) */
typedef void (*ukfn)(int64_t kc, const float *const *a, const float *b, float *const *c, int64_t nr, int first,
                     const ukepi *e);

/* a phase of a pass: n units, how many have finished, what one does (see run_panels) */
typedef struct pphase {
    int64_t n, finished;
    uint64_t (*fn)(struct pjob *, int64_t u, const struct ukset *, int64_t tid);
} pphase;

/* a run of consecutive blocks b0 .. b0 + n - 1 (claim_block): claims so far, blocks taken
 * from each end */
enum { BRUNS = 16 };
typedef struct brun { int64_t b0, n, taken, front, back; } brun;

typedef struct pjob {
    const djob *d;
    const float *w;                        /* all weights, M x K */
    float *xpad; int64_t Hp, Wp;           /* this group's padded input: channel planes of Hp rows of Wp */
    const int64_t *pix;                    /* slot -> output pixel */
    const pseg *segs; const int32_t *nsegs, *bw;   /* block b: segs + b BLK, nsegs[b], bw[b] valid slots */
    const int32_t *base;                   /* slot -> xpad offset of its tap (0, 0), -1 past the last block's end */
    const int64_t *roff;                   /* patch row r = (c, ti, tj) -> xpad offset of tap (ti, tj) of channel c */
    float *cols;                           /* block b: panel j at cols + (4 b + j) K 16 */
    const int32_t *rows; int64_t rstride;  /* block b's output rows: rows + b rstride, kept first */
    const int32_t *nkept;                  /* kept rows of block b */
    const pitem *items; const int64_t *istart;   /* block b: items istart[b] .. istart[b + 1] - 1 */
    float *cbuf; int64_t ldc;              /* pixel: partial sums (row - row0) ldc + slot, else NULL */
    int64_t npix, kc;                      /* slots in all (pixel: the kept pixels); K chunk */
    uint64_t *done;
    /* the pass (run_panels): its phases, the next unit to take */
    pphase ph[3];
    int nphase;
    brun brun[BRUNS]; int64_t nbrun;       /* whole blocks: the runs (claim_block) */
    int64_t next, ntid;                    /* ntid: threads in the pass so far (each takes tid = ntid++) */
} pjob;

/* -- gathers ---- */
/* Rows [r0, r1) of block b's panels, RC patch rows at a time (their panel lines stay in L1).
 * A block of long segments (consecutive pixels: tile, channel) is copied segment by segment:
 * every store lies inside its segment (8 floats at a time, the last 8 overlapping the
 * previous ones; scalar below 8), so the panel rows are written once, in place, with
 * nothing to mend afterwards; taps 8 at a time: unit stride a load, strides 2 and 4 loads
 * and shuffles (they read up to 3 floats past the last tap: xpad has slack), others a
 * hardware gather (AVX2) or scalars. A block of short ones (scattered kept pixels) is
 * gathered slot by slot, 16 at a time, from each slot's offset (-1 past the block: 0).
 * Segments are a few floats long, so the copies stay inline (no memcpy calls). */
enum { RC = 8 };
#if defined(__clang__)
#define NO_MEMCPY __attribute__((no_builtin("memcpy", "memset")))
#else
#define NO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
INLINE void copy8_base(float *d, const float *s, int64_t sw) {
    if (sw == 1) *(v8u *)d = *(const v8u *)s;
    else for (int t = 0; t < 8; t++) d[t] = s[t * sw];
}
#ifdef HAVE_DISPATCH
AVX2_ATTR INLINE __m256 load8_avx2(const float *s, int64_t sw) {
    switch (sw) {
    case 1: return _mm256_loadu_ps(s);
    case 2: {   /* s[0, 2, .., 14]: even lanes of two vectors, 64-bit pairs back in order */
        __m256 u = _mm256_shuffle_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + 8), 0x88);
        return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(u), 0xD8));
    }
    case 4: {   /* s[0, 4, .., 28]: lanes 0 and 4 of four vectors */
        __m256 t01 = _mm256_shuffle_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + 8), 0x00);
        __m256 t23 = _mm256_shuffle_ps(_mm256_loadu_ps(s + 16), _mm256_loadu_ps(s + 24), 0x00);
        __m256 u = _mm256_shuffle_ps(t01, t23, 0x88);
        return _mm256_permutevar8x32_ps(u, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    }
    default: {
        __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sw));
        return _mm256_i32gather_ps(s, idx, 4);
    }
    }
}
AVX2_ATTR INLINE void copy8_avx2(float *d, const float *s, int64_t sw) { _mm256_storeu_ps(d, load8_avx2(s, sw)); }
#endif

#define DEFINE_GATHER(NAME, ATTR, COPY8, GATHER16)                                                 \
    NO_MEMCPY ATTR static void NAME(const pjob *pj, int64_t b, float *panel, int64_t r0, int64_t r1) { \
        int64_t K = pj->d->K, bw = pj->bw[b], nseg = pj->nsegs[b], sw = pj->d->cp->sw;             \
        const pseg *sg = pj->segs + b * BLK;                                                       \
        const int32_t *bs = pj->base + b * BLK;                                                    \
        float *last = panel + (bw - 1) / 16 * K * 16;                                              \
        int slots = 4 * nseg > bw;   /* segments shorter than 4 on average */                      \
        for (int64_t ra = r0; ra < r1; ra += RC) {                                                 \
            int64_t rb = ra + RC < r1 ? ra + RC : r1;                                              \
            if (slots)                                                                             \
                for (int64_t j = 0; j * 16 < bw; j++)                                              \
                    for (int64_t r = ra; r < rb; r++)                                              \
                        GATHER16(panel + j * K * 16 + r * 16, pj->xpad + pj->roff[r], bs + 16 * j); \
            else {                                                                                 \
                for (int64_t q = 0; q < nseg; q++) {                                               \
                    const float *s = pj->xpad + sg[q].b0;                                          \
                    float *d = panel + (sg[q].s0 >> 4) * K * 16 + (sg[q].s0 & 15);                 \
                    int64_t n = sg[q].n;                                                           \
                    for (int64_t r = ra; r < rb; r++) {                                            \
                        const float *sr = s + pj->roff[r];                                         \
                        float *dr = d + r * 16;                                                    \
                        if (n >= 8) {                                                              \
                            for (int64_t t = 0; t + 8 < n; t += 8) COPY8(dr + t, sr + t * sw, sw); \
                            COPY8(dr + n - 8, sr + (n - 8) * sw, sw);                              \
                        } else                                                                     \
                            for (int64_t t = 0; t < n; t++) dr[t] = sr[t * sw];                    \
                    }                                                                              \
                }                                                                                  \
                for (int64_t r = ra; r < rb; r++)                                                  \
                    for (int64_t l = (bw - 1) % 16 + 1; l < 16; l++) last[r * 16 + l] = 0.0f;      \
            }                                                                                      \
        }                                                                                          \
    }
INLINE void gather16_base(float *d, const float *xr, const int32_t *bs) {
    for (int t = 0; t < 16; t++) d[t] = bs[t] >= 0 ? xr[bs[t]] : 0.0f;
}
#ifdef HAVE_DISPATCH
/* masked hardware gathers: empty slots (-1) load nothing and give 0 */
AVX2_ATTR INLINE void gather16_avx2(float *d, const float *xr, const int32_t *bs) {
    __m256i i0 = _mm256_loadu_si256((const __m256i *)bs), i1 = _mm256_loadu_si256((const __m256i *)(bs + 8));
    __m256i neg = _mm256_set1_epi32(-1);
    __m256 m0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, neg)), m1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, neg));
    _mm256_store_ps(d, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i0, m0, 4));
    _mm256_store_ps(d + 8, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i1, m1, 4));
}
#endif
DEFINE_GATHER(gather_base, , copy8_base, gather16_base)
#ifdef HAVE_DISPATCH
DEFINE_GATHER(gather_avx2, AVX2_ATTR, copy8_avx2, gather16_avx2)
#endif

/* rows [r0, r1) of block b's panels, into panel (4 panels of K x 16) */
static void gather_block(const pjob *pj, int64_t b, float *panel, int64_t r0, int64_t r1) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) { gather_avx2(pj, b, panel, r0, r1); return; }
#endif
    gather_base(pj, b, panel, r0, r1);
}

/* the offsets of a block's slots px[0 .. bw) (ascending; -1 up to the end of its last panel)
 * and their segments: consecutive pixels of one output row within one panel. The output
 * coordinates are stepped from pixel to pixel (no divisions: this runs once a call). */
static int32_t block_segs(const conv_params *cp, int64_t Wp, const int64_t *px, int64_t bw, int32_t *base, pseg *sg) {
    int32_t n = 0;
    int64_t oy = px[0] / cp->ow, ox = px[0] % cp->ow;
    for (int64_t s = 0; s < bw; s++) {
        if (s) for (ox += px[s] - px[s - 1]; ox >= cp->ow; ox -= cp->ow) oy++;
        base[s] = (int32_t)(oy * cp->sh * Wp + ox * cp->sw);
        if (n && s % 16 && ox && px[s - 1] == px[s] - 1) sg[n - 1].n++;
        else sg[n++] = (pseg){base[s], (int16_t)s, 1};
    }
    for (int64_t s = bw; s % 16; s++) base[s] = -1;
    return n;
}

/* -- micro-kernels ---- */

typedef int v8i __attribute__((vector_size(32)));
/* m ? a : b lane by lane (m from a comparison) */
#define SEL8(m, a, b) ((v8)(((v8i)(a) & (m)) | ((v8i)(b) & ~(m))))
/* apply() on 8 lanes, the same comparisons, then the scale; in place */
INLINE void epi8(v8 *v, const ukepi *e, int i) {
    v8 z = {0}, u = *v + e->bias[i];
    switch (e->act) {
    case ACT_RELU: u = SEL8(u < z, z, u); break;
    case ACT_CLIP: u = SEL8(u < z + e->p0, z + e->p0, u); u = SEL8(u > z + e->p1, z + e->p1, u); break;
    case ACT_LEAKY: u = SEL8(u < z, u * e->p1, u); break;
    default: break;
    }
    *v = u * e->scale;
}

/* row i of a micro-tile, v[0 .. nv) its 8 nv sums: c[0 .. nr) = (first ? 0 : c) + v, then the
 * epilogue when e */
INLINE void uk_row(v8 *v, int nv, float *c, int64_t nr, int first, const ukepi *e, int i) {
    if (nr == 8 * nv) {
        for (int h = 0; h < nv; h++) {
            if (!first) v[h] += *(const v8u *)(c + 8 * h);
            if (e) epi8(v + h, e, i);
            *(v8u *)(c + 8 * h) = v[h];
        }
        return;
    }
    const float *t = (const float *)v;
    for (int64_t l = 0; l < nr; l++) {
        float u = first ? t[l] : c[l] + t[l];
        c[l] = e ? apply(u + e->bias[i], e->act, e->p0, e->p1) * e->scale : u;
    }
}
/* c[i][0 .. nr) (+)= sum_k a[i][k] b[16 k + 0 .. 15] for rows i < R (R = 1 .. 6); named
 * accumulators (GCC keeps arrays of them in memory) and rows past R compiled out */
#define UK_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define UK_OUT(i)                                                                                  \
    if (NROWS > i) {                                                                               \
        v8 v[2] = {(v8)s##i##0, (v8)s##i##1};                                                      \
        uk_row(v, 2, c[i], nr, first, e, i);                                                       \
    }
/* VT: the accumulator type, ZERO, LOADB(p), BCAST(p), FMA(a, b, c) = a b + c */
#define DEFINE_UK(NAME, R, ATTR, VT, ZERO, LOADB, BCAST, FMA)                                      \
    ATTR static void NAME(int64_t kc, const float *const *a, const float *b, float *const *c, int64_t nr, \
                          int first, const ukepi *e) {                                             \
        enum { NROWS = R };                                                                        \
        const float *a0 = a[0], *a1 = a[R > 1], *a2 = a[2 * (R > 2)], *a3 = a[3 * (R > 3)];        \
        const float *a4 = a[4 * (R > 4)], *a5 = a[5 * (R > 5)];                                    \
        VT s00 = ZERO, s01 = ZERO, s10 = ZERO, s11 = ZERO, s20 = ZERO, s21 = ZERO;                 \
        VT s30 = ZERO, s31 = ZERO, s40 = ZERO, s41 = ZERO, s50 = ZERO, s51 = ZERO;                 \
        for (int64_t k = 0; k < kc; k++, b += 16) {                                                \
            VT b0 = LOADB(b), b1 = LOADB(b + 8), t;                                                \
            t = BCAST(a0 + k); s00 = FMA(t, b0, s00); s01 = FMA(t, b1, s01);                       \
            if (R > 1) { t = BCAST(a1 + k); s10 = FMA(t, b0, s10); s11 = FMA(t, b1, s11); }        \
            if (R > 2) { t = BCAST(a2 + k); s20 = FMA(t, b0, s20); s21 = FMA(t, b1, s21); }        \
            if (R > 3) { t = BCAST(a3 + k); s30 = FMA(t, b0, s30); s31 = FMA(t, b1, s31); }        \
            if (R > 4) { t = BCAST(a4 + k); s40 = FMA(t, b0, s40); s41 = FMA(t, b1, s41); }        \
            if (R > 5) { t = BCAST(a5 + k); s50 = FMA(t, b0, s50); s51 = FMA(t, b1, s51); }        \
        }                                                                                          \
        UK_ROWS(UK_OUT)                                                                            \
    }
#define V8_ZERO ((v8){0})
#define V8_LOAD(p) (*(const v8 *)(p))
#define V8_BCAST(p) ((v8){0} + *(p))
#define V8_FMA(x, y, z) ((z) + (x) * (y))
#define DEFINE_UK_BASE(NAME, R) DEFINE_UK(NAME, R, , v8, V8_ZERO, V8_LOAD, V8_BCAST, V8_FMA)
DEFINE_UK_BASE(uk1_base, 1) DEFINE_UK_BASE(uk2_base, 2) DEFINE_UK_BASE(uk3_base, 3)
DEFINE_UK_BASE(uk4_base, 4) DEFINE_UK_BASE(uk5_base, 5) DEFINE_UK_BASE(uk6_base, 6)

/* a last panel of at most 8 pixels: c[i][0 .. nr) (+)= sum_k a[i][k] b[16 k + 0 .. 7] for
 * i < mr <= 12 (two row groups: 12 accumulators of 8 lanes, the register count of the 6 x 16
 * kernel, half the work of a 16-wide panel); rows past mr repeat row 0, not stored */
typedef void (*ukhfn)(int64_t kc, int64_t mr, const float *const *a, const float *b, float *const *c, int64_t nr,
                      int first, const ukepi *e);
#define UKH_OUT(i, S)                                                                              \
    if (i < mr) {                                                                                  \
        v8 v = (v8)S;                                                                              \
        uk_row(&v, 1, c[i], nr, first, e, i);                                                      \
    }
#define DEFINE_UKH(NAME, ATTR, VT, ZERO, LOADB, BCAST, FMA)                                        \
    ATTR static void NAME(int64_t kc, int64_t mr, const float *const *a, const float *b, float *const *c, \
                          int64_t nr, int first, const ukepi *e) {                                 \
        const float *a0 = a[0], *a1 = a[1 < mr], *a2 = a[2 * (2 < mr)], *a3 = a[3 * (3 < mr)];     \
        const float *a4 = a[4 * (4 < mr)], *a5 = a[5 * (5 < mr)], *a6 = a[6 * (6 < mr)];           \
        const float *a7 = a[7 * (7 < mr)], *a8 = a[8 * (8 < mr)], *a9 = a[9 * (9 < mr)];           \
        const float *a10 = a[10 * (10 < mr)], *a11 = a[11 * (11 < mr)];                            \
        VT s0 = ZERO, s1 = ZERO, s2 = ZERO, s3 = ZERO, s4 = ZERO, s5 = ZERO;                       \
        VT s6 = ZERO, s7 = ZERO, s8 = ZERO, s9 = ZERO, s10 = ZERO, s11 = ZERO;                     \
        for (int64_t k = 0; k < kc; k++, b += 16) {                                                \
            VT b0 = LOADB(b);                                                                      \
            s0 = FMA(BCAST(a0 + k), b0, s0); s1 = FMA(BCAST(a1 + k), b0, s1);                      \
            s2 = FMA(BCAST(a2 + k), b0, s2); s3 = FMA(BCAST(a3 + k), b0, s3);                      \
            s4 = FMA(BCAST(a4 + k), b0, s4); s5 = FMA(BCAST(a5 + k), b0, s5);                      \
            s6 = FMA(BCAST(a6 + k), b0, s6); s7 = FMA(BCAST(a7 + k), b0, s7);                      \
            s8 = FMA(BCAST(a8 + k), b0, s8); s9 = FMA(BCAST(a9 + k), b0, s9);                      \
            s10 = FMA(BCAST(a10 + k), b0, s10); s11 = FMA(BCAST(a11 + k), b0, s11);                \
        }                                                                                          \
        UKH_OUT(0, s0) UKH_OUT(1, s1) UKH_OUT(2, s2) UKH_OUT(3, s3) UKH_OUT(4, s4) UKH_OUT(5, s5)  \
        UKH_OUT(6, s6) UKH_OUT(7, s7) UKH_OUT(8, s8) UKH_OUT(9, s9) UKH_OUT(10, s10) UKH_OUT(11, s11) \
    }
DEFINE_UKH(ukh_base, , v8, V8_ZERO, V8_LOAD, V8_BCAST, V8_FMA)

/* the kernels of one ISA: full[R] for R rows x 16, half for the narrow last panel */
typedef struct ukset { ukfn full[7]; ukhfn half; } ukset;
static const ukset uk_base = {{NULL, uk1_base, uk2_base, uk3_base, uk4_base, uk5_base, uk6_base}, ukh_base};

#ifdef HAVE_DISPATCH
/* AVX2: broadcasts straight from memory keep the 12 accumulators of R = 6 in registers */
#define DEFINE_UK_AVX2(NAME, R)                                                                    \
    DEFINE_UK(NAME, R, AVX2_ATTR, __m256, _mm256_setzero_ps(), _mm256_load_ps, _mm256_broadcast_ss, _mm256_fmadd_ps)
DEFINE_UK_AVX2(uk1_avx2, 1) DEFINE_UK_AVX2(uk2_avx2, 2) DEFINE_UK_AVX2(uk3_avx2, 3)
DEFINE_UK_AVX2(uk4_avx2, 4) DEFINE_UK_AVX2(uk5_avx2, 5) DEFINE_UK_AVX2(uk6_avx2, 6)
DEFINE_UKH(ukh_avx2, AVX2_ATTR, __m256, _mm256_setzero_ps(), _mm256_load_ps, _mm256_broadcast_ss, _mm256_fmadd_ps)
static const ukset uk_avx2 = {{NULL, uk1_avx2, uk2_avx2, uk3_avx2, uk4_avx2, uk5_avx2, uk6_avx2}, ukh_avx2};
#endif

/* -- items ---- */
/* p[0 .. n) = 0 for short n (a few dozen floats): inline stores, not a memset call */
NO_MEMCPY static void zero_short(float *p, int64_t n) {
    int64_t q = 0;
    for (; q + 8 <= n; q += 8) *(v8u *)(p + q) = (v8){0};
    for (; q < n; q++) p[q] = 0.0f;
}

/* pixel: the pixels panel j owns, [qa, qb): its kept ones pix[s .. s + 16) and the dropped
 * ones between them (from pix[s], or 0 for the first panel, to the next panel's first) */
INLINE void panel_range(const pjob *pj, int64_t s, int64_t *qa, int64_t *qb) {
    *qa = s ? pj->pix[s] : 0;
    *qb = s + 16 < pj->npix ? pj->pix[s + 16] : pj->d->P;
}

/* the lines of y that scatter_rows will write, fetched while the micro-kernel runs (the
 * scattered stores would otherwise wait on them when y is not in cache) */
INLINE void prefetch_rows(const pjob *pj, int64_t s, const int32_t *rows, int64_t mr) {
    int64_t qa, qb;
    panel_range(pj, s, &qa, &qb);
    for (int64_t i = 0; i < mr; i++) {
        const float *yr = pj->d->y + rows[i] * pj->d->P;
        for (int64_t q = qa; q < qb + 15; q += 16) __builtin_prefetch(yr + (q < qb ? q : qb - 1));
    }
}

/* pixel: the results of panel j (c rows, nr slots from slot s) to their pixels, zeroing the
 * dropped pixels the panel owns */
NO_MEMCPY static void scatter_rows(const pjob *pj, int64_t s, int64_t nr, const int32_t *rows, int64_t mr,
                                   float *const *c) {
    const int64_t *px = pj->pix + s;
    int64_t qa, qb;
    panel_range(pj, s, &qa, &qb);
    for (int64_t i = 0; i < mr; i++) {
        float *yr = pj->d->y + rows[i] * pj->d->P;
        zero_short(yr + qa, qb - qa);
        for (int64_t l = 0; l < nr; l++) yr[px[l]] = c[i][l];
    }
}

/* block b's kept rows in ng = ceil(nkept / 6) groups of as even sizes as can be (5 or 6 rows
 * once there are 20 or more: the 6-row micro-kernel's speed); group g is rows
 * [g nkept / ng, (g + 1) nkept / ng) of the block's list */
static int64_t ngroups(int64_t nk) { return (nk + 5) / 6; }

/* the A and C row pointers and biases of rows [i, i + mr) of block b's list at K chunk pc, panel
 * j (slot s) */
INLINE void item_rows(const pjob *pj, const int32_t *rows, int64_t mr, int64_t pc, int64_t j, int64_t s,
                      const int64_t *px, int last, const float **a, float **c, ukepi *e) {
    const djob *d = pj->d;
    for (int64_t r = 0; r < mr; r++) {
        int64_t row = rows[r];
        a[r] = pj->w + row * d->K + pc;
        c[r] = pj->cbuf ? pj->cbuf + (row - d->row0) * pj->ldc + s : d->y + row * d->P + px[16 * j];
        if (last) e->bias[r] = d->bias ? d->bias[row] : 0.0f;
    }
}

/* one item, its block's panels at panel */
static uint64_t run_item(const pjob *pj, const pitem *it, const float *panel, const ukset *uk) {
    const djob *d = pj->d;
    int64_t K = d->K, P = d->P, b = it->b, bw = pj->bw[b], np = (bw + 15) / 16;
    const int32_t *rows = pj->rows + b * pj->rstride;
    int64_t nk = pj->nkept[b], ng = ngroups(nk);
    const int64_t *px = pj->pix + b * BLK;
    if (!pj->cbuf && it->g0 == 0)   /* tile, channel: the block's dropped rows */
        for (int64_t i = nk; i < d->mg; i++) zero_short(d->y + rows[i] * P + px[0], bw);
    if (it->g0 == it->g1) return 0;
    ukepi e = {{0}, d->act, d->p0, d->p1, d->scale};
    const float *a[12];
    float *c[12];
    int64_t gs[GMAX + 1];   /* the item's group g starts at row gs[g - g0] of the list */
    for (int64_t g = it->g0; g <= it->g1; g++) gs[g - it->g0] = g * nk / ng;
    for (int64_t pc = 0; pc < K; pc += pj->kc) {
        int64_t kc = K - pc < pj->kc ? K - pc : pj->kc;
        int last = pc + kc == K;
        for (int64_t j = 0; j < np; j++) {
            const float *bp = panel + j * K * 16 + pc * 16;
            int64_t s = b * BLK + 16 * j, nr = bw - 16 * j < 16 ? bw - 16 * j : 16, half = nr <= 8;
            /* groups g .. g + step - 1 at a time: one, or two on a narrow last panel */
            for (int64_t g = it->g0, step = half ? 2 : 1; g < it->g1; g += step) {
                int64_t ge = g + step < it->g1 ? g + step : it->g1, i = gs[g - it->g0], mr = gs[ge - it->g0] - i;
                item_rows(pj, rows + i, mr, pc, j, s, px, last, a, c, &e);
                if (last && pj->cbuf) prefetch_rows(pj, s, rows + i, mr);
                if (half) uk->half(kc, mr, a, bp, c, pj->cbuf ? 8 : nr, pc == 0, last ? &e : NULL);
                else uk->full[mr](kc, a, bp, c, pj->cbuf ? 16 : nr, pc == 0, last ? &e : NULL);
                if (last && pj->cbuf) scatter_rows(pj, s, nr, rows + i, mr, c);
            }
        }
    }
    return (uint64_t)((gs[it->g1 - it->g0] - gs[0]) * bw);
}

static const ukset *uk_table(void) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) return &uk_avx2;
#endif
    return &uk_base;
}

/* -- scheduling ---- */
/* The work of one image and group runs in a single pool pass (a pass costs a sleeping
 * worker's wake-up, tens of microseconds on small layers): phases of work units, the units
 * taken one at a time, in order, from a shared counter (a few dozen units of unequal size:
 * pool_for's chunks of n / 4T would leave a thread idle at the end); a unit of phase k starts
 * once every unit of phase k - 1 has finished, which costs a thread at most the wait for the
 * units still running. Phases: padding the input (PADU units of rows), then either one unit a
 * block (many blocks: its gather, then its items, the panels still in L2) or the gathers (GR
 * chunks of K a block, so that all threads have gathering to do) then the items. */
enum { GR = 8, PADU = 4 };

static uint64_t pad_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    int64_t rows = pj->d->cp->c / pj->d->cp->group * pj->Hp, step = (rows + PADU - 1) / PADU;
    int64_t r0 = u * step, r1 = r0 + step < rows ? r0 + step : rows;
    if (r0 < r1) conv_pad_rows(pj->d->cp, pj->d->x, pj->Hp, pj->Wp, pj->xpad, r0, r1);
    return 0;
}

/* block b's panels in cols (shared by the threads) */
static float *block_panels(const pjob *pj, int64_t b) { return pj->cols + b * 4 * pj->d->K * 16; }

static uint64_t item_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    return run_item(pj, pj->items + u, block_panels(pj, pj->items[u].b), uk);
}

/* Whole blocks: the outputs of neighbouring blocks share cache lines at their boundary, so
 * neighbours are best done by one thread, one after the other, not by two at once. The
 * blocks are cut in runs of consecutive ones, one run per two threads; a thread takes the
 * blocks of its run one at a time from one end (even tid from the front, odd tid from the
 * back), then, its run done, helps with the others' from the front. Every claim finds a
 * block: there are as many claims (units of the phase) as blocks. */
static int64_t claim_block(pjob *pj, int64_t tid) {
    int64_t S = pj->nbrun, own = tid / 2 % S;
    for (int64_t i = 0; i < S; i++) {
        brun *r = &pj->brun[(own + i) % S];
        if (__atomic_fetch_add(&r->taken, 1, __ATOMIC_RELAXED) >= r->n) continue;
        if (i == 0 && tid % 2) return r->b0 + r->n - 1 - __atomic_fetch_add(&r->back, 1, __ATOMIC_RELAXED);
        return r->b0 + __atomic_fetch_add(&r->front, 1, __ATOMIC_RELAXED);
    }
    return -1;   /* not reached */
}

/* a whole block by one thread: its panels in the room of block tid in cols, the thread's own
 * (tid < threads <= blocks), which stays in its cache from one block to the next (the
 * blocks' panels are not all written out to memory) */
static uint64_t block_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    uint64_t done = 0;
    float *own = block_panels(pj, tid);
    int64_t b = claim_block(pj, tid);
    if (pj->nkept[b]) gather_block(pj, b, own, 0, pj->d->K);
    for (int64_t it = pj->istart[b]; it < pj->istart[b + 1]; it++) done += run_item(pj, pj->items + it, own, uk);
    return done;
}

static uint64_t gather_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    int64_t K = pj->d->K, step = (K + GR - 1) / GR, i = u / GR, r0 = (u % GR) * step, r1 = r0 + step < K ? r0 + step : K;
    if (r0 < r1 && pj->nkept[i]) gather_block(pj, i, block_panels(pj, i), r0, r1);
    return 0;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* until *counter reaches n: spin a while, then yield (the thread it waits for may be off its core) */
static void wait_for(const int64_t *counter, int64_t n) {
    for (int spins = 0; __atomic_load_n(counter, __ATOMIC_ACQUIRE) < n; spins++) {
        if (spins < 200) cpu_relax();
        else sched_yield();
    }
}

static void work_task(void *ctx, int64_t b, int64_t e) {
    pjob *pj = ctx;
    const ukset *uk = uk_table();
    int64_t tid = __atomic_fetch_add(&pj->ntid, 1, __ATOMIC_RELAXED);
    uint64_t done = 0;
    for (;;) {
        int64_t u = __atomic_fetch_add(&pj->next, 1, __ATOMIC_RELAXED), k = 0;
        while (k < pj->nphase && u >= pj->ph[k].n) u -= pj->ph[k++].n;
        if (k == pj->nphase) break;
        if (k) wait_for(&pj->ph[k - 1].finished, pj->ph[k - 1].n);
        done += pj->ph[k].fn(pj, u, uk, tid);
        __atomic_fetch_add(&pj->ph[k].finished, 1, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(pj->done, done, __ATOMIC_RELAXED);
}

static void add_phase(pjob *pj, int64_t n, uint64_t (*fn)(pjob *, int64_t, const ukset *, int64_t)) {
    pj->ph[pj->nphase++] = (pphase){n, 0, fn};
}

/* whole blocks, one thread each, when the threads taking them in order stay busy 90% of the
 * time (block b costs about (nkept[b] + 1) bw[b]; each goes to the least loaded thread) */
static int whole_blocks(const pjob *pj, int64_t nblk, int64_t T) {
    if (T == 1) return 1;
    if (nblk < T) return 0;   /* a thread's own room in cols is block tid's */
    if (T > 64) return nblk >= 4 * T;
    int64_t load[64] = {0}, total = 0, span = 0;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t c = (pj->nkept[b] + 1) * (int64_t)pj->bw[b], t = 0;
        for (int64_t i = 1; i < T; i++) if (load[i] < load[t]) t = i;
        load[t] += c;
        total += c;
        if (load[t] > span) span = load[t];
    }
    return 10 * total >= 9 * T * span;
}

/* items of nblk blocks (block b: nkept[b] rows in ngroups() groups, cut in `parts` ranges of at
 * most GMAX groups; a block with no kept row gets one empty item, which zeroes its rows),
 * then the pass: padding (when a block has rows to compute) and the blocks' work, whole
 * blocks (whole_blocks) or all gathers then all items */
static void run_panels(pool *p, pjob *pj, int64_t nblk, pitem *items, int64_t *istart) {
    int64_t T = pool_threads(p), fused = whole_blocks(pj, nblk, T), nit = 0, any = 0;
    int64_t parts = fused ? 1 : (16 * T + nblk - 1) / nblk;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t ng = ngroups(pj->nkept[b]), np = (ng + GMAX - 1) / GMAX;
        if (np < parts) np = parts;
        if (np > ng) np = ng;
        istart[b] = nit;
        any |= np;
        if (!np) items[nit++] = (pitem){(int32_t)b, 0, 0};
        for (int64_t q = 0; q < np; q++)
            items[nit++] = (pitem){(int32_t)b, (int32_t)(q * ng / np), (int32_t)((q + 1) * ng / np)};
    }
    istart[nblk] = nit;
    pj->items = items;
    pj->istart = istart;
    pj->nphase = 0;
    pj->next = pj->ntid = 0;
    if (any) add_phase(pj, PADU, pad_unit);
    if (fused) {
        pj->nbrun = (T + 1) / 2 < BRUNS ? (T + 1) / 2 : BRUNS;
        for (int64_t r = 0; r < pj->nbrun; r++)
            pj->brun[r] = (brun){r * nblk / pj->nbrun, (r + 1) * nblk / pj->nbrun - r * nblk / pj->nbrun, 0, 0, 0};
        add_phase(pj, nblk, block_unit);
    }
    else {
        if (any) add_phase(pj, nblk * GR, gather_unit);
        add_phase(pj, nit, item_unit);
    }
    int64_t n = 0;
    for (int k = 0; k < pj->nphase; k++) n += pj->ph[k].n;
    pool_for(p, T < n ? T : n, 1, work_task, pj);
}

/* -- depthwise: direct, kept outputs only -------------------------------------------------- */
INLINE int kept_at(const uint8_t *u, int gran, int64_t m, int64_t q, int64_t P, int64_t TB) {
    switch (gran) {
    case DROWSY_NEURON: return u[m * P + q];
    case DROWSY_PIXEL: return u[q];
    case DROWSY_CHANNEL: return u[m];
    default: return u[(m / DROWSY_TILE_C) * TB + q / DROWSY_TILE_P];
    }
}

typedef struct dwm_job { const djob *j; int gran; const float *w; int64_t TB; } dwm_job;
static void depthwise_task(void *ctx, int64_t b, int64_t e) {
    const dwm_job *d = ctx;
    const djob *j = d->j;
    const conv_params *cp = j->cp;
    int64_t mult = cp->m / cp->c, P = j->P;
    uint64_t done = 0;
    for (int64_t m = b; m < e; m++) {
        const float *xc = j->x + (m / mult) * cp->h * cp->w;
        const float *wk = d->w + m * cp->kh * cp->kw;
        float bb = j->bias ? j->bias[m] : 0.0f;
        for (int64_t yy = 0; yy < cp->oh; yy++)
            for (int64_t xx = 0; xx < cp->ow; xx++) {
                int64_t q = yy * cp->ow + xx;
                if (!kept_at(j->units, d->gran, m, q, P, d->TB)) continue;
                float acc = depthwise_tap_sum(cp, xc, wk, yy, xx);
                j->y[m * P + q] = apply(acc + bb, j->act, j->p0, j->p1) * j->scale;
                done++;
            }
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* -- scratch ------------------------------------------------------------------------------ */
static int is_depthwise(const conv_params *cp) { return cp->group == cp->c && cp->c / cp->group == 1 && cp->group > 1; }

/* the padded input of the panel engine: every tap of every output pixel inside it */
static void padded_size(const conv_params *cp, int64_t *Hp, int64_t *Wp) {
    *Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    *Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
}

/* the panel engine's regions, in order (bytes; each taken 64-byte aligned) */
enum { R_XPAD, R_PIX, R_ROFF, R_BASE, R_SEGS, R_NSEGS, R_BW, R_NKEPT, R_COLS, R_ROWS, R_ITEMS, R_ISTART, R_CBUF, NREG };
static void panel_regions(const conv_params *cp, int gran, size_t *sz) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + BLK - 1) / BLK, Hp, Wp;
    padded_size(cp, &Hp, &Wp);
    sz[R_XPAD] = (size_t)(cg * Hp * Wp + 16) * sizeof(float);   /* slack: the strided gathers' reads */
    sz[R_PIX] = (size_t)(TB * BLK) * sizeof(int64_t);
    sz[R_ROFF] = (size_t)K * sizeof(int64_t);
    sz[R_BASE] = (size_t)(TB * BLK) * sizeof(int32_t);
    sz[R_SEGS] = (size_t)(TB * BLK) * sizeof(pseg);
    sz[R_NSEGS] = sz[R_BW] = sz[R_NKEPT] = (size_t)TB * sizeof(int32_t);
    sz[R_COLS] = (size_t)(TB * BLK * K) * sizeof(float);
    sz[R_ROWS] = (size_t)((gran == DROWSY_TILE ? TB : 1) * mg) * sizeof(int32_t);
    sz[R_ITEMS] = (size_t)(TB * ((mg + 5) / 6 + 1)) * sizeof(pitem);
    sz[R_ISTART] = (size_t)(TB + 1) * sizeof(int64_t);
    sz[R_CBUF] = gran == DROWSY_PIXEL ? (size_t)(mg * TB * BLK) * sizeof(float) : 0;
}

size_t conv_drowsy_scratch_bytes(const conv_params *cp, int gran, int threads) {
    size_t n = ALIGN64((size_t)drowsy_unit_count(gran, cp->m, cp->oh * cp->ow)), sz[NREG];
    if (is_depthwise(cp)) return n;
    if (gran == DROWSY_NEURON) return n + neuron_scratch_bytes(cp, threads);
    panel_regions(cp, gran, sz);
    for (int r = 0; r < NREG; r++) n += ALIGN64(sz[r]);
    return n;
}

static void *take(uint8_t **cur, size_t bytes) {
    void *p = *cur;
    *cur += ALIGN64(bytes);
    return p;
}

/* -- the masked convolution ---------------------------------------------------------------- */
/* block b of the slot list pix[0 .. nslot): its width and segments */
static void slot_blocks(const conv_params *cp, int64_t Wp, int64_t *pix, int64_t nslot, int32_t *bw, int32_t *base,
                        pseg *segs, int32_t *nsegs) {
    for (int64_t b = 0; b * BLK < nslot; b++) {
        bw[b] = (int32_t)(nslot - b * BLK < BLK ? nslot - b * BLK : BLK);
        nsegs[b] = block_segs(cp, Wp, pix + b * BLK, bw[b], base + b * BLK, segs + b * BLK);
    }
}

void conv2d_drowsy(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
                   void *scratch, int act, float p0, float p1, const drowsy_knobs *kn, int *wt_ready,
                   drowsy_counts *cnt) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + BLK - 1) / BLK, M = cp->m;
    int gran = kn->gran, dw = is_depthwise(cp), panels = !dw && gran != DROWSY_NEURON;
    int64_t nunits = drowsy_unit_count(gran, M, P);
    uint8_t *cur = scratch;
    uint8_t *units = take(&cur, (size_t)nunits);
    void *nscratch = cur;   /* the neuron kernel's own */
    void *reg[NREG] = {0};
    int64_t Hp = 0, Wp = 0;
    if (panels) {
        size_t sz[NREG];
        panel_regions(cp, gran, sz);
        for (int r = 0; r < NREG; r++) reg[r] = take(&cur, sz[r]);
        padded_size(cp, &Hp, &Wp);
    }
    float *xpad = reg[R_XPAD], *cols = reg[R_COLS];
    int64_t *pix = reg[R_PIX], *istart = reg[R_ISTART], *roff = reg[R_ROFF];
    pseg *segs = reg[R_SEGS];
    int32_t *base = reg[R_BASE], *nsegs = reg[R_NSEGS], *bw = reg[R_BW], *nkept = reg[R_NKEPT], *rows = reg[R_ROWS];
    pitem *items = reg[R_ITEMS];
    uint64_t done = 0;
    /* the neuron kernel's weights reordered once per layer (when constant) */
    if (gran == DROWSY_NEURON && !dw && !*wt_ready) {
        neuron_prepare_weights(p, cp, w, nscratch);
        if (kn->weights_const) *wt_ready = 1;
    }
    /* the patch rows' offsets in xpad; tile, channel: every pixel, blocks of 64 consecutive ones */
    if (panels)
        for (int64_t r = 0, kk = cp->kh * cp->kw; r < K; r++)
            roff[r] = (r / kk) * Hp * Wp + (r % kk) / cp->kw * cp->dh * Wp + r % cp->kw * cp->dw;
    if (panels && gran != DROWSY_PIXEL) {
        for (int64_t q = 0; q < P; q++) pix[q] = q;
        slot_blocks(cp, Wp, pix, P, bw, base, segs, nsegs);
    }
    for (int64_t n = 0; n < cp->n; n++) {
        uint64_t image = kn->fixed ? 0 : kn->image0 + (uint64_t)n;
        drowsy_keep_units(p, drowsy_key(kn->seed, image, kn->layer), kn->thr, units, nunits);
        float *yn = y + n * M * P;
        djob j = {0};
        j.cp = cp; j.bias = bias; j.y = yn; j.units = units; j.act = act; j.p0 = p0; j.p1 = p1;
        j.scale = kn->scale; j.K = K; j.P = P; j.done = &done;
        if (dw) {
            /* dropped outputs are 0: the kernel writes kept ones only */
            memset(yn, 0, (size_t)(M * P) * sizeof(float));
            j.x = x + n * cp->c * cp->h * cp->w;
            dwm_job d = {&j, gran, w, TB};
            pool_for(p, M, 1, depthwise_task, &d);
            continue;
        }
        /* pixel: the kept pixels, shared by the groups */
        int64_t npix = P, nblk = TB;
        if (gran == DROWSY_PIXEL) {
            npix = 0;
            for (int64_t q = 0; q < P; q++) if (units[q]) pix[npix++] = q;
            nblk = (npix + BLK - 1) / BLK;
            slot_blocks(cp, Wp, pix, npix, bw, base, segs, nsegs);
        }
        for (int64_t g = 0; g < cp->group; g++) {
            int64_t row0 = g * mg;
            j.x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            j.row0 = row0; j.mg = mg;
            if (!panels) { neuron_conv_group(p, &j, nscratch); continue; }
            pjob pj = {.d = &j, .w = w, .xpad = xpad, .Hp = Hp, .Wp = Wp, .pix = pix, .segs = segs,
                       .nsegs = nsegs, .bw = bw, .base = base, .roff = roff, .cols = cols, .rows = rows, .nkept = nkept,
                       .npix = npix, .kc = gemm_kstep(K), .done = &done};
            if (gran == DROWSY_PIXEL) {
                if (!npix) { memset(yn + row0 * P, 0, (size_t)(mg * P) * sizeof(float)); continue; }
                for (int64_t i = 0; i < mg; i++) rows[i] = (int32_t)(row0 + i);
                for (int64_t b = 0; b < nblk; b++) nkept[b] = (int32_t)mg;
                pj.cbuf = reg[R_CBUF];
                pj.ldc = nblk * BLK;
            } else if (gran == DROWSY_CHANNEL) {
                /* the kept rows, then the dropped ones (zeroed) */
                int64_t nk = 0, nz = mg;
                for (int64_t r = row0; r < row0 + mg; r++) rows[units[r] ? nk++ : --nz] = (int32_t)r;
                for (int64_t b = 0; b < nblk; b++) nkept[b] = (int32_t)nk;
            } else {
                /* per block, the rows of its kept tiles in this group, then the others */
                pj.rstride = mg;
                for (int64_t b = 0; b < nblk; b++) {
                    int32_t *rb = rows + b * mg;
                    int64_t nk = 0, nz = mg;
                    for (int64_t r = row0; r < row0 + mg; r++) rb[units[(r / DROWSY_TILE_C) * TB + b] ? nk++ : --nz] = (int32_t)r;
                    nkept[b] = (int32_t)nk;
                }
            }
            run_panels(p, &pj, nblk, items, istart);
        }
    }
    cnt->outputs = done;
    cnt->macs = done * (uint64_t)(dw ? cp->kh * cp->kw : K);
}
