/* DrowsyNet (mirror of kernels/drowsy.py): the counter-based mask generator and masked
 * 2-D convolution that computes the kept outputs only.
 *
 * Masks: bit for bit the generator documented in kernels/drowsy.py (splitmix64 over
 * seed, image, layer and unit; unit numbering per granularity; 16 x 64 tiles). Dropped
 * outputs are 0 whatever the fused activation; survivors are act(acc + bias) * scale.
 *
 * Kernels, by granularity (each loops over kept work only):
 *   channel  the kept weight rows gathered into a smaller GEMM (our sgemm) over the full
 *            patch matrix, then bias/activation/scale into the kept rows;
 *   pixel    im2col of the kept output pixels only, GEMM, scatter back;
 *   tile     per 64-pixel block with a kept tile, the patch panel is packed once
 *            (4 panels of K x 16); every kept 16-channel tile is then one register-tiled
 *            16 x 64 product (6 + 6 + 4 rows x 16 columns micro-kernels) over weights
 *            packed once per layer as K x 16 (all 16 rows of a tile in one cache line
 *            per k), KC-blocked so that both operands stay in L1;
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

/* the work of one image, shared by the tasks */
typedef struct djob {
    const conv_params *cp;
    const float *x;          /* this group's input channels (C/group x H x W) */
    const float *w;          /* all weights (M x K) */
    const float *bias;
    float *y;                /* this image's output (M x P) */
    const uint8_t *units;    /* this image's unit mask */
    int act; float p0, p1, scale;
    int64_t K, P, TB, row0, mg, g;
    /* gathered pixels */
    const int64_t *pix; const int64_t *iy0, *ix0, *off; int64_t npix;
    float *cols;             /* patch matrix / panels / rows */
    const float *tmp; const int64_t *rows; int64_t nrows;
    /* tile */
    const float *wt; const int64_t *items; int64_t nitems;
    /* counts, one slot per task start (summed afterwards) */
    uint64_t *done;
} djob;

/* -- gathers ----------------------------------------------------------------------------- */
/* iy0/ix0 of output pixel q (q >= P: a padding column, always out of the image); off:
 * iy0 * W + ix0 where every tap of the pixel is inside the image, else -1 */
static void pixel_origins(const conv_params *cp, const int64_t *pix, int64_t n, int64_t *iy0, int64_t *ix0,
                          int64_t *off) {
    int64_t P = cp->oh * cp->ow, ey = (cp->kh - 1) * cp->dh, ex = (cp->kw - 1) * cp->dw;
    for (int64_t i = 0; i < n; i++) {
        int64_t q = pix[i];
        if (q >= P) { iy0[i] = -((int64_t)1 << 40); ix0[i] = 0; off[i] = -1; continue; }
        iy0[i] = (q / cp->ow) * cp->sh - cp->pt;
        ix0[i] = (q % cp->ow) * cp->sw - cp->pl;
        int inside = iy0[i] >= 0 && iy0[i] + ey < cp->h && ix0[i] >= 0 && ix0[i] + ex < cp->w;
        off[i] = inside ? iy0[i] * cp->w + ix0[i] : -1;
    }
}

INLINE float tap(const djob *j, int64_t c, int64_t iy, int64_t ix) {
    const conv_params *cp = j->cp;
    return iy >= 0 && iy < cp->h && ix >= 0 && ix < cp->w ? j->x[(c * cp->h + iy) * cp->w + ix] : 0.0f;
}

/* cols[r, i] (K x npix) = patch row r of pixel pix[i] */
static void gather_cols_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    const conv_params *cp = j->cp;
    int64_t kk = cp->kh * cp->kw;
    for (int64_t r = b; r < e; r++) {
        int64_t c = r / kk, oy = ((r % kk) / cp->kw) * cp->dh, ox = (r % cp->kw) * cp->dw;
        float *restrict d = j->cols + r * j->npix;
        const float *xr = j->x + (c * cp->h + oy) * cp->w + ox;
        const int64_t *off = j->off;
        for (int64_t i = 0; i < j->npix; i++) d[i] = off[i] >= 0 ? xr[off[i]] : tap(j, c, j->iy0[i] + oy, j->ix0[i] + ox);
    }
}

/* tile panels: block i (pixels pix[64 i .. 64 i + 63]) as 4 panels of K x 16 */
static void gather_panels_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    const conv_params *cp = j->cp;
    int64_t kk = cp->kh * cp->kw, K = j->K, nb = j->npix / DROWSY_TILE_P;
    for (int64_t r = b; r < e; r++) {
        int64_t c = r / kk, oy = ((r % kk) / cp->kw) * cp->dh, ox = (r % cp->kw) * cp->dw;
        const float *xr = j->x + (c * cp->h + oy) * cp->w + ox;
        for (int64_t i = 0; i < nb; i++) {
            float *panel = j->cols + i * K * DROWSY_TILE_P + r * 16;
            for (int64_t l = 0; l < DROWSY_TILE_P; l++) {
                int64_t t = i * DROWSY_TILE_P + l, o = j->off[t];
                panel[(l >> 4) * K * 16 + (l & 15)] = o >= 0 ? xr[o] : tap(j, c, j->iy0[t] + oy, j->ix0[t] + ox);
            }
        }
    }
}

/* -- epilogues --------------------------------------------------------------------------- */
/* y[rows[i], :] = act(tmp[i, :] + bias) * scale (channel path) */
static void rows_epilogue_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    for (int64_t i = b; i < e; i++) {
        int64_t r = j->rows[i];
        float bb = j->bias ? j->bias[r] : 0.0f, s = j->scale, p0 = j->p0, p1 = j->p1;
        const float *restrict t = j->tmp + i * j->P;
        float *restrict yr = j->y + r * j->P;
        switch (j->act) {
        case ACT_RELU: for (int64_t q = 0; q < j->P; q++) yr[q] = apply(t[q] + bb, ACT_RELU, p0, p1) * s; break;
        case ACT_CLIP: for (int64_t q = 0; q < j->P; q++) yr[q] = apply(t[q] + bb, ACT_CLIP, p0, p1) * s; break;
        case ACT_LEAKY: for (int64_t q = 0; q < j->P; q++) yr[q] = apply(t[q] + bb, ACT_LEAKY, p0, p1) * s; break;
        default: for (int64_t q = 0; q < j->P; q++) yr[q] = (t[q] + bb) * s; break;
        }
    }
}

/* y[row0 + r, pix[i]] = act(tmp[r, i] + bias) * scale (pixel path) */
static void scatter_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    for (int64_t r = b; r < e; r++) {
        int64_t m = j->row0 + r;
        float bb = j->bias ? j->bias[m] : 0.0f;
        const float *t = j->tmp + r * j->npix;
        float *yr = j->y + m * j->P;
        for (int64_t i = 0; i < j->npix; i++) yr[j->pix[i]] = apply(t[i] + bb, j->act, j->p0, j->p1) * j->scale;
    }
}

/* -- tile: 16 x 64 register-tiled products ----------------------------------------------- */
enum { TKC = 128 };

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

/* one kept tile: acc[16][64] = W_t (16 x K, packed K x 16) . panel (K x 64, 4 x K x 16) */
#define DEFINE_TILE_PRODUCT(NAME, UK6, UK4, ATTR)                                                  \
    ATTR static void NAME(int64_t K, const float *wt, const float *panel, float *acc) {            \
        for (int64_t pc = 0; pc < K; pc += TKC) {                                                  \
            int64_t kc = K - pc < TKC ? K - pc : TKC;                                              \
            const float *a = wt + pc * 16;                                                         \
            for (int jb = 0; jb < 4; jb++) {                                                       \
                const float *b = panel + jb * K * 16 + pc * 16;                                    \
                UK6(kc, a, b, acc + jb * 16, pc > 0);                                              \
                UK6(kc, a + 6, b, acc + 6 * 64 + jb * 16, pc > 0);                                 \
                UK4(kc, a + 12, b, acc + 12 * 64 + jb * 16, pc > 0);                               \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE_PRODUCT(tile_product_base, tuk6_base, tuk4_base, )
#ifdef HAVE_DISPATCH
DEFINE_TILE_PRODUCT(tile_product_avx2, tuk6_avx2, tuk4_avx2, AVX2_ATTR)
#endif

/* one kept tile, items[it] = block index (into the gathered blocks) * ntiles + tile */
static uint64_t tile_one(const djob *j, int64_t it, float *acc) {
    int64_t K = j->K, P = j->P, M = j->cp->m, ntiles = (M + 15) / 16;
    {
        int64_t i = j->items[it] / ntiles, t = j->items[it] % ntiles;
        const float *panel = j->cols + i * K * DROWSY_TILE_P;
        const float *wt = j->wt + t * K * 16;
#ifdef HAVE_DISPATCH
        if (have_avx2()) tile_product_avx2(K, wt, panel, acc);
        else
#endif
            tile_product_base(K, wt, panel, acc);
        int64_t s = j->pix[i * DROWSY_TILE_P], width = P - s < DROWSY_TILE_P ? P - s : DROWSY_TILE_P;
        int64_t r0 = t * 16 > j->row0 ? t * 16 : j->row0, r1 = t * 16 + 16;
        if (r1 > j->row0 + j->mg) r1 = j->row0 + j->mg;
        for (int64_t r = r0; r < r1; r++) {
            float bb = j->bias ? j->bias[r] : 0.0f;
            const float *a = acc + (r - t * 16) * 64;
            float *yr = j->y + r * P + s;
            for (int64_t q = 0; q < width; q++) yr[q] = apply(a[q] + bb, j->act, j->p0, j->p1) * j->scale;
        }
        return (uint64_t)((r1 - r0) * width);
    }
}

static void tile_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    float acc[16 * 64] __attribute__((aligned(64)));
    uint64_t done = 0;
    for (int64_t it = b; it < e; it++) done += tile_one(j, it, acc);
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* many blocks: per block, gather its panel, then its kept tiles (the panel is still in
 * L2 when they read it); bstart[i]..bstart[i+1] are block i's items */
static void tile_block_task(void *ctx, int64_t b, int64_t e) {
    const djob *j = ctx;
    const conv_params *cp = j->cp;
    float acc[16 * 64] __attribute__((aligned(64)));
    int64_t kk = cp->kh * cp->kw, K = j->K;
    uint64_t done = 0;
    for (int64_t i = b; i < e; i++) {
        float *panel = j->cols + i * K * DROWSY_TILE_P;
        const int64_t *off = j->off + i * DROWSY_TILE_P, *iy0 = j->iy0 + i * DROWSY_TILE_P, *ix0 = j->ix0 + i * DROWSY_TILE_P;
        for (int64_t r = 0; r < K; r++) {
            int64_t c = r / kk, oy = ((r % kk) / cp->kw) * cp->dh, ox = (r % cp->kw) * cp->dw;
            const float *xr = j->x + (c * cp->h + oy) * cp->w + ox;
            for (int64_t l = 0; l < DROWSY_TILE_P; l++)
                panel[(l >> 4) * K * 16 + r * 16 + (l & 15)] = off[l] >= 0 ? xr[off[l]] : tap(j, c, iy0[l] + oy, ix0[l] + ox);
        }
        for (int64_t it = j->rows[i]; it < j->rows[i + 1]; it++) done += tile_one(j, it, acc);
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* weights packed per 16-channel tile as K x 16 (channels past M are 0) */
typedef struct pack_job { const float *w; float *wt; int64_t M, K; } pack_job;
static void pack_tiles_task(void *ctx, int64_t b, int64_t e) {
    const pack_job *j = ctx;
    for (int64_t t = b; t < e; t++) {
        float *d = j->wt + t * j->K * 16;
        for (int64_t l = 0; l < 16; l++) {
            int64_t m = t * 16 + l;
            if (m < j->M) for (int64_t k = 0; k < j->K; k++) d[k * 16 + l] = j->w[m * j->K + k];
            else for (int64_t k = 0; k < j->K; k++) d[k * 16 + l] = 0.0f;
        }
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
        for (int64_t c = 0; c < cg; c++) {
            const float *s = j->x + (c * cp->h + iy) * cp->w - cp->pl;
            for (int64_t xx = x0; xx < x1; xx++) d[xx * cg + c] = s[xx];
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

typedef struct dwm_job { const djob *j; int gran; } dwm_job;
static void depthwise_task(void *ctx, int64_t b, int64_t e) {
    const dwm_job *d = ctx;
    const djob *j = d->j;
    const conv_params *cp = j->cp;
    int64_t mult = cp->m / cp->c, P = j->P;
    uint64_t done = 0;
    for (int64_t m = b; m < e; m++) {
        const float *xc = j->x + (m / mult) * cp->h * cp->w;
        const float *wk = j->w + m * cp->kh * cp->kw;
        float bb = j->bias ? j->bias[m] : 0.0f;
        for (int64_t yy = 0; yy < cp->oh; yy++)
            for (int64_t xx = 0; xx < cp->ow; xx++) {
                int64_t q = yy * cp->ow + xx;
                if (!kept_at(j->units, d->gran, m, q, P, j->TB)) continue;
                float acc = 0.0f;
                for (int64_t i = 0; i < cp->kh; i++) {
                    int64_t iy = yy * cp->sh - cp->pt + i * cp->dh;
                    if (iy < 0 || iy >= cp->h) continue;
                    for (int64_t jj = 0; jj < cp->kw; jj++) {
                        int64_t ix = xx * cp->sw - cp->pl + jj * cp->dw;
                        if (ix >= 0 && ix < cp->w) acc += xc[iy * cp->w + ix] * wk[i * cp->kw + jj];
                    }
                }
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
    n += 4 * ALIGN64((size_t)(TB * DROWSY_TILE_P) * i8); /* pixel list, origins, offsets */
    switch (gran) {
    case DROWSY_CHANNEL: n += ALIGN64((size_t)(mg * K) * f) + ALIGN64((size_t)(K * P) * f) + ALIGN64((size_t)(mg * P) * f); break;
    case DROWSY_PIXEL: n += ALIGN64((size_t)(K * P) * f) + ALIGN64((size_t)(mg * P) * f); break;
    case DROWSY_TILE: n += ALIGN64((size_t)(TB * DROWSY_TILE_P * K) * f) + ALIGN64((size_t)(ntiles * 16 * K) * f)
                          + ALIGN64((size_t)(TB * ntiles) * i8); break;
    default: {
        nlayout l;
        neuron_layout(cp, &l);
        n += ALIGN64((size_t)(M * l.Kn) * f) + ALIGN64((size_t)(l.Hp * l.Wp * cg) * f);
        if (!l.direct) n += ALIGN64((size_t)(P * l.Kn) * f);
        break;
    }
    }
    n += ALIGN64((size_t)(mg > TB + 1 ? mg : TB + 1) * i8);
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
    int64_t *pix = NULL, *iy0 = NULL, *ix0 = NULL, *off = NULL, *rows = NULL;
    float *cols = NULL, *tmp = NULL, *wbuf = NULL, *wt = NULL;
    int64_t *items = NULL;
    nlayout nl = {0};
    if (!dw) {
        pix = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
        iy0 = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
        ix0 = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
        off = take(&cur, (size_t)(TB * DROWSY_TILE_P) * 8);
        switch (gran) {
        case DROWSY_CHANNEL:
            wbuf = take(&cur, (size_t)(mg * K) * 4); cols = take(&cur, (size_t)(K * P) * 4); tmp = take(&cur, (size_t)(mg * P) * 4);
            break;
        case DROWSY_PIXEL: cols = take(&cur, (size_t)(K * P) * 4); tmp = take(&cur, (size_t)(mg * P) * 4); break;
        case DROWSY_TILE:
            cols = take(&cur, (size_t)(TB * DROWSY_TILE_P * K) * 4); wt = take(&cur, (size_t)(ntiles * 16 * K) * 4);
            items = take(&cur, (size_t)(TB * ntiles) * 8);
            break;
        default:
            neuron_layout(cp, &nl);
            wt = take(&cur, (size_t)(M * nl.Kn) * 4);
            nl.wn = wt;
            nl.xp = cols = take(&cur, (size_t)(nl.Hp * nl.Wp * cg) * 4);
            nl.rows = tmp = nl.direct ? NULL : take(&cur, (size_t)(P * nl.Kn) * 4);
            break;
        }
        rows = take(&cur, (size_t)(mg > TB + 1 ? mg : TB + 1) * 8);
    }
    uint64_t done = 0;
    if (gran == DROWSY_TILE && !dw && !*wt_ready) {
        pack_job pj = {w, wt, M, K};
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
        if (dw || gran != DROWSY_NEURON) memset(yn, 0, (size_t)(M * P) * sizeof(float)); /* neuron items write all */
        djob j = {0};
        j.cp = cp; j.w = w; j.bias = bias; j.y = yn; j.units = units; j.act = act; j.p0 = p0; j.p1 = p1;
        j.scale = kn->scale; j.K = K; j.P = P; j.TB = TB; j.done = &done; j.wt = wt;
        if (dw) {
            j.x = x + n * cp->c * cp->h * cp->w;
            dwm_job d = {&j, gran};
            pool_for(p, M, 1, depthwise_task, &d);
            continue;
        }
        /* pixel lists shared by the groups */
        int64_t npix = 0;
        if (gran == DROWSY_PIXEL) {
            for (int64_t q = 0; q < P; q++) if (units[q]) pix[npix++] = q;
            pixel_origins(cp, pix, npix, iy0, ix0, off);
        }
        for (int64_t g = 0; g < cp->group; g++) {
            j.x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            j.row0 = g * mg; j.mg = mg; j.g = g;
            const float *wg = w + g * mg * K;
            if (gran == DROWSY_CHANNEL) {
                int64_t nk = 0;
                for (int64_t r = 0; r < mg; r++) if (units[g * mg + r]) rows[nk++] = g * mg + r;
                if (!nk) continue;
                for (int64_t i = 0; i < nk; i++) memcpy(wbuf + i * K, w + rows[i] * K, (size_t)K * sizeof(float));
                for (int64_t q = 0; q < P; q++) pix[q] = q;
                pixel_origins(cp, pix, P, iy0, ix0, off);
                j.pix = pix; j.iy0 = iy0; j.ix0 = ix0; j.off = off; j.npix = P; j.cols = cols;
                pool_for(p, K, 4, gather_cols_task, &j);
                sgemm(p, nk, P, K, wbuf, K, 0, cols, P, 0, tmp, P, 0);
                j.tmp = tmp; j.rows = rows; j.nrows = nk;
                pool_for(p, nk, 1, rows_epilogue_task, &j);
                done += (uint64_t)(nk * P);
            } else if (gran == DROWSY_PIXEL) {
                if (!npix) continue;
                j.pix = pix; j.iy0 = iy0; j.ix0 = ix0; j.off = off; j.npix = npix; j.cols = cols;
                pool_for(p, K, 4, gather_cols_task, &j);
                sgemm(p, mg, npix, K, wg, K, 0, cols, npix, 0, tmp, npix, 0);
                j.tmp = tmp; j.row0 = g * mg;
                pool_for(p, mg, 1, scatter_task, &j);
                done += (uint64_t)(mg * npix);
            } else if (gran == DROWSY_TILE) {
                int64_t t0 = (g * mg) / 16, t1 = ((g + 1) * mg + 15) / 16, nb = 0, nit = 0;
                for (int64_t bk = 0; bk < TB; bk++) {
                    int any = 0;
                    for (int64_t t = t0; t < t1; t++) any |= units[t * TB + bk];
                    if (!any) continue;
                    rows[nb] = nit;
                    for (int64_t t = t0; t < t1; t++)
                        if (units[t * TB + bk]) items[nit++] = nb * ntiles + t;
                    for (int64_t l = 0; l < DROWSY_TILE_P; l++) pix[nb * DROWSY_TILE_P + l] = bk * DROWSY_TILE_P + l;
                    nb++;
                }
                if (!nit) continue;
                pixel_origins(cp, pix, nb * DROWSY_TILE_P, iy0, ix0, off);
                rows[nb] = nit;
                j.pix = pix; j.iy0 = iy0; j.ix0 = ix0; j.off = off; j.npix = nb * DROWSY_TILE_P; j.cols = cols;
                j.items = items; j.nitems = nit; j.rows = rows;
                if (nb >= 4 * pool_threads(p)) { /* enough blocks to share out: fused */
                    pool_for(p, nb, 1, tile_block_task, &j);
                } else {
                    pool_for(p, K, 4, gather_panels_task, &j);
                    pool_for(p, nit, 1, tile_task, &j);
                }
            } else {
                nx_job xj = {cp, j.x, cols, nl.Wp};
                pool_for(p, nl.Hp, 1, neuron_nhwc_task, &xj);
                if (!nl.direct) {
                    nr_job rj = {cp, &nl, tmp};
                    pool_for(p, P, 8, neuron_rows_task, &rj);
                }
                n_job nj = {&j, &nl};
                pool_for(p, cp->oh * nl.nbr * ((mg + NCN - 1) / NCN), 1, neuron_task, &nj);
            }
        }
    }
    cnt->outputs = done;
    cnt->macs = done * (uint64_t)(dw ? cp->kh * cp->kw : K);
}
