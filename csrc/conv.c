/* 2-D convolution (mirror of kernels/conv.py): im2col + our GEMM in general, the input
 * itself as the patch matrix for 1x1 stride-1 unpadded convolutions, and a direct kernel
 * for depthwise. Layouts: NCHW activations, M x C/group x KH x KW weights. */
#include <string.h>

#include "internal.h"

size_t conv_scratch_floats(const conv_params *cp) {
    int64_t cg = cp->c / cp->group;
    if (cp->group == cp->c && cp->m % cp->c == 0 && cp->group > 1 && cg == 1) return 0;
    return (size_t)(cg * cp->kh * cp->kw) * (size_t)(cp->oh * cp->ow);
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
            for (int64_t xx = 0; xx < cp->ow; xx++) {
                float acc = 0.0f;
                for (int64_t i = 0; i < cp->kh; i++) {
                    int64_t iy = y * cp->sh - cp->pt + i * cp->dh;
                    if (iy < 0 || iy >= cp->h) continue;
                    for (int64_t jj = 0; jj < cp->kw; jj++) {
                        int64_t ix = xx * cp->sw - cp->pl + jj * cp->dw;
                        if (ix >= 0 && ix < cp->w) acc += xc[iy * cp->w + ix] * wk[i * cp->kw + jj];
                    }
                }
                out[y * cp->ow + xx] = acc;
            }
    }
}

void conv2d(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
            float *scratch, int act, float p0, float p1) {
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
