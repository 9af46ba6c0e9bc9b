/* LRN across channels and inference batch norm (mirror of kernels/norm.py). LRN works
 * on blocks of pixels so that the inner loops run along contiguous memory; the window
 * sum is recomputed per channel (no sliding add/subtract, which cancels badly). */
#include <math.h>

#include "internal.h"

enum { BLOCK = 256 };

typedef struct lrn_job { const float *x; float *y; int64_t c, s, size, nblocks; float alpha, beta, bias; } lrn_job;

static inline float inv_pow(float t, float beta) {
    if (beta == 0.75f) { float r = sqrtf(t); return 1.0f / (r * sqrtf(r)); }
    if (beta == 0.5f) return 1.0f / sqrtf(t);
    if (beta == 1.0f) return 1.0f / t;
    return powf(t, -beta);
}

static void lrn_task(void *ctx, int64_t b, int64_t e) {
    const lrn_job *j = ctx;
    int64_t lo = (j->size - 1) / 2, hi = j->size - 1 - lo;
    float scale = j->alpha / (float)j->size;
    float sq[BLOCK];
    for (int64_t job = b; job < e; job++) {
        int64_t n = job / j->nblocks, s0 = (job % j->nblocks) * BLOCK;
        int64_t s1 = s0 + BLOCK < j->s ? s0 + BLOCK : j->s, len = s1 - s0;
        const float *x = j->x + n * j->c * j->s;
        float *y = j->y + n * j->c * j->s;
        for (int64_t c = 0; c < j->c; c++) {
            for (int64_t s = 0; s < len; s++) sq[s] = 0.0f;
            int64_t k0 = c - lo < 0 ? 0 : c - lo, k1 = c + hi > j->c - 1 ? j->c - 1 : c + hi;
            for (int64_t k = k0; k <= k1; k++) {
                const float *xk = x + k * j->s + s0;
                for (int64_t s = 0; s < len; s++) sq[s] += xk[s] * xk[s];
            }
            const float *xc = x + c * j->s + s0;
            float *yc = y + c * j->s + s0;
            for (int64_t s = 0; s < len; s++) yc[s] = xc[s] * inv_pow(j->bias + scale * sq[s], j->beta);
        }
    }
}

void lrn_f32(pool *p, const float *x, int64_t n, int64_t c, int64_t s, int64_t size, float alpha, float beta,
             float bias, float *y) {
    lrn_job j = {x, y, c, s, size, (s + BLOCK - 1) / BLOCK, alpha, beta, bias};
    pool_for(p, n * j.nblocks, 1, lrn_task, &j);
}

typedef struct ss_job { const float *x, *scale, *shift; float *y; int64_t c, s; } ss_job;

static void ss_task(void *ctx, int64_t b, int64_t e) {
    const ss_job *j = ctx;
    for (int64_t nc = b; nc < e; nc++) {
        float a = j->scale[nc % j->c], sh = j->shift[nc % j->c];
        const float *x = j->x + nc * j->s;
        float *y = j->y + nc * j->s;
        for (int64_t i = 0; i < j->s; i++) y[i] = x[i] * a + sh;
    }
}

void scale_shift_f32(pool *p, const float *x, int64_t n, int64_t c, int64_t s, const float *scale, const float *shift,
                     float *y) {
    ss_job j = {x, scale, shift, y, c, s};
    pool_for(p, n * c, 1 + 4096 / (s + 1), ss_task, &j);
}
