/* DrowsyNet (mirror of kernels/drowsy.py): the counter-based mask generator and masked
 * 2-D convolution that computes the kept outputs only.
 *
 * Masks: bit for bit the generator documented in kernels/drowsy.py (splitmix64 over
 * seed, image, layer and unit; unit numbering per granularity; 16 x 64 tiles). Dropped
 * outputs are 0 whatever the fused activation; survivors are act(acc + bias) * scale.
 *
 * Kernels, by granularity (each loops over kept work only):
 *   tile, pixel, channel: one engine of register-tiled panel products. The group's input
 *            is copied once to a zero-padded image (no bounds checks in the gathers); the
 *            pixels to compute are cut in blocks of 64, each gathered (masked AVX2 gathers)
 *            into up to 4 panels of K x 16; weights are packed as tiles of 16 rows x K (K x
 *            16, all 16 rows of a tile in one cache line per k). One item = one tile x one
 *            block: a 16 x 64 product (6 + 6 + 4 rows x 16 columns micro-kernels), KC-blocked
 *            so that both operands stay in L1, then act(acc + bias) * scale straight into
 *            the outputs. Per granularity:
 *              tile     the blocks with a kept tile, the kept tiles of each (weights packed
 *                       once per layer);
 *              pixel    blocks of the kept pixels only, every tile, outputs scattered back
 *                       to their pixels (weights packed once per layer);
 *              channel  every block, tiles of the kept rows only (packed per image), so a
 *                       dropped row costs nothing but its zeroing;
 *   neuron   the group's input copied once to a zero-padded channels-last image and the
 *            weights reordered once per layer to match, so that a patch is kh contiguous
 *            runs of the image itself (or, when kw * C/group is not a multiple of 8, one
 *            row of a patch matrix); per run of <= 16 pixels of an output row and chunk of
 *            64 channels, the kept (channel, pixel) outputs are listed (branch-free, from
 *            the mask's bits) and computed eight at a time: eight dot products vectorised
 *            over K that share the weight loads of the (at most two) channels in the group,
 *            reduced with a transpose-add once per K chunk.
 *   depthwise (group == C, one input channel per group) a direct kernel over kept outputs.
 * The inner loops are written with GCC vector extensions (SSE/AVX on x86-64, NEON on
 * AArch64) and compiled a second time with target("avx2,fma") on x86-64, chosen at run
 * time as in gemm.c; nothing assumes AVX-512. Threads: the pthread pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

static void units_task(void *ctx, int64_t b, int64_t e) {
    const units_job *j = ctx;
    for (int64_t u = b; u < e; u++) j->keep[u] = (mix64(j->key ^ (GAMMA * ((uint64_t)u + 1))) >> 40) >= j->thr;
}

void drowsy_keep_units(pool *p, uint64_t key, uint32_t thr, uint8_t *keep, int64_t n) {
    units_job j = {key, thr, keep};
    pool_for(p, n, 4096, units_task, &j);
}

/* -- shared helpers -------------------------------------------------------------------- */
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

/* the work of one image and group, shared by the tasks */
typedef struct djob {
    const conv_params *cp;
    const float *x;          /* this group's input channels (C/group x H x W) */
    const float *bias;
    float *y;                /* this image's output (M x P) */
    const uint8_t *units;    /* this image's unit mask */
    int act; float p0, p1, scale;
    int64_t K, P, row0, mg;
    /* panels: xpad (C/group x Hp x Wp) the zero-padded input; slot s of the pixel list
     * (blocks of 64 slots) is output pixel pix[s] at xpad offset base[s], -1 past the end */
    const float *xpad; int64_t Hp, Wp;
    const int64_t *pix; const int32_t *base; const int64_t *bw;   /* bw[i]: valid slots of block i */
    int contig;              /* pixels of a block consecutive (tile, channel) or scattered (pixel) */
    float *cols;             /* panels: block i at cols + i K 64, 4 panels of K x 16 */
    /* weight tiles (K x 16): items[it] = block * ntiles + tile, block i's items from
     * bstart[i] to bstart[i + 1]; rowmap: the output row of tile row v * 16 + l (channel
     * granularity: the kept rows, nrows of them), NULL: tile t is rows 16 t .. 16 t + 15 */
    const float *wt; const int64_t *items, *bstart; int64_t ntiles;
    const int64_t *rowmap; int64_t nrows;
    /* counts, one slot per task start (summed afterwards) */
    uint64_t *done;
} djob;

/* The padded input (conv_pad_input, conv.c): every tap of every output pixel lies at a fixed
 * offset from the pixel's origin, so the gathers need no bounds checks. */

/* -- panels and register-tiled products (tile, pixel, channel) ------------------------------ */
/* Block i of the pixel list is packed as up to 4 panels of K x 16 (16 pixels a row, the
 * B operand of the micro-kernels); weight tiles are K x 16 (16 output rows a k, the A
 * operand, broadcast). One item = one 16-row tile x one block: acc[16][64] in registers
 * per 6 / 6 / 4 rows x 16 columns, K in chunks of TKC so that the weight chunk (8 KB) and
 * one panel chunk (8 KB) stay in L1; then act(acc + bias) * scale to the item's outputs. */
enum { TKC = 128 };

/* panel row r of block i: 16 slots at a time, each xpad[roff(r) + base[s]], 0 for empty
 * slots (their columns are computed and dropped) */
#define DEFINE_GATHER_BLOCK(NAME, ATTR, ROW)                                                       \
    ATTR static void NAME(const djob *j, int64_t i, int64_t r0, int64_t r1) {                      \
        const conv_params *cp = j->cp;                                                             \
        int64_t K = j->K, kk = cp->kh * cp->kw, hw = j->Hp * j->Wp, np = (j->bw[i] + 15) / 16;     \
        float *panel = j->cols + i * K * DROWSY_TILE_P;                                            \
        const int32_t *bs = j->base + i * DROWSY_TILE_P;                                           \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            int64_t c = r / kk, ti = (r % kk) / cp->kw, tj = r % cp->kw;                           \
            const float *xr = j->xpad + c * hw + ti * cp->dh * j->Wp + tj * cp->dw;                \
            for (int64_t pn = 0; pn < np; pn++) ROW(panel + pn * K * 16 + r * 16, xr, bs + pn * 16); \
        }                                                                                          \
    }
INLINE void gather16_base(float *d, const float *xr, const int32_t *bs) {
    for (int t = 0; t < 16; t++) d[t] = bs[t] >= 0 ? xr[bs[t]] : 0.0f;
}
DEFINE_GATHER_BLOCK(gather_block_base, , gather16_base)
#ifdef HAVE_DISPATCH
/* masked hardware gathers: empty slots (-1) load nothing and give 0 */
AVX2_ATTR INLINE void gather16_avx2(float *d, const float *xr, const int32_t *bs) {
    __m256i i0 = _mm256_loadu_si256((const __m256i *)bs), i1 = _mm256_loadu_si256((const __m256i *)(bs + 8));
    __m256i neg = _mm256_set1_epi32(-1);
    __m256 m0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, neg)), m1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, neg));
    _mm256_storeu_ps(d, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i0, m0, 4));
    _mm256_storeu_ps(d + 8, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i1, m1, 4));
}
DEFINE_GATHER_BLOCK(gather_block_avx2, AVX2_ATTR, gather16_avx2)
#endif

static void gather_block(const djob *j, int64_t i, int64_t r0, int64_t r1) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) { gather_block_avx2(j, i, r0, r1); return; }
#endif
    gather_block_base(j, i, r0, r1);
}

/* few blocks: each cut in GR chunks of K so that both threads have work */
enum { GR = 8 };
static void gather_blocks_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    int64_t step = (j->K + GR - 1) / GR;
    for (int64_t u = b; u < e; u++) {
        int64_t r0 = (u % GR) * step, r1 = r0 + step < j->K ? r0 + step : j->K;
        if (r0 < r1) gather_block(j, u / GR, r0, r1);
    }
}

/* c[i][0..15] (+)= sum_k a[k*16 + i] * b[k*16 + 0..15], i < R; c has stride 64 */
#define DEFINE_TILE_UK(NAME, R, ATTR)                                                              \
    ATTR INLINE void NAME(int64_t kc, const float *a, const float *b, float *c, int acc) {         \
        v8 s[R][2];                                                                                \
        for (int i = 0; i < R; i++) s[i][0] = s[i][1] = (v8){0};                                   \
        for (int64_t k = 0; k < kc; k++, a += 16, b += 16) {                                       \
            v8 b0 = *(const v8 *)b, b1 = *(const v8 *)(b + 8);                                     \
            for (int i = 0; i < R; i++) {                                                          \
                v8 t = (v8){0} + a[i];                                                             \
                s[i][0] += t * b0;                                                                 \
                s[i][1] += t * b1;                                                                 \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < R; i++) {                                                              \
            v8 *p0 = (v8 *)(c + i * 64), *p1 = (v8 *)(c + i * 64 + 8);                             \
            if (acc) { *p0 += s[i][0]; *p1 += s[i][1]; }                                           \
            else { *p0 = s[i][0]; *p1 = s[i][1]; }                                                 \
        }                                                                                          \
    }

DEFINE_TILE_UK(tuk6_base, 6, )
DEFINE_TILE_UK(tuk4_base, 4, )

#ifdef HAVE_DISPATCH
/* AVX2: the 6 x 16 and 4 x 16 tiles with broadcasts from memory (12 / 8 accumulators) */
#define DEFINE_TILE_UK_AVX2(NAME, R)                                                               \
    AVX2_ATTR INLINE void NAME(int64_t kc, const float *a, const float *b, float *c, int acc) {    \
        __m256 s0[R], s1[R];                                                                       \
        for (int i = 0; i < R; i++) s0[i] = s1[i] = _mm256_setzero_ps();                           \
        for (int64_t k = 0; k < kc; k++, a += 16, b += 16) {                                       \
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);                             \
            for (int i = 0; i < R; i++) {                                                          \
                __m256 t = _mm256_broadcast_ss(a + i);                                             \
                s0[i] = _mm256_fmadd_ps(t, b0, s0[i]);                                             \
                s1[i] = _mm256_fmadd_ps(t, b1, s1[i]);                                             \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < R; i++) {                                                              \
            float *p = c + i * 64;                                                                 \
            if (acc) {                                                                             \
                s0[i] = _mm256_add_ps(s0[i], _mm256_load_ps(p));                                   \
                s1[i] = _mm256_add_ps(s1[i], _mm256_load_ps(p + 8));                               \
            }                                                                                      \
            _mm256_store_ps(p, s0[i]);                                                             \
            _mm256_store_ps(p + 8, s1[i]);                                                         \
        }                                                                                          \
    }
DEFINE_TILE_UK_AVX2(tuk6_avx2, 6)
DEFINE_TILE_UK_AVX2(tuk4_avx2, 4)
#endif

/* one item: acc[16][64] = W_t (16 x K, packed K x 16) . panel (K x 16 np, np x K x 16);
 * rows < nr only (a tile's rows past the group or the kept rows are not computed when a
 * whole 6- or 4-row micro-tile lies past them) */
#define DEFINE_TILE_PRODUCT(NAME, UK6, UK4, ATTR)                                                  \
    ATTR static void NAME(int64_t K, int64_t np, int64_t nr, const float *wt, const float *panel, float *acc) { \
        for (int64_t pc = 0; pc < K; pc += TKC) {                                                  \
            int64_t kc = K - pc < TKC ? K - pc : TKC;                                              \
            const float *a = wt + pc * 16;                                                         \
            for (int64_t jb = 0; jb < np; jb++) {                                                  \
                const float *b = panel + jb * K * 16 + pc * 16;                                    \
                UK6(kc, a, b, acc + jb * 16, pc > 0);                                              \
                if (nr > 6) UK6(kc, a + 6, b, acc + 6 * 64 + jb * 16, pc > 0);                     \
                if (nr > 12) UK4(kc, a + 12, b, acc + 12 * 64 + jb * 16, pc > 0);                  \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE_PRODUCT(tile_product_base, tuk6_base, tuk4_base, )
#ifdef HAVE_DISPATCH
DEFINE_TILE_PRODUCT(tile_product_avx2, tuk6_avx2, tuk4_avx2, AVX2_ATTR)
#endif

/* outputs of one acc row: y[q] = act(a[l] + bias) * scale for the block's slots l < width */
#define OUT_ROW(ACT)                                                                               \
    if (j->contig)                                                                                 \
        for (int64_t l = 0; l < width; l++) yr[l] = apply(a[l] + bb, ACT, j->p0, j->p1) * j->scale; \
    else                                                                                           \
        for (int64_t l = 0; l < width; l++) yr[px[l]] = apply(a[l] + bb, ACT, j->p0, j->p1) * j->scale;

static uint64_t tile_one(const djob *j, int64_t it, float *acc) {
    int64_t K = j->K, P = j->P;
    int64_t i = j->items[it] / j->ntiles, t = j->items[it] % j->ntiles;
    int64_t width = j->bw[i], np = (width + 15) / 16;
    /* acc rows l0 .. l1 - 1 are output rows (rowmap ? rowmap[16 t + l] : 16 t + l) */
    int64_t l0 = 0, l1 = 16;
    if (j->rowmap) { if (l1 > j->nrows - 16 * t) l1 = j->nrows - 16 * t; }
    else {
        if (16 * t < j->row0) l0 = j->row0 - 16 * t;
        if (l1 > j->row0 + j->mg - 16 * t) l1 = j->row0 + j->mg - 16 * t;
    }
    const float *panel = j->cols + i * K * DROWSY_TILE_P, *wt = j->wt + t * K * 16;
#ifdef HAVE_DISPATCH
    if (have_avx2()) tile_product_avx2(K, np, l1, wt, panel, acc);
    else
#endif
        tile_product_base(K, np, l1, wt, panel, acc);
    const int64_t *px = j->pix + i * DROWSY_TILE_P;
    for (int64_t l = l0; l < l1; l++) {
        int64_t r = j->rowmap ? j->rowmap[16 * t + l] : 16 * t + l;
        float bb = j->bias ? j->bias[r] : 0.0f;
        const float *a = acc + l * 64;
        float *yr = j->y + r * P + (j->contig ? px[0] : 0);
        switch (j->act) {
        case ACT_RELU: OUT_ROW(ACT_RELU) break;
        case ACT_CLIP: OUT_ROW(ACT_CLIP) break;
        case ACT_LEAKY: OUT_ROW(ACT_LEAKY) break;
        default: OUT_ROW(ACT_NONE) break;
        }
    }
    return (uint64_t)((l1 - l0) * width);
}

static void tile_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    float acc[16 * 64] __attribute__((aligned(64)));
    uint64_t done = 0;
    for (int64_t it = b; it < e; it++) done += tile_one(j, it, acc);
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* many blocks: per block, gather its panels, then its items (the panels are still in L2
 * when they read them) */
static void tile_block_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    float acc[16 * 64] __attribute__((aligned(64)));
    uint64_t done = 0;
    for (int64_t i = b; i < e; i++) {
        gather_block(j, i, 0, j->K);
        for (int64_t it = j->bstart[i]; it < j->bstart[i + 1]; it++) done += tile_one(j, it, acc);
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* weight tiles K x 16: tile t holds rows rowmap[16 t + l] (or 16 t + l), 0 past the rows */
typedef struct pack_job { const float *w; float *wt; const int64_t *rowmap; int64_t nrows, K; } pack_job;
static void pack_tiles_task(void *ctx, int64_t b, int64_t e) {
    const pack_job *j = ctx;
    for (int64_t t = b; t < e; t++) {
        float *d = j->wt + t * j->K * 16;
        for (int64_t l = 0; l < 16; l++) {
            int64_t v = t * 16 + l;
            if (v < j->nrows) {
                const float *s = j->w + (j->rowmap ? j->rowmap[v] : v) * j->K;
                for (int64_t k = 0; k < j->K; k++) d[k * 16 + l] = s[k];
            } else
                for (int64_t k = 0; k < j->K; k++) d[k * 16 + l] = 0.0f;
        }
    }
}

/* slot s of block list: base offset of pixel pix[s] in xpad (its tap (0, 0)), -1 if none;
 * int32 for the AVX2 gathers' indices (a channel plane Hp x Wp < 2^31 floats) */
static void slot_bases(const conv_params *cp, int64_t Wp, const int64_t *pix, int32_t *base, int64_t n) {
    for (int64_t s = 0; s < n; s++) {
        int64_t q = pix[s];
        base[s] = q < 0 ? -1 : (int32_t)((q / cp->ow) * cp->sh * Wp + (q % cp->ow) * cp->sw);
    }
}

/* the panel products of one image and group: blocks of pix (nb of them, widths bw), items,
 * gathered then computed (few blocks: gathers shared out first) or fused per block */
static void run_panels(pool *p, djob *j, int64_t nb, int64_t nit) {
    if (!nit) return;
    if (nb >= 4 * pool_threads(p)) pool_for(p, nb, 1, tile_block_task, j);
    else {
        pool_for(p, nb * GR, 1, gather_blocks_task, j);
        pool_for(p, nit, 1, tile_task, j);
    }
}

/* -- neuron: eight kept outputs at a time ------------------------------------------------ */
/* Layout. The input of the group is copied once into a zero-padded channels-last image xp
 * (Hp x Wp x cg, the padding made explicit), and the weights are reordered once per layer
 * to the same (tap row, tap column, channel) order, wn (M x Kn). Then the taps of output
 * pixel (oy, ox) on tap row i are the kw * cg contiguous floats at
 * xp + ((oy sh + i dh) Wp + ox sw) cg: a patch is kh contiguous segments of the image
 * itself, and no patch matrix is built ("direct" mode, when dw == 1 and kw * cg is a
 * multiple of 8). Otherwise (e.g. the 3-channel first layer) each patch is copied into a
 * row of Kn = K rounded up to 8 floats, zero-padded (one segment per pixel). Either way a
 * dot product is a whole number of 8-float vectors, no scalar tail.
 *
 * Work items: a run of at most NBP pixels of one output row x a chunk of NCN channels.
 * The item's kept outputs are listed in channel order and cut into groups of at most 8
 * outputs and at most 2 channels; one group is eight dot products vectorised over K that
 * share the loads of the two weight rows (10 vector loads per 8 FMAs), reduced once per
 * K chunk with a transpose-add. A K chunk is a few tap rows whose image region (the run's
 * pixels overlap on it) stays in L1 while the item's channels stream past it. */
enum { NBP = 16, NCN = 64, NREGION = 20 * 1024 };

typedef struct nlayout {
    int direct;
    int64_t Kn, L, nseg, xs;   /* K rounded, segment length, segments per patch, stride between segments */
    int64_t Hp, Wp, nbr;       /* padded image, runs per output row */
    int64_t sc;                /* segments per K chunk */
    const float *xp, *rows, *wn;
} nlayout;

static void neuron_layout(const conv_params *cp, nlayout *l) {
    int64_t cg = cp->c / cp->group, K = cg * cp->kh * cp->kw;
    l->direct = cp->dw == 1 && (cp->kw * cg) % 8 == 0;
    l->Kn = l->direct ? K : (K + 7) / 8 * 8;
    l->Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    l->Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
    l->nbr = (cp->ow + NBP - 1) / NBP;
    int64_t nb = (cp->ow + l->nbr - 1) / l->nbr, bytes;
    if (l->direct) {
        l->L = cp->kw * cg; l->nseg = cp->kh; l->xs = cp->dh * l->Wp * cg;
        bytes = ((nb - 1) * cp->sw + cp->kw) * cg * (int64_t)sizeof(float);
    } else {
        l->L = l->Kn; l->nseg = 1; l->xs = 0;
        bytes = nb * l->Kn * (int64_t)sizeof(float);
    }
    int64_t nchunk = (l->nseg * bytes + NREGION - 1) / NREGION;
    if (nchunk < 1) nchunk = 1;
    if (nchunk > l->nseg) nchunk = l->nseg;
    l->sc = (l->nseg + nchunk - 1) / nchunk;
}

/* wn[m, (i kw + j) cg + c] = w[m, (c kh + i) kw + j], rows zero-padded to Kn */
typedef struct nw_job { const conv_params *cp; const float *w; float *wn; int64_t Kn; } nw_job;
static void neuron_weights_task(void *ctx, int64_t b, int64_t e) {
    const nw_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t cg = cp->c / cp->group, kk = cp->kh * cp->kw, K = cg * kk;
    for (int64_t m = b; m < e; m++) {
        const float *src = j->w + m * K;
        float *d = j->wn + m * j->Kn;
        for (int64_t c = 0; c < cg; c++)
            for (int64_t t = 0; t < kk; t++) d[t * cg + c] = src[c * kk + t];
        for (int64_t k = K; k < j->Kn; k++) d[k] = 0.0f;
    }
}

/* xp[yy, xx, c] = x[c, yy - pt, xx - pl], 0 outside the image; one task per padded row */
typedef struct nx_job { const conv_params *cp; const float *x; float *xp; int64_t Wp; } nx_job;
static void neuron_nhwc_task(void *ctx, int64_t b, int64_t e) {
    const nx_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t cg = cp->c / cp->group, Wp = j->Wp;
    for (int64_t yy = b; yy < e; yy++) {
        float *d = j->xp + yy * Wp * cg;
        int64_t iy = yy - cp->pt;
        if (iy < 0 || iy >= cp->h) { memset(d, 0, (size_t)(Wp * cg) * sizeof(float)); continue; }
        /* columns xx with 0 <= xx - pl < w */
        int64_t x0 = cp->pl < 0 ? 0 : cp->pl, x1 = cp->pl + cp->w < Wp ? cp->pl + cp->w : Wp;
        if (x0 > x1) x0 = x1;
        memset(d, 0, (size_t)(x0 * cg) * sizeof(float));
        memset(d + x1 * cg, 0, (size_t)((Wp - x1) * cg) * sizeof(float));
        /* a transpose in 8 x 8 blocks: both the reads (8 columns of a row) and the writes
         * (8 channels of a pixel) stay in few cache lines */
        const float *s = j->x + iy * cp->w;   /* channel c, image column xx - pl: s[c hw + xx - pl] */
        int64_t hw = cp->h * cp->w;
        for (int64_t c8 = 0; c8 < cg; c8 += 8) {
            int64_t ce = c8 + 8 < cg ? c8 + 8 : cg;
            for (int64_t x8 = x0; x8 < x1; x8 += 8) {
                int64_t xe = x8 + 8 < x1 ? x8 + 8 : x1;
                for (int64_t xx = x8; xx < xe; xx++)
                    for (int64_t c = c8; c < ce; c++) d[xx * cg + c] = s[c * hw + xx - cp->pl];
            }
        }
    }
}

/* rows[q] = the patch of pixel q in wn's order, zero-padded to Kn (non-direct layouts) */
typedef struct nr_job { const conv_params *cp; const nlayout *l; float *rows; } nr_job;
static void neuron_rows_task(void *ctx, int64_t b, int64_t e) {
    const nr_job *j = ctx;
    const conv_params *cp = j->cp;
    const nlayout *l = j->l;
    int64_t cg = cp->c / cp->group, K = cg * cp->kh * cp->kw;
    for (int64_t q = b; q < e; q++) {
        int64_t oy = q / cp->ow, ox = q % cp->ow;
        float *d = j->rows + q * l->Kn;
        for (int64_t i = 0; i < cp->kh; i++) {
            const float *s = l->xp + ((oy * cp->sh + i * cp->dh) * l->Wp + ox * cp->sw) * cg;
            if (cp->dw == 1) { memcpy(d, s, (size_t)(cp->kw * cg) * sizeof(float)); d += cp->kw * cg; }
            else
                for (int64_t jj = 0; jj < cp->kw; jj++, d += cg) memcpy(d, s + jj * cp->dw * cg, (size_t)cg * sizeof(float));
        }
        for (int64_t k = K; k < l->Kn; k++) *d++ = 0.0f;
    }
}

/* r[i] = sum over nseg segments s, k < L (a multiple of 8) of w_(i < N ? a : b)[s L + k] *
 * x_i[s xs + k] (8 lanes, reduced by the caller) */
#define DOT8_BODY(N)                                                                               \
    {                                                                                              \
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};         \
        for (int64_t sg = 0; sg < nseg; sg++) {                                                    \
            const float *pa = wa + sg * L, *pb = wb + sg * L;                                      \
            const float *x0 = x[0] + sg * xs, *x1 = x[1] + sg * xs, *x2 = x[2] + sg * xs;          \
            const float *x3 = x[3] + sg * xs, *x4 = x[4] + sg * xs, *x5 = x[5] + sg * xs;          \
            const float *x6 = x[6] + sg * xs, *x7 = x[7] + sg * xs;                                \
            for (int64_t k = 0; k < L; k += 8) {                                                   \
                v8 va = *(const v8u *)(pa + k), vb = *(const v8u *)(pb + k);                       \
                s0 += (0 < N ? va : vb) * *(const v8u *)(x0 + k);                                  \
                s1 += (1 < N ? va : vb) * *(const v8u *)(x1 + k);                                  \
                s2 += (2 < N ? va : vb) * *(const v8u *)(x2 + k);                                  \
                s3 += (3 < N ? va : vb) * *(const v8u *)(x3 + k);                                  \
                s4 += (4 < N ? va : vb) * *(const v8u *)(x4 + k);                                  \
                s5 += (5 < N ? va : vb) * *(const v8u *)(x5 + k);                                  \
                s6 += (6 < N ? va : vb) * *(const v8u *)(x6 + k);                                  \
                s7 += (7 < N ? va : vb) * *(const v8u *)(x7 + k);                                  \
            }                                                                                      \
        }                                                                                          \
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3; r[4] = s4; r[5] = s5; r[6] = s6; r[7] = s7;    \
    }

#define DEFINE_DOT8(NAME, ATTR)                                                                    \
    ATTR static void NAME(int n, int64_t nseg, int64_t L, int64_t xs, const float *wa, const float *wb, \
                          const float *const *x, v8 *r) {                                          \
        switch (n) {                                                                               \
        case 1: DOT8_BODY(1) break;                                                                \
        case 2: DOT8_BODY(2) break;                                                                \
        case 3: DOT8_BODY(3) break;                                                                \
        case 4: DOT8_BODY(4) break;                                                                \
        case 5: DOT8_BODY(5) break;                                                                \
        case 6: DOT8_BODY(6) break;                                                                \
        case 7: DOT8_BODY(7) break;                                                                \
        default: DOT8_BODY(8) break;                                                               \
        }                                                                                          \
    }
DEFINE_DOT8(dot8_base, )
#ifdef HAVE_DISPATCH
DEFINE_DOT8(dot8_avx2, AVX2_ATTR)
#endif

INLINE float hsum(const v8 *v) { v8 s = *v; return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])); }
INLINE void reduce8_base(const v8 *r, float *out) { for (int i = 0; i < 8; i++) out[i] = hsum(&r[i]); }
#ifdef HAVE_DISPATCH
/* the eight horizontal sums at once (a transpose-add) */
AVX2_ATTR INLINE void reduce8_avx2(const v8 *r, float *out) {
    __m256 h01 = _mm256_hadd_ps(r[0], r[1]), h23 = _mm256_hadd_ps(r[2], r[3]);
    __m256 h45 = _mm256_hadd_ps(r[4], r[5]), h67 = _mm256_hadd_ps(r[6], r[7]);
    __m256 a = _mm256_hadd_ps(h01, h23), b = _mm256_hadd_ps(h45, h67);
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)));
}
#endif

/* the kept pixels of a run of at most 16, as a bit set: bytes are 0 or 1, and the multiply
 * gathers the low bits of 8 bytes into the top byte (byte i -> bit i). Reads 16 bytes when
 * they lie inside the mask, else byte by byte. */
INLINE unsigned kept_bits(const uint8_t *u, int64_t nb, int inside16) {
    unsigned bits = 0;
    if (inside16) {
        uint64_t lo, hi;
        memcpy(&lo, u, 8);
        memcpy(&hi, u + 8, 8);
        bits = (unsigned)((lo * 0x0102040810204080ULL) >> 56) | (unsigned)((hi * 0x0102040810204080ULL) >> 56) << 8;
    } else
        for (int64_t t = 0; t < nb; t++) bits |= (unsigned)(u[t] != 0) << t;
    return bits & ((1u << nb) - 1);
}
/* positions of the set bits of a nibble, one per byte, and their count */
static const uint32_t nib_pos[16] = {0, 0, 0x01, 0x0100, 0x02, 0x0200, 0x0201, 0x020100, 0x03, 0x0300, 0x0301,
                                     0x030100, 0x0302, 0x030200, 0x030201, 0x03020100};
static const uint8_t nib_cnt[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* a group: up to 8 outputs, lanes < split of channel ca, the others of cb; lane i is
 * pixel lq[i] (lanes past cnt repeat lane 0 and are ignored) */
typedef struct ngroup { int16_t cnt, split, ca, cb; int8_t lq[8]; } ngroup;

/* y[m, q0 .. q0 + nb) = kept ? act(acc + bias) * scale : 0, the switch outside the loop so
 * that it vectorises */
#define ROW_OUT(ACT)                                                                               \
    for (int64_t t = 0; t < nb; t++) {                                                             \
        float v = apply(a[t] + bb, ACT, j->p0, j->p1) * j->scale;                                  \
        uint32_t vb;                                                                               \
        memcpy(&vb, &v, 4);                                                                        \
        vb &= 0u - (uint32_t)u[t];  /* the mask byte is 0 or 1 */                                  \
        memcpy(yr + t, &vb, 4);                                                                    \
    }

/* one item: pixels ox0 .. ox0 + nb - 1 of output row oy x channels [c0, c1) of the group.
 * Branch-free where the mask is read (it is random: a branch per output would be
 * mispredicted half the time at p = 0.5). */
#define DEFINE_NEURON_ITEM(NAME, DOT8, REDUCE8, ATTR)                                              \
    ATTR static uint64_t NAME(const djob *j, const nlayout *l, int64_t oy, int64_t ox0, int64_t nb, \
                              int64_t c0, int64_t c1) {                                            \
        const conv_params *cp = j->cp;                                                             \
        int64_t P = j->P, cg = cp->c / cp->group, q0 = oy * cp->ow + ox0, Kn = l->Kn;              \
        int8_t lq[NCN * NBP + 4];  /* the kept pixels, channel by channel */                       \
        int end[NCN];              /* end of channel c0 + i's run in lq */                         \
        float acc[NCN * NBP] __attribute__((aligned(32)));                                         \
        ngroup gr[NCN * NBP];                                                                      \
        const float *xq[NBP];                                                                      \
        for (int64_t t = 0; t < nb; t++)                                                           \
            xq[t] = l->direct ? l->xp + ((oy * cp->sh) * l->Wp + (ox0 + t) * cp->sw) * cg : l->rows + (q0 + t) * Kn; \
        int n = 0;                                                                                 \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            int64_t at = (j->row0 + c) * P + q0;                                                   \
            unsigned bits = kept_bits(j->units + at, nb, at + 16 <= cp->m * P);                    \
            for (int h = 0; h < 16; h += 4, bits >>= 4) {                                          \
                uint32_t pos = nib_pos[bits & 15] + 0x01010101u * (uint32_t)h;                     \
                memcpy(lq + n, &pos, 4);                                                           \
                n += nib_cnt[bits & 15];                                                           \
            }                                                                                      \
            end[c - c0] = n;                                                                       \
        }                                                                                          \
        memset(acc, 0, (size_t)((c1 - c0) * NBP) * sizeof(float));                                 \
        /* groups: the rest of one channel's run (at most 8), topped up from the next run */       \
        int ng = 0, ca = 0;                                                                        \
        for (int o = 0; o < n;) {                                                                  \
            ngroup *G = &gr[ng++];                                                                 \
            while (end[ca] <= o) ca++;                                                             \
            int ea = end[ca], na = ea - o < 8 ? ea - o : 8, cnt = na;                              \
            G->ca = G->cb = (int16_t)ca; G->split = 8;                                             \
            if (na < 8 && ea < n) {                                                                \
                int cb = ca + 1;                                                                   \
                while (end[cb] == ea) cb++;                                                        \
                int nb2 = end[cb] - ea;                                                            \
                cnt = na + (nb2 < 8 - na ? nb2 : 8 - na);                                          \
                G->cb = (int16_t)cb; G->split = (int16_t)na;                                       \
            }                                                                                      \
            G->cnt = (int16_t)cnt;                                                                 \
            for (int i = 0; i < 8; i++) G->lq[i] = lq[o + (i < cnt ? i : 0)];                      \
            o += cnt;                                                                              \
        }                                                                                          \
        const float *w0 = l->wn + (j->row0 + c0) * Kn, *x[8];                                      \
        v8 r[8];                                                                                   \
        float out[8] __attribute__((aligned(32)));                                                 \
        for (int64_t s0 = 0; s0 < l->nseg; s0 += l->sc) {                                          \
            int64_t ns = l->nseg - s0 < l->sc ? l->nseg - s0 : l->sc;                              \
            for (int g = 0; g < ng; g++) {                                                         \
                const ngroup *G = &gr[g];                                                          \
                for (int i = 0; i < 8; i++) x[i] = xq[G->lq[i]] + s0 * l->xs;                      \
                DOT8(G->split, ns, l->L, l->xs, w0 + G->ca * Kn + s0 * l->L, w0 + G->cb * Kn + s0 * l->L, x, r); \
                REDUCE8(r, out);                                                                   \
                for (int i = 0; i < G->cnt; i++) acc[(i < G->split ? G->ca : G->cb) * NBP + G->lq[i]] += out[i]; \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            int64_t m = j->row0 + c;                                                               \
            float bb = j->bias ? j->bias[m] : 0.0f, *yr = j->y + m * P + q0;                       \
            const float *a = acc + (c - c0) * NBP;                                                 \
            const uint8_t *u = j->units + m * P + q0;                                              \
            switch (j->act) {                                                                      \
            case ACT_RELU: ROW_OUT(ACT_RELU) break;                                                \
            case ACT_CLIP: ROW_OUT(ACT_CLIP) break;                                                \
            case ACT_LEAKY: ROW_OUT(ACT_LEAKY) break;                                              \
            default: ROW_OUT(ACT_NONE) break;                                                      \
            }                                                                                      \
        }                                                                                          \
        return (uint64_t)n;                                                                        \
    }
DEFINE_NEURON_ITEM(neuron_item_base, dot8_base, reduce8_base, )
#ifdef HAVE_DISPATCH
DEFINE_NEURON_ITEM(neuron_item_avx2, dot8_avx2, reduce8_avx2, AVX2_ATTR)
#endif

/* items channel-chunk major, so that one thread's consecutive items share their weights */
typedef struct n_job { const djob *j; const nlayout *l; } n_job;
static void neuron_task(void *ctx, int64_t b, int64_t e) {
    const n_job *nj = ctx;
    const djob *j = nj->j;
    const nlayout *l = nj->l;
    const conv_params *cp = j->cp;
    int64_t nblocks = cp->oh * l->nbr;
    uint64_t done = 0;
    for (int64_t it = b; it < e; it++) {
        int64_t ch = it / nblocks, blk = it % nblocks, oy = blk / l->nbr, bi = blk % l->nbr;
        int64_t ox0 = bi * cp->ow / l->nbr, ox1 = (bi + 1) * cp->ow / l->nbr;
        int64_t c0 = ch * NCN, c1 = c0 + NCN < j->mg ? c0 + NCN : j->mg;
#ifdef HAVE_DISPATCH
        if (have_avx2()) done += neuron_item_avx2(j, l, oy, ox0, ox1 - ox0, c0, c1);
        else
#endif
            done += neuron_item_base(j, l, oy, ox0, ox1 - ox0, c0, c1);
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
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

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t conv_drowsy_scratch_bytes(const conv_params *cp, int gran) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + DROWSY_TILE_P - 1) / DROWSY_TILE_P, ntiles = (cp->m + 15) / 16, M = cp->m;
    size_t n = ALIGN64((size_t)drowsy_unit_count(gran, cp->m, P));
    if (is_depthwise(cp)) return n;
    size_t f = sizeof(float), i8 = sizeof(int64_t);
    nlayout l;
    neuron_layout(cp, &l);   /* Hp, Wp: shared by every granularity */
    n += ALIGN64((size_t)(l.Hp * l.Wp * cg) * f);
    if (gran == DROWSY_NEURON) {
        n += ALIGN64((size_t)(M * l.Kn) * f);
        if (!l.direct) n += ALIGN64((size_t)(P * l.Kn) * f);
        return n;
    }
    int64_t nt = gran == DROWSY_CHANNEL ? (mg + 15) / 16 : ntiles;
    n += ALIGN64((size_t)(TB * DROWSY_TILE_P) * i8) + ALIGN64((size_t)(TB * DROWSY_TILE_P) * sizeof(int32_t)); /* pix, base */
    n += 2 * ALIGN64((size_t)(TB + 1) * i8);                                                       /* bw, bstart */
    n += ALIGN64((size_t)(TB * DROWSY_TILE_P * K) * f) + ALIGN64((size_t)(nt * 16 * K) * f);       /* panels, tiles */
    n += ALIGN64((size_t)(TB * nt) * i8) + ALIGN64((size_t)mg * i8);                                /* items, rowmap */
    return n;
}

static void *take(uint8_t **cur, size_t bytes) {
    void *p = *cur;
    *cur += ALIGN64(bytes);
    return p;
}

/* -- the masked convolution ---------------------------------------------------------------- */
void conv2d_drowsy(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
                   void *scratch, int act, float p0, float p1, const drowsy_knobs *kn, int *wt_ready,
                   drowsy_counts *cnt) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + DROWSY_TILE_P - 1) / DROWSY_TILE_P, ntiles = (cp->m + 15) / 16, M = cp->m;
    int gran = kn->gran;
    int64_t nunits = drowsy_unit_count(gran, M, P);
    uint8_t *cur = scratch;
    uint8_t *units = take(&cur, (size_t)nunits);
    int dw = is_depthwise(cp);
    int64_t *pix = NULL, *bw = NULL, *bstart = NULL, *items = NULL, *rowmap = NULL;
    int32_t *base = NULL;
    float *cols = NULL, *wt = NULL, *xpad = NULL;
    int64_t nt = gran == DROWSY_CHANNEL ? (mg + 15) / 16 : ntiles;
    nlayout nl = {0};
    if (!dw) {
        neuron_layout(cp, &nl);
        xpad = take(&cur, (size_t)(nl.Hp * nl.Wp * cg) * 4);
        if (gran == DROWSY_NEURON) {
            nl.xp = xpad;
            nl.wn = wt = take(&cur, (size_t)(M * nl.Kn) * 4);
            nl.rows = cols = nl.direct ? NULL : take(&cur, (size_t)(P * nl.Kn) * 4);
        } else {
            pix = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
            base = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 4);
            bw = take(&cur, (size_t)(TB + 1) * 8);
            bstart = take(&cur, (size_t)(TB + 1) * 8);
            cols = take(&cur, (size_t)(TB * DROWSY_TILE_P * K) * 4);
            wt = take(&cur, (size_t)(nt * 16 * K) * 4);
            items = take(&cur, (size_t)(TB * nt) * 8);
            rowmap = take(&cur, (size_t)mg * 8);
        }
    }
    uint64_t done = 0;
    /* weights packed once per layer (when constant): tiles for tile and pixel, the
     * reordered rows for neuron; channel packs its kept rows per image */
    if ((gran == DROWSY_TILE || gran == DROWSY_PIXEL) && !dw && !*wt_ready) {
        pack_job pj = {w, wt, NULL, M, K};
        pool_for(p, ntiles, 1, pack_tiles_task, &pj);
        if (kn->weights_const) *wt_ready = 1;
    }
    if (gran == DROWSY_NEURON && !dw && !*wt_ready) {
        nw_job wj = {cp, w, wt, nl.Kn};
        pool_for(p, M, 1, neuron_weights_task, &wj);
        if (kn->weights_const) *wt_ready = 1;
    }
    for (int64_t n = 0; n < cp->n; n++) {
        uint64_t image = kn->fixed ? 0 : kn->image0 + (uint64_t)n;
        drowsy_keep_units(p, drowsy_key(kn->seed, image, kn->layer), kn->thr, units, nunits);
        float *yn = y + n * M * P;
        /* dropped outputs are 0: neuron items and kept channel rows write every output they
         * own; the others write kept outputs only */
        if (dw || gran == DROWSY_PIXEL || gran == DROWSY_TILE) memset(yn, 0, (size_t)(M * P) * sizeof(float));
        djob j = {0};
        j.cp = cp; j.bias = bias; j.y = yn; j.units = units; j.act = act; j.p0 = p0; j.p1 = p1;
        j.scale = kn->scale; j.K = K; j.P = P; j.done = &done;
        if (dw) {
            j.x = x + n * cp->c * cp->h * cp->w;
            dwm_job d = {&j, gran, w, TB};
            pool_for(p, M, 1, depthwise_task, &d);
            continue;
        }
        /* pixel list of the pixel granularity: the kept pixels, shared by the groups */
        int64_t npix = 0;
        if (gran == DROWSY_PIXEL) {
            for (int64_t q = 0; q < P; q++) if (units[q]) pix[npix++] = q;
            for (int64_t s = npix; s < (npix + DROWSY_TILE_P - 1) / DROWSY_TILE_P * DROWSY_TILE_P; s++) pix[s] = -1;
            slot_bases(cp, nl.Wp, pix, base, (npix + DROWSY_TILE_P - 1) / DROWSY_TILE_P * DROWSY_TILE_P);
        } else if (gran != DROWSY_NEURON) {
            for (int64_t s = 0; s < TB * DROWSY_TILE_P; s++) pix[s] = s < P ? s : -1;
            slot_bases(cp, nl.Wp, pix, base, TB * DROWSY_TILE_P);
        }
        for (int64_t g = 0; g < cp->group; g++) {
            j.x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            j.row0 = g * mg; j.mg = mg;
            int64_t nblk = 0, nit = 0;
            j.xpad = xpad; j.Hp = nl.Hp; j.Wp = nl.Wp; j.pix = pix; j.base = base; j.bw = bw; j.bstart = bstart;
            j.cols = cols; j.items = items; j.wt = wt;
            if (gran == DROWSY_CHANNEL) {
                int64_t nk = 0;
                for (int64_t r = 0; r < mg; r++) {
                    if (units[g * mg + r]) rowmap[nk++] = g * mg + r;
                    else memset(yn + (g * mg + r) * P, 0, (size_t)P * sizeof(float));
                }
                if (!nk) continue;
                int64_t nv = (nk + 15) / 16;
                pack_job pj = {w, wt, rowmap, nk, K};
                pool_for(p, nv, 1, pack_tiles_task, &pj);
                for (int64_t i = 0; i < TB; i++) {
                    bw[i] = P - i * DROWSY_TILE_P < DROWSY_TILE_P ? P - i * DROWSY_TILE_P : DROWSY_TILE_P;
                    bstart[i] = nit;
                    for (int64_t v = 0; v < nv; v++) items[nit++] = i * nv + v;
                }
                nblk = TB;
                j.contig = 1; j.ntiles = nv; j.rowmap = rowmap; j.nrows = nk;
            } else if (gran == DROWSY_PIXEL) {
                if (!npix) continue;
                int64_t t0 = (g * mg) / 16, t1 = ((g + 1) * mg + 15) / 16;
                nblk = (npix + DROWSY_TILE_P - 1) / DROWSY_TILE_P;
                for (int64_t i = 0; i < nblk; i++) {
                    bw[i] = npix - i * DROWSY_TILE_P < DROWSY_TILE_P ? npix - i * DROWSY_TILE_P : DROWSY_TILE_P;
                    bstart[i] = nit;
                    for (int64_t t = t0; t < t1; t++) items[nit++] = i * ntiles + t;
                }
                j.contig = 0; j.ntiles = ntiles; j.rowmap = NULL;
            } else if (gran == DROWSY_TILE) {
                /* the blocks with a kept tile in this group, their pixels consecutive */
                int64_t t0 = (g * mg) / 16, t1 = ((g + 1) * mg + 15) / 16;
                for (int64_t bk = 0; bk < TB; bk++) {
                    int any = 0;
                    for (int64_t t = t0; t < t1; t++) any |= units[t * TB + bk];
                    if (!any) continue;
                    bstart[nblk] = nit;
                    for (int64_t t = t0; t < t1; t++)
                        if (units[t * TB + bk]) items[nit++] = nblk * ntiles + t;
                    for (int64_t l = 0; l < DROWSY_TILE_P; l++) {
                        int64_t q = bk * DROWSY_TILE_P + l;
                        pix[nblk * DROWSY_TILE_P + l] = q < P ? q : -1;
                    }
                    bw[nblk] = P - bk * DROWSY_TILE_P < DROWSY_TILE_P ? P - bk * DROWSY_TILE_P : DROWSY_TILE_P;
                    nblk++;
                }
                if (!nit) continue;
                slot_bases(cp, nl.Wp, pix, base, nblk * DROWSY_TILE_P);
                j.contig = 1; j.ntiles = ntiles; j.rowmap = NULL;
            } else {
                nx_job xj = {cp, j.x, xpad, nl.Wp};
                pool_for(p, nl.Hp, 1, neuron_nhwc_task, &xj);
                if (!nl.direct) {
                    nr_job rj = {cp, &nl, cols};
                    pool_for(p, P, 8, neuron_rows_task, &rj);
                }
                n_job nj = {&j, &nl};
                pool_for(p, cp->oh * nl.nbr * ((mg + NCN - 1) / NCN), 1, neuron_task, &nj);
                continue;
            }
            bstart[nblk] = nit;
            conv_pad_input(p, cp, j.x, cg, nl.Hp, nl.Wp, xpad);
            run_panels(p, &j, nblk, nit);
        }
    }
    cnt->outputs = done;
    cnt->macs = done * (uint64_t)(dw ? cp->kh * cp->kw : K);
}
