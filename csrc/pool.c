/* Max and average pooling over NCHW planes (mirror of kernels/pool.py). NaN never wins
 * a max (ignored, as in onnxruntime); a window of only -inf/NaN gives -inf. */
#include <math.h>

#include "internal.h"

typedef struct pool_job { const pool_params *pp; const float *x; float *y; int64_t s; int is_max; } pool_job;

static void max_task(void *ctx, int64_t b, int64_t e) {
    const pool_job *j = ctx;
    const pool_params *q = j->pp;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * q->h * q->w;
        float *y = j->y + p * q->oh * q->ow;
        for (int64_t oy = 0; oy < q->oh; oy++)
            for (int64_t ox = 0; ox < q->ow; ox++) {
                float best = -INFINITY;
                for (int64_t i = 0; i < q->kh; i++) {
                    int64_t iy = oy * q->sh - q->pt + i * q->dh;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int64_t jj = 0; jj < q->kw; jj++) {
                        int64_t ix = ox * q->sw - q->pl + jj * q->dw;
                        if (ix >= 0 && ix < q->w && x[iy * q->w + ix] > best) best = x[iy * q->w + ix];
                    }
                }
                y[oy * q->ow + ox] = best;
            }
    }
}

void maxpool2d(pool *p, const pool_params *pp, const float *x, float *y) {
    pool_job j = {pp, x, y, 0, 1};
    pool_for(p, pp->planes, 1, max_task, &j);
}

static void avg_task(void *ctx, int64_t b, int64_t e) {
    const pool_job *j = ctx;
    const pool_params *q = j->pp;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * q->h * q->w;
        float *y = j->y + p * q->oh * q->ow;
        for (int64_t oy = 0; oy < q->oh; oy++)
            for (int64_t ox = 0; ox < q->ow; ox++) {
                float acc = 0.0f;
                int64_t n = 0;
                for (int64_t i = 0; i < q->kh; i++) {
                    int64_t iy = oy * q->sh - q->pt + i * q->dh;
                    int inside_y = iy >= -q->pt && iy < q->h + q->pb;
                    for (int64_t jj = 0; jj < q->kw; jj++) {
                        int64_t ix = ox * q->sw - q->pl + jj * q->dw;
                        if (iy >= 0 && iy < q->h && ix >= 0 && ix < q->w) { acc += x[iy * q->w + ix]; n++; }
                        else if (q->count_include_pad && inside_y && ix >= -q->pl && ix < q->w + q->pr) n++;
                    }
                }
                y[oy * q->ow + ox] = n > 0 ? acc / (float)n : 0.0f;
            }
    }
}

void avgpool2d(pool *p, const pool_params *pp, const float *x, float *y) {
    pool_job j = {pp, x, y, 0, 0};
    pool_for(p, pp->planes, 1, avg_task, &j);
}

static void global_task(void *ctx, int64_t b, int64_t e) {
    const pool_job *j = ctx;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * j->s;
        if (j->is_max) {
            float best = -INFINITY;
            for (int64_t i = 0; i < j->s; i++) if (x[i] > best) best = x[i];
            j->y[p] = best;
        } else {
            double acc = 0.0;
            for (int64_t i = 0; i < j->s; i++) acc += x[i];
            j->y[p] = (float)(acc / (double)j->s);
        }
    }
}

void global_pool(pool *p, const float *x, int64_t planes, int64_t s, int is_max, float *y) {
    pool_job j = {NULL, x, y, s, is_max};
    pool_for(p, planes, 1, global_task, &j);
}
