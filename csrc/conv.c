/* 2-D convolution (mirror of kernels/conv.py). Layouts: NCHW activations, M x C/group x
 * KH x KW weights.
 *
 * General case: a GEMM of the weights (M x K, K = C/group x KH x KW) by the patch matrix
 * (K x P, P output pixels) from operands packed whole (gemm.c's layout): the weights once
 * per layer when they are constant (kept in the scratch), the patch matrix straight from
 * a zero-padded copy of the input (no im2col matrix): for every row of K and panel of 16
 * pixels, a 16-float copy when the panel's taps are consecutive, else a gather (AVX2 on
 * x86-64) with precomputed pixel offsets. The product runs in 2-D tiles shared by the
 * threads (nothing repacked per thread) with bias and activation applied per tile.
 * Depthwise convolutions use a direct kernel. Shapes whose padded image would not fit
 * 32-bit offsets fall back to im2col + sgemm. */
#include <string.h>

#include "internal.h"

#define ALIGN16(n) (((size_t)(n) + 15) / 16 * 16)

typedef struct conv_geom {
    int64_t cg, mg, P, K, Hp, Wp, np, npad;
    size_t pa_g, pa, pb, xp, base;   /* floats, each region 64-byte aligned */
    int alias;                       /* the input itself is the padded image */
} conv_geom;

static int is_dw(const conv_params *cp) { return cp->group == cp->c && cp->c / cp->group == 1 && cp->group > 1; }

/* 0: not packable (fall back to im2col + sgemm) */
static int geom(const conv_params *cp, conv_geom *gm) {
    gm->cg = cp->c / cp->group;
    gm->mg = cp->m / cp->group;
    gm->P = cp->oh * cp->ow;
    gm->K = gm->cg * cp->kh * cp->kw;
    gm->Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    gm->Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
    gm->np = (gm->P + GEMM_NR - 1) / GEMM_NR;
    gm->npad = gm->np * GEMM_NR;
    gm->alias = cp->pt == 0 && cp->pl == 0 && gm->Hp == cp->h && gm->Wp == cp->w;
    gm->pa_g = ALIGN16(gemm_packed_a_floats(gm->mg, gm->K));
    gm->pa = gm->pa_g * (size_t)cp->group;
    gm->pb = ALIGN16(gemm_packed_b_floats(gm->P, gm->K));
    gm->xp = gm->alias ? 0 : ALIGN16(gm->cg * gm->Hp * gm->Wp);
    gm->base = ALIGN16(gm->npad) + ALIGN16(gm->np);   /* int32 offsets, int32 flags */
    return gm->Hp * gm->Wp < ((int64_t)1 << 30) && gm->P > 0 && gm->K > 0;
}

/* scratch header (first 16 floats) */
typedef struct conv_hdr { const float *w; int w_ready, base_ready; } conv_hdr;
enum { HDR = 16 };

static size_t im2col_floats(const conv_params *cp) {
    int64_t cg = cp->c / cp->group;
    return (size_t)(cg * cp->kh * cp->kw) * (size_t)(cp->oh * cp->ow);
}

size_t conv_scratch_floats(const conv_params *cp) {
    if (is_dw(cp)) return 0;
    conv_geom gm;
    if (!geom(cp, &gm)) return im2col_floats(cp);
    return HDR + gm.pa + gm.pb + gm.xp + gm.base;
}

typedef struct im2col_job { const conv_params *cp; const float *x; float *cols; int64_t cg; } im2col_job;

static void im2col_task(void *ctx, int64_t b, int64_t e) {
    const im2col_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t kk = cp->kh * cp->kw, oh = cp->oh, ow = cp->ow, h = cp->h, w = cp->w;
    for (int64_t r = b; r < e; r++) {
        int64_t c = r / kk, i = (r % kk) / cp->kw, jj = r % cp->kw;
        const float *xc = j->x + c * h * w;
        float *dst = j->cols + r * oh * ow;
        int64_t xoff = jj * cp->dw - cp->pl;
        /* valid output columns: 0 <= xx*sw + xoff < w */
        int64_t x0 = xoff >= 0 ? 0 : (-xoff + cp->sw - 1) / cp->sw;
        int64_t x1 = w - xoff <= 0 ? 0 : (w - xoff + cp->sw - 1) / cp->sw;
        if (x1 > ow) x1 = ow;
        if (x0 > x1) x0 = x1;
        for (int64_t y = 0; y < oh; y++) {
            int64_t iy = y * cp->sh - cp->pt + i * cp->dh;
            float *d = dst + y * ow;
            if (iy < 0 || iy >= h) { memset(d, 0, (size_t)ow * sizeof(float)); continue; }
            const float *src = xc + iy * w + xoff;
            for (int64_t xx = 0; xx < x0; xx++) d[xx] = 0.0f;
            if (cp->sw == 1) memcpy(d + x0, src + x0, (size_t)(x1 - x0) * sizeof(float));
            else for (int64_t xx = x0; xx < x1; xx++) d[xx] = src[xx * cp->sw];
            for (int64_t xx = x1; xx < ow; xx++) d[xx] = 0.0f;
        }
    }
}

typedef struct dw_job { const conv_params *cp; const float *x, *w; float *y; int64_t mult; } dw_job;

static void depthwise_task(void *ctx, int64_t b, int64_t e) {
    const dw_job *j = ctx;
    const conv_params *cp = j->cp;
    for (int64_t nm = b; nm < e; nm++) {
        int64_t n = nm / cp->m, m = nm % cp->m, c = m / j->mult;
        const float *xc = j->x + (n * cp->c + c) * cp->h * cp->w;
        const float *wk = j->w + m * cp->kh * cp->kw;
        float *out = j->y + nm * cp->oh * cp->ow;
        for (int64_t y = 0; y < cp->oh; y++)
            for (int64_t xx = 0; xx < cp->ow; xx++) out[y * cp->ow + xx] = depthwise_tap_sum(cp, xc, wk, y, xx);
    }
}

/* -- the packed path ------------------------------------------------------------------------ */
typedef struct pad_job { const conv_params *cp; const float *x; float *xpad; int64_t Hp, Wp; } pad_job;

static void pad_task(void *ctx, int64_t b, int64_t e) {
    const pad_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t Wp = j->Wp, x0 = cp->pl < 0 ? 0 : cp->pl, x1 = cp->pl + cp->w < Wp ? cp->pl + cp->w : Wp;
    if (x0 > x1) x0 = x1;
    for (int64_t r = b; r < e; r++) {   /* r = c * Hp + yy */
        int64_t c = r / j->Hp, iy = r % j->Hp - cp->pt;
        float *d = j->xpad + r * Wp;
        if (iy < 0 || iy >= cp->h) { memset(d, 0, (size_t)Wp * sizeof(float)); continue; }
        const float *s = j->x + (c * cp->h + iy) * cp->w;   /* image column xx - pl */
        for (int64_t xx = 0; xx < x0; xx++) d[xx] = 0.0f;
        if (x1 > x0) memcpy(d + x0, s + (x0 - cp->pl), (size_t)(x1 - x0) * sizeof(float));
        for (int64_t xx = x1; xx < Wp; xx++) d[xx] = 0.0f;
    }
}

void conv_pad_input(pool *p, const conv_params *cp, const float *x, int64_t channels, int64_t Hp, int64_t Wp,
                    float *xpad) {
    pad_job pj = {cp, x, xpad, Hp, Wp};
    pool_for(p, channels * Hp, 4, pad_task, &pj);
}

void conv_pad_rows(const conv_params *cp, const float *x, int64_t Hp, int64_t Wp, float *xpad, int64_t r0, int64_t r1) {
    pad_job pj = {cp, x, xpad, Hp, Wp};
    pad_task(&pj, r0, r1);
}

/* pixel q's tap (0, 0) in the padded image (-1 past P); flag of panel j: its 16 pixels'
 * taps are 16 consecutive floats */
static void panel_bases(const conv_params *cp, const conv_geom *gm, int32_t *base, int32_t *contig) {
    for (int64_t q = 0; q < gm->npad; q++)
        base[q] = q < gm->P ? (int32_t)((q / cp->ow) * cp->sh * gm->Wp + (q % cp->ow) * cp->sw) : -1;
    for (int64_t j = 0; j < gm->np; j++) {
        int ok = 1;
        for (int l = 0; l < GEMM_NR && ok; l++) ok = base[j * GEMM_NR + l] == base[j * GEMM_NR] + l;
        contig[j] = ok;
    }
}

typedef struct packb_job {
    const conv_params *cp; const conv_geom *gm;
    const float *xp; const int32_t *base, *contig; float *pb;
} packb_job;

typedef float v8u __attribute__((vector_size(32), aligned(4)));

/* rows [b, e) of the patch matrix into their places in the packed panels */
#define DEFINE_PACKB(NAME, ATTR, GATHER)                                                           \
    ATTR static void NAME(const packb_job *j, int64_t b, int64_t e) {                              \
        const conv_params *cp = j->cp;                                                             \
        const conv_geom *gm = j->gm;                                                               \
        int64_t kk = cp->kh * cp->kw, hw = gm->Hp * gm->Wp, K = gm->K, kstep = gemm_kstep(K);      \
        for (int64_t r = b; r < e; r++) {                                                          \
            int64_t c = r / kk, ti = (r % kk) / cp->kw, tj = r % cp->kw;                           \
            const float *xr = j->xp + c * hw + ti * cp->dh * gm->Wp + tj * cp->dw;                 \
            int64_t pc = r / kstep * kstep, kc = K - pc < kstep ? K - pc : kstep;                  \
            float *d = j->pb + pc * gm->npad + (r - pc) * GEMM_NR;                                 \
            for (int64_t q = 0; q < gm->np; q++, d += kc * GEMM_NR) {                              \
                const int32_t *bs = j->base + q * GEMM_NR;                                         \
                if (j->contig[q]) {                                                                \
                    const float *s = xr + bs[0];                                                   \
                    *(v8u *)d = *(const v8u *)s;                                                   \
                    *(v8u *)(d + 8) = *(const v8u *)(s + 8);                                       \
                } else GATHER(d, xr, bs);                                                          \
            }                                                                                      \
        }                                                                                          \
    }

static inline __attribute__((always_inline)) void gather16_base(float *d, const float *xr, const int32_t *bs) {
    for (int t = 0; t < GEMM_NR; t++) d[t] = bs[t] >= 0 ? xr[bs[t]] : 0.0f;
}
DEFINE_PACKB(packb_base, , gather16_base)

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"), always_inline)) static inline void gather16_avx2(float *d, const float *xr,
                                                                                    const int32_t *bs) {
    __m256i i0 = _mm256_loadu_si256((const __m256i *)bs), i1 = _mm256_loadu_si256((const __m256i *)(bs + 8));
    __m256i neg = _mm256_set1_epi32(-1);
    __m256 m0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, neg)), m1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, neg));
    _mm256_store_ps(d, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i0, m0, 4));
    _mm256_store_ps(d + 8, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, i1, m1, 4));
}
DEFINE_PACKB(packb_avx2, __attribute__((target("avx2,fma"))), gather16_avx2)
#define CONV_DISPATCH 1
#endif

static void packb_task(void *ctx, int64_t b, int64_t e) {
#ifdef CONV_DISPATCH
    if (aipn_cpu_has_avx2_fma()) { packb_avx2(ctx, b, e); return; }
#endif
    packb_base(ctx, b, e);
}

static void conv2d_packed(pool *p, const conv_params *cp, const conv_geom *gm, const float *x, const float *w,
                          const float *bias, float *y, float *scratch, int act, float p0, float p1) {
    conv_hdr *hdr = (conv_hdr *)scratch;
    float *pa = scratch + HDR, *pb = pa + gm->pa, *xp = pb + gm->pb;
    int32_t *base = (int32_t *)(xp + gm->xp), *contig = base + ALIGN16(gm->npad);
    int64_t P = gm->P, K = gm->K, mg = gm->mg, cg = gm->cg;
    if (!(cp->weights_const && hdr->w_ready && hdr->w == w)) {
        for (int64_t g = 0; g < cp->group; g++) gemm_pack_a(p, mg, K, w + g * mg * K, K, 0, pa + g * gm->pa_g);
        hdr->w = w;
        hdr->w_ready = 1;
    }
    if (!hdr->base_ready) {
        panel_bases(cp, gm, base, contig);
        hdr->base_ready = 1;
    }
    for (int64_t n = 0; n < cp->n; n++) {
        float *yn = y + n * cp->m * P;
        for (int64_t g = 0; g < cp->group; g++) {
            const float *xg = x + (n * cp->c + g * cg) * cp->h * cp->w, *src = xg;
            if (!gm->alias) {
                conv_pad_input(p, cp, xg, cg, gm->Hp, gm->Wp, xp);
                src = xp;
            }
            packb_job bj = {cp, gm, src, base, contig, pb};
            pool_for(p, K, 1 + 2048 / (gm->npad + 1), packb_task, &bj);
            sgemm_packed(p, mg, P, K, pa + g * gm->pa_g, pb, yn + g * mg * P, P, bias ? bias + g * mg : NULL, act, p0,
                         p1);
        }
    }
}

void conv2d(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
            float *scratch, int act, float p0, float p1) {
    conv_geom gm;
    if (!is_dw(cp) && geom(cp, &gm)) {
        conv2d_packed(p, cp, &gm, x, w, bias, y, scratch, act, p0, p1);
        return;
    }
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    if (cp->group == cp->c && cg == 1 && cp->group > 1) {
        dw_job j = {cp, x, w, y, cp->m / cp->c};
        pool_for(p, cp->n * cp->m, 1, depthwise_task, &j);
        for (int64_t n = 0; n < cp->n; n++) bias_act_rows(p, y + n * cp->m * P, cp->m, P, bias, act, p0, p1);
        return;
    }
    int pointwise = cp->kh == 1 && cp->kw == 1 && cp->sh == 1 && cp->sw == 1 && cp->pt == 0 && cp->pl == 0 &&
                    cp->oh == cp->h && cp->ow == cp->w;
    for (int64_t n = 0; n < cp->n; n++) {
        float *yn = y + n * cp->m * P;
        for (int64_t g = 0; g < cp->group; g++) {
            const float *xg = x + (n * cp->c + g * cg) * cp->h * cp->w;
            const float *patch = xg;
            if (!pointwise) {
                im2col_job j = {cp, xg, scratch, cg};
                pool_for(p, K, 4, im2col_task, &j);
                patch = scratch;
            }
            sgemm(p, mg, P, K, w + g * mg * K, K, 0, patch, P, 0, yn + g * mg * P, P, 0);
        }
        bias_act_rows(p, yn, cp->m, P, bias, act, p0, p1);
    }
}
