/* Softmax and LogSoftmax along the middle axis of an (outer, L, inner) view (mirror of
 * kernels/softmax.py). NaN and +inf propagate as in onnxruntime. */
#include <math.h>

#include "internal.h"

typedef struct sm_job { const float *x; float *y; int64_t l, i; int log; } sm_job;

static void sm_task(void *ctx, int64_t b, int64_t e) {
    const sm_job *j = ctx;
    for (int64_t oi = b; oi < e; oi++) {
        int64_t o = oi / j->i, i = oi % j->i;
        const float *x = j->x + o * j->l * j->i + i;
        float *y = j->y + o * j->l * j->i + i;
        float m = -INFINITY;
        for (int64_t k = 0; k < j->l; k++) { float v = x[k * j->i]; if (v > m || v != v) m = v; }
        float acc = 0.0f;
        for (int64_t k = 0; k < j->l; k++) acc += expf(x[k * j->i] - m);
        if (j->log) {
            float lse = logf(acc);
            for (int64_t k = 0; k < j->l; k++) y[k * j->i] = x[k * j->i] - m - lse;
        } else {
            float inv = 1.0f / acc;
            for (int64_t k = 0; k < j->l; k++) y[k * j->i] = expf(x[k * j->i] - m) * inv;
        }
    }
}

void softmax_f32(pool *p, const float *x, int64_t o, int64_t l, int64_t i, int log, float *y) {
    sm_job j = {x, y, l, i, log};
    pool_for(p, o * i, 1 + 1024 / (l + 1), sm_task, &j);
}
