/* The panel engine (see conv_panels.h): a direct convolution of any subset of the output rows
 * at any subset of the output pixels, the dense kernel of the exact conv and of DrowsyNet's
 * tile, pixel and channel granularities.
 *
 * The pixels to compute ("slots") are cut in blocks of BLK = 64; the patches of a block are
 * gathered from the padded input (every tap of every output pixel inside it, no bounds
 * checks, rows split in their stride phases so that the taps of consecutive output pixels
 * are consecutive floats; the input itself when it needs no padding) into up to 4
 * panels of K x 16 (16 slots a k, the B operand), the input of the block to be gathered
 * next prefetched along. A 6 x 16 micro-kernel broadcasts its A operand from six weight
 * rows read in place through row pointers, so any subset of rows (the kept channels, the
 * rows of the kept tiles) is computed without copying them; the exact conv, which computes
 * every row, passes its weights packed into panels of 6 rows (gemm_pack_a, once per layer
 * when they are constant: one contiguous stream a micro-kernel, which the hardware
 * prefetches better than six).
 * Each block has a list of output rows, the kept ones first (computed in groups of at most
 * 6), then the dropped ones (zeroed). One item = a block x a range of row groups, K in
 * chunks of gemm_kstep(K) (both operands of a chunk stay in L1 / L2, as in a GEMM), the
 * partial sums accumulated in place and act(acc + bias) * scale applied in registers by
 * the last chunk; a narrow last panel (at most 8 pixels) is computed 8 wide, two row groups
 * at a time. Whole pixel range (exact, tile, channel): a block is 64 consecutive pixels
 * (PANEL_SHARED: the last one up to 80, see panel_slots), the outputs go straight to y
 * (rows x consecutive pixels) and the block's first item zeroes its dropped rows.
 * PANEL_PIXELS: the blocks hold the kept pixels only, partial sums go to a compact buffer
 * (rows x slots) and the last chunk scatters each panel's 16 results to their pixels,
 * zeroing the dropped pixels between them (panel j owns pixels pix[16 j] .. pix[16 j + 16]
 * - 1), so every output is written by one item and nothing is cleared beforehand.
 *
 * The inner loops are written with GCC vector extensions (SSE/AVX on x86-64, NEON on
 * AArch64) and compiled a second time with target("avx2,fma") on x86-64, chosen at run
 * time as in gemm.c; nothing assumes AVX-512. Threads: the pthread pool, one pass a run
 * (panel_run). */
#include <sched.h>
#include <string.h>

#include "conv_panels.h"

enum { BLK = PANEL_BLK, GMAX = 16, PFMAX = PANEL_PFMAX };

/* the last K chunk's epilogue: act(v + bias[i]) * scale */
typedef struct ukepi { const float *bias; int act; float p0, p1, scale; } ukepi;
struct ukset;   /* the micro-kernels of one ISA (below) */
struct pjob;
/* a micro-kernel (below) */
typedef void (*ukfn)(int64_t kc, const float *const *a, int64_t as, const float *b, float *const *c, int64_t nr,
                     int first, const ukepi *e);

/* a phase of a pass: n units, how many have finished, what one does (see panel_run) */
typedef struct pphase {
    int64_t n, finished;
    uint64_t (*fn)(struct pjob *, int64_t u, const struct ukset *, int64_t tid);
} pphase;

/* a run of consecutive blocks b0 .. b0 + n - 1 (claim_block): claims so far, blocks taken
 * from each end */
enum { BRUNS = 16 };
typedef struct brun { int64_t b0, n, taken, front, back; } brun;

/* one run: the caller's description, and the pass */
typedef struct pjob {
    const panel_conv *c;
    const float *xp;                       /* the group's padded input (xpad, or x itself) */
    int64_t ldc;                           /* PANEL_PIXELS: partial sums at cbuf + (row - row0) ldc + slot */
    int64_t mpad;                          /* packed weights: rows of a group rounded up to GEMM_MR */
    uint64_t done;                         /* outputs computed */
    /* the pass (panel_run): its phases, the next unit to take */
    pphase ph[3];
    int nphase;
    brun brun[BRUNS]; int64_t nbrun;       /* whole blocks: the runs (claim_block) */
    int64_t next, ntid;                    /* ntid: threads in the pass so far (each takes tid = ntid++) */
} pjob;

/* -- gathers ---- */
/* Rows [r0, r1) of block b's panels, RC patch rows at a time (their panel lines stay in L1).
 * A block of long segments (consecutive pixels: tile, channel) is copied segment by segment:
 * every store lies inside its segment (8 floats at a time, the last 8 overlapping the
 * previous ones; two overlapping 4s from 4 to 7; scalar below 4), so the panel rows are
 * written once, in place, with nothing to mend afterwards (a segment's taps are consecutive
 * floats at every stride, see padded_size). A block of short ones (scattered kept pixels) is
 * copied by windows with AVX2 (pwin, gatherw_avx2: 8 consecutive floats compacted to the
 * kept pixels among them), else gathered slot by slot, 16 at a time, from each slot's offset
 * (-1 past the block: 0). Segments are a few floats long, so the copies stay inline (no
 * memcpy calls). */
enum { RC = 8 };
typedef float v4u __attribute__((vector_size(16), aligned(4)));
#if defined(__clang__)
#define NO_MEMCPY __attribute__((no_builtin("memcpy", "memset")))
#else
#define NO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif

/* the input lines that rows [r0, r1) of block b's gather reads, fetched ahead of it (a block
 * reads a few lines of each patch row, spread over the channel planes: too short a stream for
 * the hardware prefetcher); once per run of taps that read the same lines (lead) */
INLINE void prefetch_block(const pjob *pj, int64_t b, int64_t r0, int64_t r1) {
    const int32_t *o = pj->c->pfo + b * PFMAX;
    int64_t n = pj->c->npfo[b];
    for (int64_t r = r0; r < r1; r++) {
        if (!pj->c->lead[r]) continue;
        const float *xr = pj->xp + pj->c->roff[r];
        for (int64_t i = 0; i < n; i++) __builtin_prefetch(xr + o[i], 0, 3);
    }
}

/* block b's gather; nb >= 0: block nb's input prefetched along (the block likely gathered next) */
#define DEFINE_GATHER(NAME, ATTR, GATHER16, GATHERW)                                               \
    NO_MEMCPY ATTR static void NAME(const pjob *pj, int64_t b, int64_t nb, float *panel, int64_t r0, int64_t r1) { \
        int64_t K = pj->c->K, bw = pj->c->bw[b], nseg = pj->c->nsegs[b];                                 \
        const pseg *sg = pj->c->segs + b * BLK;                                                       \
        const int32_t *bs = pj->c->base + b * BLK;                                                    \
        float *last = panel + (bw - 1) / 16 * K * 16;                                              \
        int slots = 4 * nseg > bw;   /* segments shorter than 4 on average */                      \
        int64_t nwin = pj->c->nwins ? pj->c->nwins[b] : 0;                                         \
        for (int64_t ra = r0; ra < r1; ra += RC) {                                                 \
            int64_t rb = ra + RC < r1 ? ra + RC : r1;                                              \
            if (nb >= 0) prefetch_block(pj, nb, ra, rb);                                           \
            if (slots && nwin) GATHERW(pj, pj->c->wins + b * BLK, nwin, panel, ra, rb, r1, bw);     \
            else if (slots)                                                                        \
                for (int64_t j = 0; j * 16 < bw; j++)                                              \
                    for (int64_t r = ra; r < rb; r++)                                              \
                        GATHER16(panel + j * K * 16 + r * 16, pj->xp + pj->c->roff[r], bs + 16 * j); \
            else {                                                                                 \
                for (int64_t q = 0; q < nseg; q++) {                                               \
                    const float *s = pj->xp + sg[q].b0;                                          \
                    float *d = panel + (sg[q].s0 >> 4) * K * 16 + (sg[q].s0 & 15);                 \
                    int64_t n = sg[q].n;                                                           \
                    for (int64_t r = ra; r < rb; r++) {                                            \
                        const float *sr = s + pj->c->roff[r];                                         \
                        float *dr = d + r * 16;                                                    \
                        if (n >= 8) {                                                              \
                            for (int64_t t = 0; t + 8 < n; t += 8) *(v8u *)(dr + t) = *(const v8u *)(sr + t); \
                            *(v8u *)(dr + n - 8) = *(const v8u *)(sr + n - 8);                     \
                        } else if (n >= 4) {                                                       \
                            *(v4u *)dr = *(const v4u *)sr;                                         \
                            *(v4u *)(dr + n - 4) = *(const v4u *)(sr + n - 4);                     \
                        } else                                                                     \
                            for (int64_t t = 0; t < n; t++) dr[t] = sr[t];                         \
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
/* windows: AVX2 only (the portable gather goes slot by slot) */
#define GATHERW_NONE(pj, w, nw, panel, ra, rb, r1, bw) ((void)0)
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
#ifdef HAVE_DISPATCH
/* rows [ra, rb) of a block's panels from its windows (pwin), r1: the end of the rows this
 * call gathers. A window's 8 floats are loaded, compacted (vpermps) and stored whole at its
 * first slot's lane: the lanes past its slots are overwritten by the next window of the row
 * (stores in order) or, past lane 16, spill into the next row of the panel, which is stored
 * later (rows in order) and whose first windows cover the spilt lanes; the last row of the
 * call stores such a window's lanes up to 16 only (masked: the next row may be another
 * thread's). A short last panel's lanes past its slots are zeroed after the row's windows. */
AVX2_ATTR INLINE void gatherw_avx2(const pjob *pj, const pwin *w, int64_t nw, float *panel, int64_t ra, int64_t rb,
                                   int64_t r1, int64_t bw) {
    int64_t K = pj->c->K, z0 = (bw - 1) % 16 + 1;
    float *last = panel + (bw - 1) / 16 * K * 16;
    __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t r = ra; r < rb; r++) {
        const float *xr = pj->xp + pj->c->roff[r];
        float *pr = panel + r * 16;
        for (int64_t q = 0; q < nw; q++) {
            __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)w[q].idx));
            __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xr + w[q].src), idx);
            int32_t l = w[q].dst % 16;
            if (l > 8 && r == r1 - 1)
                _mm256_maskstore_ps(pr + w[q].dst, _mm256_cmpgt_epi32(_mm256_set1_epi32(16 - l), iota), v);
            else
                _mm256_storeu_ps(pr + w[q].dst, v);
        }
        for (int64_t l = z0; l < 16; l++) last[r * 16 + l] = 0.0f;
    }
}
#endif
DEFINE_GATHER(gather_base, , gather16_base, GATHERW_NONE)
#ifdef HAVE_DISPATCH
DEFINE_GATHER(gather_avx2, AVX2_ATTR, gather16_avx2, gatherw_avx2)
#endif

/* rows [r0, r1) of block b's panels, into panel (up to 5 panels of K x 16); block nb's input
 * prefetched along (-1, past the blocks or nothing to compute there: none) */
static void gather_block(const pjob *pj, int64_t b, int64_t nb, float *panel, int64_t r0, int64_t r1) {
    if (nb < 0 || nb >= pj->c->nblk || !pj->c->nkept[nb]) nb = -1;
#ifdef HAVE_DISPATCH
    if (have_avx2()) { gather_avx2(pj, b, nb, panel, r0, r1); return; }
#endif
    gather_base(pj, b, nb, panel, r0, r1);
}

/* the offsets of a block's slots px[0 .. bw) (ascending; -1 up to the end of its last panel)
 * and their segments: runs of slots within one panel whose taps are consecutive floats
 * (consecutive pixels of one output row; across rows too when the padded input's rows
 * are the output's, as for 1 x 1 kernels at stride 1 without pads). The output coordinates
 * are stepped from pixel to pixel (no divisions: this runs once a call). */
static int32_t block_segs(const conv_params *cp, int64_t pitch, const int64_t *px, int64_t bw, int32_t *base, pseg *sg) {
    int32_t n = 0;
    int64_t oy = px[0] / cp->ow, ox = px[0] % cp->ow;
    for (int64_t s = 0; s < bw; s++) {
        if (s) for (ox += px[s] - px[s - 1]; ox >= cp->ow; ox -= cp->ow) oy++;
        base[s] = (int32_t)(oy * cp->sh * pitch + ox);
        if (n && s % 16 && base[s] == base[s - 1] + 1) sg[n - 1].n++;
        else sg[n++] = (pseg){base[s], (int16_t)s, 1};
    }
    for (int64_t s = bw; s % 16; s++) base[s] = -1;
    return n;
}

/* a block's windows (pwin) from its slots' offsets base[0 .. bw): each from its first slot's
 * offset, moved back to maxbase - 7 at most (maxbase: the offset of the last pixel, so that
 * the 8 floats of every tap lie inside the input), taking the slots of its panel up to 7
 * floats further; 0 (slot by slot) when the input is too small for that or the windows hold
 * fewer than 2 slots on average (sparse kept pixels: the hardware gathers do as well) */
static int32_t block_windows(int64_t K, const int32_t *base, int64_t bw, int64_t maxbase, pwin *w) {
    if (maxbase < 7) return 0;
    int32_t n = 0;
    for (int64_t s = 0, e; s < bw; s = e) {
        int64_t w0 = base[s] < maxbase - 7 ? base[s] : maxbase - 7;
        pwin *v = w + n++;
        *v = (pwin){(int32_t)w0, (int32_t)(s / 16 * K * 16 + s % 16), {0}};
        for (e = s; e < bw && e / 16 == s / 16 && base[e] - w0 < 8; e++) v->idx[e - s] = (uint8_t)(base[e] - w0);
    }
    return 2 * n > bw ? 0 : n;
}

/* block b's prefetch offsets (prefetch_block), from its segments (slots s0 .. s0 + n - 1 at
 * b0, b0 + 1, ...) read by a run of taps up to ext floats apart (pfext): chains of offsets at
 * most 16 floats apart, so that the lines of a chain cover every float between its ends, a
 * chain per run of segments that lie close; 0 when they would be more than PFMAX (taps too
 * spread out to be worth it) */
static int32_t block_prefetch(const pseg *sg, int32_t nseg, int64_t ext, int32_t *o) {
    int32_t n = 0;
    int64_t last = INT64_MIN / 2;
    for (int32_t q = 0; q < nseg; q++) {
        int64_t a = sg[q].b0, e = a + sg[q].n - 1 + ext;
        if (a > last + 16) {   /* a new chain */
            if (n == PFMAX) return 0;
            o[n++] = (int32_t)(last = a);
        }
        while (last < e) {
            if (n == PFMAX) return 0;
            last = last + 16 < e ? last + 16 : e;
            o[n++] = (int32_t)last;
        }
    }
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
    ATTR static void NAME(int64_t kc, const float *const *a, int64_t as, const float *b, float *const *c, \
                          int64_t nr, int first, const ukepi *e) {                                 \
        enum { NROWS = R };                                                                        \
        const float *a0 = a[0], *a1 = a[R > 1], *a2 = a[2 * (R > 2)], *a3 = a[3 * (R > 3)];        \
        const float *a4 = a[4 * (R > 4)], *a5 = a[5 * (R > 5)];                                    \
        VT s00 = ZERO, s01 = ZERO, s10 = ZERO, s11 = ZERO, s20 = ZERO, s21 = ZERO;                 \
        VT s30 = ZERO, s31 = ZERO, s40 = ZERO, s41 = ZERO, s50 = ZERO, s51 = ZERO;                 \
        for (int64_t k = 0, o = 0; k < kc; k++, o += as, b += 16) {                            \
            VT b0 = LOADB(b), b1 = LOADB(b + 8), t;                                                \
            t = BCAST(a0 + o); s00 = FMA(t, b0, s00); s01 = FMA(t, b1, s01);                       \
            if (R > 1) { t = BCAST(a1 + o); s10 = FMA(t, b0, s10); s11 = FMA(t, b1, s11); }        \
            if (R > 2) { t = BCAST(a2 + o); s20 = FMA(t, b0, s20); s21 = FMA(t, b1, s21); }        \
            if (R > 3) { t = BCAST(a3 + o); s30 = FMA(t, b0, s30); s31 = FMA(t, b1, s31); }        \
            if (R > 4) { t = BCAST(a4 + o); s40 = FMA(t, b0, s40); s41 = FMA(t, b1, s41); }        \
            if (R > 5) { t = BCAST(a5 + o); s50 = FMA(t, b0, s50); s51 = FMA(t, b1, s51); }        \
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
typedef void (*ukhfn)(int64_t kc, int64_t mr, const float *const *a, int64_t as, const float *b, float *const *c,
                      int64_t nr, int first, const ukepi *e);
#define UKH_OUT(i, S)                                                                              \
    if (i < mr) {                                                                                  \
        v8 v = (v8)S;                                                                              \
        uk_row(&v, 1, c[i], nr, first, e, i);                                                      \
    }
#define DEFINE_UKH(NAME, ATTR, VT, ZERO, LOADB, BCAST, FMA)                                        \
    ATTR static void NAME(int64_t kc, int64_t mr, const float *const *a, int64_t as, const float *b,   \
                          float *const *c, int64_t nr, int first, const ukepi *e) {                \
        const float *a0 = a[0], *a1 = a[1 < mr], *a2 = a[2 * (2 < mr)], *a3 = a[3 * (3 < mr)];     \
        const float *a4 = a[4 * (4 < mr)], *a5 = a[5 * (5 < mr)], *a6 = a[6 * (6 < mr)];           \
        const float *a7 = a[7 * (7 < mr)], *a8 = a[8 * (8 < mr)], *a9 = a[9 * (9 < mr)];           \
        const float *a10 = a[10 * (10 < mr)], *a11 = a[11 * (11 < mr)];                            \
        VT s0 = ZERO, s1 = ZERO, s2 = ZERO, s3 = ZERO, s4 = ZERO, s5 = ZERO;                       \
        VT s6 = ZERO, s7 = ZERO, s8 = ZERO, s9 = ZERO, s10 = ZERO, s11 = ZERO;                     \
        for (int64_t k = 0, o = 0; k < kc; k++, o += as, b += 16) {                            \
            VT b0 = LOADB(b);                                                                      \
            s0 = FMA(BCAST(a0 + o), b0, s0); s1 = FMA(BCAST(a1 + o), b0, s1);                      \
            s2 = FMA(BCAST(a2 + o), b0, s2); s3 = FMA(BCAST(a3 + o), b0, s3);                      \
            s4 = FMA(BCAST(a4 + o), b0, s4); s5 = FMA(BCAST(a5 + o), b0, s5);                      \
            s6 = FMA(BCAST(a6 + o), b0, s6); s7 = FMA(BCAST(a7 + o), b0, s7);                      \
            s8 = FMA(BCAST(a8 + o), b0, s8); s9 = FMA(BCAST(a9 + o), b0, s9);                      \
            s10 = FMA(BCAST(a10 + o), b0, s10); s11 = FMA(BCAST(a11 + o), b0, s11);                \
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
    *qa = s ? pj->c->pix[s] : 0;
    *qb = s + 16 < pj->c->nslot ? pj->c->pix[s + 16] : pj->c->P;
}

/* the lines of y that scatter_rows will write, fetched while the micro-kernel runs (the
 * scattered stores would otherwise wait on them when y is not in cache) */
INLINE void prefetch_rows(const pjob *pj, int64_t s, const int32_t *rows, int64_t mr) {
    int64_t qa, qb;
    panel_range(pj, s, &qa, &qb);
    for (int64_t i = 0; i < mr; i++) {
        const float *yr = pj->c->y + rows[i] * pj->c->P;
        for (int64_t q = qa; q < qb + 15; q += 16) __builtin_prefetch(yr + (q < qb ? q : qb - 1));
    }
}

/* pixel: the results of panel j (c rows, nr slots from slot s) to their pixels, zeroing the
 * dropped pixels the panel owns */
NO_MEMCPY static void scatter_rows(const pjob *pj, int64_t s, int64_t nr, const int32_t *rows, int64_t mr,
                                   float *const *c) {
    const int64_t *px = pj->c->pix + s;
    int64_t qa, qb;
    panel_range(pj, s, &qa, &qb);
    for (int64_t i = 0; i < mr; i++) {
        float *yr = pj->c->y + rows[i] * pj->c->P;
        zero_short(yr + qa, qb - qa);
        for (int64_t l = 0; l < nr; l++) yr[px[l]] = c[i][l];
    }
}

/* block b's kept rows in ng = ceil(nkept / 6) groups of as even sizes as can be (5 or 6 rows
 * once there are 20 or more: the 6-row micro-kernel's speed); group g is rows
 * [g nkept / ng, (g + 1) nkept / ng) of the block's list. Packed weights: the groups of their
 * panels, rows [6 g, 6 g + 6) (the last one shorter). */
static int64_t ngroups(int64_t nk) { return (nk + 5) / 6; }
INLINE int64_t group_start(const panel_conv *d, int64_t g, int64_t nk) {
    if (d->wpack) return GEMM_MR * g < nk ? GEMM_MR * g : nk;
    return g * nk / ngroups(nk);
}

/* the A operand of row r of the group at list index q, K chunk pc (kc long): its row of w in
 * place (aoff: the group's row offsets), or its lane of the group's packed panel (the group
 * starts q are multiples of GEMM_MR, group_start; the second group of a pair starts at the
 * next panel) */
INLINE const float *item_a(const pjob *pj, const int64_t *aoff, int64_t q, int64_t r, int64_t pc, int64_t kc) {
    const panel_conv *d = pj->c;
    if (!d->wpack) return d->w + aoff[r] + pc;
    return d->wpack + pc * pj->mpad + (q + r - r % GEMM_MR) * kc + r % GEMM_MR;
}

/* one item, its block's panels at panel: for each K chunk, each panel, each group (one, or two
 * on a narrow last panel) a micro-kernel call; the item's rows (at most GMAX groups) set up once:
 * their rows' offsets in w, where their outputs go in panel 0 (y or cbuf), their biases */
static uint64_t run_item(const pjob *pj, const pitem *it, const float *panel, const ukset *uk) {
    const panel_conv *d = pj->c;
    int64_t K = d->K, P = d->P, b = it->b, bw = d->bw[b], np = (bw + 15) / 16;
    const int32_t *rows = d->rows + b * d->rstride;
    int64_t nk = d->nkept[b], as = d->wpack ? GEMM_MR : 1;
    const int64_t *px = d->pix + b * BLK;
    if (!d->cbuf && it->g0 == 0)   /* tile, channel: the block's dropped rows */
        for (int64_t i = nk; i < d->mg; i++) zero_short(d->y + rows[i] * P + px[0], bw);
    if (it->g0 == it->g1) return 0;
    int64_t gs[GMAX + 1];   /* the item's group g starts at row gs[g - g0] of the list */
    for (int64_t g = it->g0; g <= it->g1; g++) gs[g - it->g0] = group_start(d, g, nk);
    /* the item's rows, list index i at [i - i0] */
    int64_t i0 = gs[0], nrows = gs[it->g1 - it->g0] - i0, aoff[GMAX * 6];
    float *cp0[GMAX * 6], bias[GMAX * 6];
    for (int64_t q = 0; q < nrows; q++) {
        int64_t row = rows[i0 + q];
        aoff[q] = row * K;
        cp0[q] = d->cbuf ? d->cbuf + (row - d->row0) * pj->ldc + b * BLK : d->y + row * P + px[0];
        bias[q] = d->bias ? d->bias[row] : 0.0f;
    }
    ukepi e = {NULL, d->act, d->p0, d->p1, d->scale};
    const float *a[12];
    float *c[12];
    for (int64_t pc = 0; pc < K; pc += d->kc) {
        int64_t kc = K - pc < d->kc ? K - pc : d->kc;
        int last = pc + kc == K;
        for (int64_t j = 0; j < np; j++) {
            const float *bp = panel + j * K * 16 + pc * 16;
            int64_t s = b * BLK + 16 * j, nr = bw - 16 * j < 16 ? bw - 16 * j : 16, half = nr <= 8;
            /* groups g .. g + step - 1 at a time: one, or two on a narrow last panel */
            for (int64_t g = it->g0, step = half ? 2 : 1; g < it->g1; g += step) {
                int64_t ge = g + step < it->g1 ? g + step : it->g1, i = gs[g - it->g0] - i0;
                int64_t mr = gs[ge - it->g0] - i0 - i;
                for (int64_t r = 0; r < mr; r++) {
                    a[r] = item_a(pj, aoff + i, i0 + i, r, pc, kc);
                    c[r] = cp0[i + r] + 16 * j;
                }
                e.bias = bias + i;
                if (last && d->cbuf) prefetch_rows(pj, s, rows + i0 + i, mr);
                if (half) uk->half(kc, mr, a, as, bp, c, d->cbuf ? 8 : nr, pc == 0, last ? &e : NULL);
                else uk->full[mr](kc, a, as, bp, c, d->cbuf ? 16 : nr, pc == 0, last ? &e : NULL);
                if (last && d->cbuf) scatter_rows(pj, s, nr, rows + i0 + i, mr, c);
            }
        }
    }
    return (uint64_t)(nrows * bw);
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

/* d[j] = s[j sw] for j < n; strides 2 to 4 as constants, which the compiler vectorises */
INLINE void copy_strided(float *d, const float *s, int64_t n, int64_t sw) {
    switch (sw) {
    case 2: for (int64_t j = 0; j < n; j++) d[j] = s[2 * j]; break;
    case 3: for (int64_t j = 0; j < n; j++) d[j] = s[3 * j]; break;
    case 4: for (int64_t j = 0; j < n; j++) d[j] = s[4 * j]; break;
    default: for (int64_t j = 0; j < n; j++) d[j] = s[j * sw]; break;
    }
}

/* rows [r0, r1) (r = channel Hp + row) of the padded input split in stride phases (layout, below) */
static void pad_phases(const panel_conv *c, int64_t r0, int64_t r1) {
    const conv_params *cp = c->cp;
    int64_t sw = cp->sw, Wq = c->Wq, Wp = (cp->ow - 1) * sw + (cp->kw - 1) * cp->dw + 1;
    int64_t E = cp->w + cp->pl < Wp ? cp->w + cp->pl : Wp;   /* padded columns [pl, E) hold the image's */
    for (int64_t r = r0; r < r1; r++) {
        int64_t iy = r % c->Hp - cp->pt;
        float *d = c->xpad + r * c->pitch;
        if (iy < 0 || iy >= cp->h) { memset(d, 0, (size_t)c->pitch * sizeof(float)); continue; }
        const float *s = c->x + (r / c->Hp * cp->h + iy) * cp->w - cp->pl;   /* s[column] */
        for (int64_t ph = 0; ph < sw; ph++, d += Wq) {
            /* column j sw + ph: in the image for j in [j0, j1) */
            int64_t j0 = cp->pl > ph ? (cp->pl - ph + sw - 1) / sw : 0, j1 = E > ph ? (E - ph + sw - 1) / sw : 0, j = 0;
            if (j1 > Wq) j1 = Wq;
            for (; j < j0 && j < Wq; j++) d[j] = 0.0f;
            if (j < j1) copy_strided(d + j, s + j * sw + ph, j1 - j, sw);
            for (j = j > j1 ? j : j1; j < Wq; j++) d[j] = 0.0f;
        }
    }
}

static uint64_t pad_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    const panel_conv *c = pj->c;
    int64_t rows = c->cp->c / c->cp->group * c->Hp, step = (rows + PADU - 1) / PADU;
    int64_t r0 = u * step, r1 = r0 + step < rows ? r0 + step : rows;
    if (r0 >= r1) return 0;
    if (c->cp->sw == 1) conv_pad_rows(c->cp, c->x, c->Hp, c->pitch, c->xpad, r0, r1);
    else pad_phases(c, r0, r1);
    return 0;
}

/* block b's panels in cols (shared by the threads) */
static float *block_panels(const pjob *pj, int64_t b) { return pj->c->cols + b * 4 * pj->c->K * 16; }

/* the panels of the widest block (PANEL_SHARED's last one can have a fifth, see panel_slots) */
static int64_t max_panels(const panel_conv *c) { return (c->bw[c->nblk - 1] + 15) / 16 > 4 ? 5 : 4; }

static uint64_t item_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    return run_item(pj, pj->c->items + u, block_panels(pj, pj->c->items[u].b), uk);
}

/* Whole blocks: the outputs of neighbouring blocks share cache lines at their boundary, so
 * neighbours are best done by one thread, one after the other, not by two at once. The
 * blocks are cut in runs of consecutive ones, one run per two threads; a thread takes the
 * blocks of its run one at a time from one end (even tid from the front, odd tid from the
 * back), then, its run done, helps with the others' from the front. Every claim finds a
 * block: there are as many claims (units of the phase) as blocks. */
static int64_t claim_block(pjob *pj, int64_t tid, int64_t *next) {
    int64_t S = pj->nbrun, own = tid / 2 % S;
    for (int64_t i = 0; i < S; i++) {
        brun *r = &pj->brun[(own + i) % S];
        if (__atomic_fetch_add(&r->taken, 1, __ATOMIC_RELAXED) >= r->n) continue;
        if (i == 0 && tid % 2) {
            int64_t b = r->b0 + r->n - 1 - __atomic_fetch_add(&r->back, 1, __ATOMIC_RELAXED);
            *next = b - 1;
            return b;
        }
        int64_t b = r->b0 + __atomic_fetch_add(&r->front, 1, __ATOMIC_RELAXED);
        *next = b + 1;
        return b;
    }
    return -1;   /* not reached */
}

/* a whole block by one thread: its panels in room tid of cols (rooms of max_panels()), the
 * thread's own (whole_blocks checks that there is room), which stays in its cache from one block
 * to the next (the blocks' panels are not all written out to memory) */
static uint64_t block_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    uint64_t done = 0;
    float *own = pj->c->cols + tid * max_panels(pj->c) * pj->c->K * 16;
    int64_t next = -1, b = claim_block(pj, tid, &next);
    if (pj->c->nkept[b]) gather_block(pj, b, next, own, 0, pj->c->K);
    for (int64_t it = pj->c->istart[b]; it < pj->c->istart[b + 1]; it++) done += run_item(pj, pj->c->items + it, own, uk);
    return done;
}

static uint64_t gather_unit(pjob *pj, int64_t u, const ukset *uk, int64_t tid) {
    int64_t K = pj->c->K, step = (K + GR - 1) / GR, i = u / GR, r0 = (u % GR) * step, r1 = r0 + step < K ? r0 + step : K;
    if (r0 < r1 && pj->c->nkept[i]) gather_block(pj, i, i + 1, block_panels(pj, i), r0, r1);
    return 0;
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
    __atomic_fetch_add(&pj->done, done, __ATOMIC_RELAXED);
}

static void add_phase(pjob *pj, int64_t n, uint64_t (*fn)(pjob *, int64_t, const ukset *, int64_t)) {
    pj->ph[pj->nphase++] = (pphase){n, 0, fn};
}

/* whole blocks, one thread each, when the threads taking them in order stay busy 90% of the
 * time (block b costs about (nkept[b] + 1) bw[b]; each goes to the least loaded thread) */
static int whole_blocks(const pjob *pj, int64_t nblk, int64_t T) {
    if (T == 1) return 1;
    if (nblk < T || T * max_panels(pj->c) > pj->c->room) return 0;   /* each thread needs a room in cols */
    if (T > 64) return nblk >= 4 * T;
    int64_t load[64] = {0}, total = 0, span = 0;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t c = (pj->c->nkept[b] + 1) * (int64_t)pj->c->bw[b], t = 0;
        for (int64_t i = 1; i < T; i++) if (load[i] < load[t]) t = i;
        load[t] += c;
        total += c;
        if (load[t] > span) span = load[t];
    }
    return 10 * total >= 9 * T * span;
}

/* items of nblk blocks (block b: nkept[b] rows in ngroups() groups, cut in `parts` ranges of at
 * most GMAX groups; a block with no kept row gets one empty item, which zeroes its rows),
 * then the pass: padding (when a block has rows to compute and the input needs it) and the
 * blocks' work, whole blocks (whole_blocks) or all gathers then all items */
uint64_t panel_run(pool *p, panel_conv *pc) {
    pjob job = {.c = pc, .xp = pc->alias ? pc->x : pc->xpad, .ldc = pc->nblk * BLK,
                  .mpad = (pc->mg + GEMM_MR - 1) / GEMM_MR * GEMM_MR}, *pj = &job;
    int64_t T = pool_threads(p), nblk = pc->nblk, fused = whole_blocks(pj, nblk, T), nit = 0, any = 0;
    int64_t parts = fused ? 1 : (16 * T + nblk - 1) / nblk;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t ng = ngroups(pc->nkept[b]), np = (ng + GMAX - 1) / GMAX;
        if (np < parts) np = parts;
        if (np > ng) np = ng;
        pc->istart[b] = nit;
        any |= np;
        if (!np) pc->items[nit++] = (pitem){(int32_t)b, 0, 0};
        for (int64_t q = 0; q < np; q++)
            pc->items[nit++] = (pitem){(int32_t)b, (int32_t)(q * ng / np), (int32_t)((q + 1) * ng / np)};
    }
    pc->istart[nblk] = nit;
    if (any && !pc->alias) add_phase(pj, PADU, pad_unit);
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
    return job.done;
}

/* -- layout ---------------------------------------------------------------------------------- */
/* The padded input: every tap of every output pixel inside it, Hp rows of Wp columns a channel.
 * At column stride sw > 1 each row is stored split in its sw stride phases (columns ph,
 * ph + sw, ... at ph Wq, Wq floats a phase, pitch = sw Wq floats a row), so that the taps of
 * consecutive output pixels are consecutive floats at every stride: tap column ox sw + t lies
 * in phase t % sw at t / sw + ox. The gathers copy unit-stride runs only (a strided gather
 * costs several loads and shuffles per 8 taps, and the copy reads each input float once). */
static void padded_size(const conv_params *cp, int64_t *Hp, int64_t *Wq, int64_t *pitch) {
    int64_t Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
    *Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    *Wq = (Wp + cp->sw - 1) / cp->sw;
    *pitch = *Wq * cp->sw;
}

int panel_fits(const conv_params *cp) {
    int64_t Hp, Wq, pitch;
    padded_size(cp, &Hp, &Wq, &pitch);
    return Hp * pitch < ((int64_t)1 << 31) && cp->oh * cp->ow > 0 && cp->c / cp->group * cp->kh * cp->kw > 0;
}

/* the input is its own padded image: unit column stride, no pads, every row and column read */
static int aliased(const conv_params *cp, int64_t Hp, int64_t pitch) {
    return cp->sw == 1 && cp->pt == 0 && cp->pl == 0 && Hp == cp->h && pitch == cp->w;
}

/* the regions, in order (bytes; each taken 64-byte aligned) */
enum { R_XPAD, R_PIX, R_ROFF, R_LEAD, R_BASE, R_SEGS, R_NSEGS, R_PFO, R_NPFO, R_BW, R_NKEPT, R_COLS, R_ROWS, R_ITEMS, R_ISTART, R_CBUF, R_WINS, R_NWINS, NREG };
static void panel_regions(const conv_params *cp, int mode, size_t *sz) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + BLK - 1) / BLK, Hp, Wq, pitch;
    padded_size(cp, &Hp, &Wq, &pitch);
    sz[R_XPAD] = aliased(cp, Hp, pitch) ? 0 : (size_t)(cg * Hp * pitch) * sizeof(float);
    sz[R_PIX] = (size_t)(TB * BLK) * sizeof(int64_t);
    sz[R_ROFF] = (size_t)K * sizeof(int64_t);
    sz[R_LEAD] = (size_t)K;
    sz[R_BASE] = (size_t)(TB * BLK) * sizeof(int32_t);
    sz[R_SEGS] = (size_t)(TB * BLK) * sizeof(pseg);
    sz[R_PFO] = (size_t)(TB * PFMAX) * sizeof(int32_t);
    sz[R_NSEGS] = sz[R_NPFO] = sz[R_BW] = sz[R_NKEPT] = (size_t)TB * sizeof(int32_t);
    sz[R_COLS] = (size_t)(TB * BLK * K) * sizeof(float);
    sz[R_ROWS] = (size_t)(mode == PANEL_BLOCKS ? TB * mg : cp->m) * sizeof(int32_t);
    sz[R_ITEMS] = (size_t)(TB * ((mg + 5) / 6 + 1)) * sizeof(pitem);
    sz[R_ISTART] = (size_t)(TB + 1) * sizeof(int64_t);
    sz[R_CBUF] = mode == PANEL_PIXELS ? (size_t)(mg * TB * BLK) * sizeof(float) : 0;
    /* windows only where the CPU has their gather (the portable one goes slot by slot):
     * without their regions nwins is NULL and no block lists any */
    int windows = 0;
#ifdef HAVE_DISPATCH
    windows = mode == PANEL_PIXELS && have_avx2();
#endif
    sz[R_WINS] = windows ? (size_t)(TB * BLK) * sizeof(pwin) : 0;
    sz[R_NWINS] = windows ? (size_t)TB * sizeof(int32_t) : 0;
}

size_t panel_scratch_bytes(const conv_params *cp, int mode) {
    size_t n = 0, sz[NREG];
    panel_regions(cp, mode, sz);
    for (int r = 0; r < NREG; r++) n += ALIGN64(sz[r]);
    return n;
}

void panel_bind(const conv_params *cp, int mode, void *scratch, panel_conv *pc) {
    size_t sz[NREG];
    void *reg[NREG];
    uint8_t *cur = scratch;
    panel_regions(cp, mode, sz);
    for (int r = 0; r < NREG; r++) {
        reg[r] = sz[r] ? cur : NULL;
        cur += ALIGN64(sz[r]);
    }
    memset(pc, 0, sizeof *pc);
    pc->cp = cp;
    pc->K = cp->c / cp->group * cp->kh * cp->kw;
    pc->P = cp->oh * cp->ow;
    pc->mg = cp->m / cp->group;
    padded_size(cp, &pc->Hp, &pc->Wq, &pc->pitch);
    pc->kc = gemm_kstep(pc->K);
    pc->alias = aliased(cp, pc->Hp, pc->pitch);
    pc->mode = mode;
    pc->room = (pc->P + BLK - 1) / BLK * (BLK / 16);
    pc->xpad = reg[R_XPAD]; pc->pix = reg[R_PIX]; pc->roff = reg[R_ROFF]; pc->lead = reg[R_LEAD]; pc->base = reg[R_BASE];
    pc->segs = reg[R_SEGS]; pc->nsegs = reg[R_NSEGS]; pc->pfo = reg[R_PFO]; pc->npfo = reg[R_NPFO]; pc->bw = reg[R_BW]; pc->nkept = reg[R_NKEPT];
    pc->cols = reg[R_COLS]; pc->rowbuf = reg[R_ROWS]; pc->items = reg[R_ITEMS]; pc->istart = reg[R_ISTART];
    pc->cbuf = reg[R_CBUF]; pc->wins = reg[R_WINS]; pc->nwins = reg[R_NWINS];
    for (int64_t r = 0, kk = cp->kh * cp->kw; r < pc->K; r++) {
        int64_t t = r % cp->kw * cp->dw;   /* the tap's column offset: phase t % sw, t / sw into it */
        pc->roff[r] = (r / kk) * pc->Hp * pc->pitch + (r % kk) / cp->kw * cp->dh * pc->pitch + t % cp->sw * pc->Wq + t / cp->sw;
        /* the first tap of its phase in its kernel row: the taps after it in that phase read
         * the same lines, up to pfext floats further */
        pc->lead[r] = 1;
        for (int64_t u = t - cp->dw; u >= 0 && pc->lead[r]; u -= cp->dw) pc->lead[r] = u % cp->sw != t % cp->sw;
    }
    pc->pfext = (cp->kw - 1) * cp->dw / cp->sw;
}

void panel_slots(panel_conv *pc, int64_t nslot) {
    pc->nslot = nslot;
    pc->nblk = (nslot + BLK - 1) / BLK;
    /* PANEL_SHARED: a last block of one panel or less joins the one before, so that the rows'
     * weights are not read once more for a few pixels (the other modes: a block is a tile) */
    if (pc->mode == PANEL_SHARED && pc->nblk > 1 && nslot - (pc->nblk - 1) * BLK <= 16) pc->nblk--;
    int64_t maxbase = (pc->cp->oh - 1) * pc->cp->sh * pc->pitch + pc->cp->ow - 1;   /* the last pixel's offset */
    for (int64_t b = 0; b < pc->nblk; b++) {
        pc->bw[b] = (int32_t)(b == pc->nblk - 1 ? nslot - b * BLK : BLK);
        pc->nsegs[b] = block_segs(pc->cp, pc->pitch, pc->pix + b * BLK, pc->bw[b], pc->base + b * BLK, pc->segs + b * BLK);
        pc->npfo[b] = block_prefetch(pc->segs + b * BLK, pc->nsegs[b], pc->pfext, pc->pfo + b * PFMAX);
        if (pc->nwins)
            pc->nwins[b] = block_windows(pc->K, pc->base + b * BLK, pc->bw[b], maxbase, pc->wins + b * BLK);
    }
}
