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
 *   neuron   drowsy_neuron.c (eight dot products vectorised over K at a time).
 *   depthwise (group == C, one input channel per group) a direct kernel over kept outputs.
 * The inner loops are written with GCC vector extensions (SSE/AVX on x86-64, NEON on
 * AArch64) and compiled a second time with target("avx2,fma") on x86-64, chosen at run
 * time as in gemm.c; nothing assumes AVX-512. Threads: the pthread pool. */
#include <math.h>
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

static void units_task(void *ctx, int64_t b, int64_t e) {
    const units_job *j = ctx;
    for (int64_t u = b; u < e; u++) j->keep[u] = (mix64(j->key ^ (GAMMA * ((uint64_t)u + 1))) >> 40) >= j->thr;
}

void drowsy_keep_units(pool *p, uint64_t key, uint32_t thr, uint8_t *keep, int64_t n) {
    units_job j = {key, thr, keep};
    pool_for(p, n, 4096, units_task, &j);
}

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

size_t conv_drowsy_scratch_bytes(const conv_params *cp, int gran) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + DROWSY_TILE_P - 1) / DROWSY_TILE_P, ntiles = (cp->m + 15) / 16, Hp, Wp;
    size_t n = ALIGN64((size_t)drowsy_unit_count(gran, cp->m, P));
    if (is_depthwise(cp)) return n;
    if (gran == DROWSY_NEURON) return n + neuron_scratch_bytes(cp);
    size_t f = sizeof(float), i8 = sizeof(int64_t);
    padded_size(cp, &Hp, &Wp);
    n += ALIGN64((size_t)(Hp * Wp * cg) * f);
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
    int64_t Hp = 0, Wp = 0;
    void *nscratch = cur;   /* the neuron kernel's own */
    if (!dw && gran != DROWSY_NEURON) {
        padded_size(cp, &Hp, &Wp);
        xpad = take(&cur, (size_t)(Hp * Wp * cg) * 4);
        pix = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
        base = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 4);
        bw = take(&cur, (size_t)(TB + 1) * 8);
        bstart = take(&cur, (size_t)(TB + 1) * 8);
        cols = take(&cur, (size_t)(TB * DROWSY_TILE_P * K) * 4);
        wt = take(&cur, (size_t)(nt * 16 * K) * 4);
        items = take(&cur, (size_t)(TB * nt) * 8);
        rowmap = take(&cur, (size_t)mg * 8);
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
        neuron_prepare_weights(p, cp, w, nscratch);
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
            slot_bases(cp, Wp, pix, base, (npix + DROWSY_TILE_P - 1) / DROWSY_TILE_P * DROWSY_TILE_P);
        } else if (gran != DROWSY_NEURON) {
            for (int64_t s = 0; s < TB * DROWSY_TILE_P; s++) pix[s] = s < P ? s : -1;
            slot_bases(cp, Wp, pix, base, TB * DROWSY_TILE_P);
        }
        for (int64_t g = 0; g < cp->group; g++) {
            j.x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            j.row0 = g * mg; j.mg = mg;
            int64_t nblk = 0, nit = 0;
            j.xpad = xpad; j.Hp = Hp; j.Wp = Wp; j.pix = pix; j.base = base; j.bw = bw; j.bstart = bstart;
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
                slot_bases(cp, Wp, pix, base, nblk * DROWSY_TILE_P);
                j.contig = 1; j.ntiles = ntiles; j.rowmap = NULL;
            } else {
                neuron_conv_group(p, &j, nscratch);
                continue;
            }
            bstart[nblk] = nit;
            conv_pad_input(p, cp, j.x, cg, Hp, Wp, xpad);
            run_panels(p, &j, nblk, nit);
        }
    }
    cnt->outputs = done;
    cnt->macs = done * (uint64_t)(dw ? cp->kh * cp->kw : K);
}
