/* Bias + activation epilogues and unary activations (mirror of kernels/activation.py).
 * Activation codes: ACT_NONE, ACT_RELU, ACT_CLIP (lo, hi), ACT_LEAKY (alpha = p1). */
#include <math.h>

#include "internal.h"

static inline float apply(float v, int act, float p0, float p1) {
    switch (act) {
    case ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN and -0 pass through, as in ORT */
    case ACT_CLIP: { float r = v < p0 ? p0 : v; return r > p1 ? p1 : r; } /* min, then max */
    case ACT_LEAKY: return v < 0.0f ? v * p1 : v;
    default: return v;
    }
}

typedef struct act_job { float *y; const float *x; int64_t cols; const float *bias; int act; float p0, p1; } act_job;

/* One loop per activation (the switch hoisted out of the element loop), so that every
 * inner loop is branch-free and auto-vectorised (SSE/AVX on x86-64, NEON on AArch64). */
#define ACT_SWITCH(act, LOOP)                          \
    switch (act) {                                     \
    case ACT_RELU: LOOP(ACT_RELU); break;              \
    case ACT_CLIP: LOOP(ACT_CLIP); break;              \
    case ACT_LEAKY: LOOP(ACT_LEAKY); break;            \
    default: LOOP(ACT_NONE); break;                    \
    }

static void rows_task(void *ctx, int64_t b, int64_t e) {
    const act_job *j = ctx;
    const int64_t cols = j->cols;
    const float p0 = j->p0, p1 = j->p1;
    for (int64_t r = b; r < e; r++) {
        const float bb = j->bias ? j->bias[r] : 0.0f;
        float *restrict y = j->y + r * cols;
#define ROWS_LOOP(A) for (int64_t c = 0; c < cols; c++) y[c] = apply(y[c] + bb, A, p0, p1)
        ACT_SWITCH(j->act, ROWS_LOOP)
#undef ROWS_LOOP
    }
}

void bias_act_rows(pool *p, float *y, int64_t rows, int64_t cols, const float *bias, int act, float p0, float p1) {
    if (!bias && act == ACT_NONE) return;
    act_job j = {y, NULL, cols, bias, act, p0, p1};
    pool_for(p, rows, 1 + 16384 / (cols + 1), rows_task, &j);
}

static void cols_task(void *ctx, int64_t b, int64_t e) {
    const act_job *j = ctx;
    const int64_t cols = j->cols;
    const float p0 = j->p0, p1 = j->p1;
    const float *restrict bias = j->bias;
    for (int64_t r = b; r < e; r++) {
        float *restrict y = j->y + r * cols;
        if (bias) {
#define COLS_BIAS_LOOP(A) for (int64_t c = 0; c < cols; c++) y[c] = apply(y[c] + bias[c], A, p0, p1)
            ACT_SWITCH(j->act, COLS_BIAS_LOOP)
#undef COLS_BIAS_LOOP
        } else {
#define COLS_LOOP(A) for (int64_t c = 0; c < cols; c++) y[c] = apply(y[c] + 0.0f, A, p0, p1)
            ACT_SWITCH(j->act, COLS_LOOP)
#undef COLS_LOOP
        }
    }
}

void bias_act_cols(pool *p, float *y, int64_t rows, int64_t cols, const float *bias, int act, float p0, float p1) {
    if (!bias && act == ACT_NONE) return;
    act_job j = {y, NULL, cols, bias, act, p0, p1};
    pool_for(p, rows, 1 + 16384 / (cols + 1), cols_task, &j);
}

static void flat_task(void *ctx, int64_t b, int64_t e) {
    const act_job *j = ctx;
    const float p0 = j->p0, p1 = j->p1;
    float *restrict y = j->y;
#define FLAT_LOOP(A) for (int64_t i = b; i < e; i++) y[i] = apply(y[i], A, p0, p1)
    ACT_SWITCH(j->act, FLAT_LOOP)
#undef FLAT_LOOP
}

void act_inplace(pool *p, float *x, int64_t n, int act, float p0, float p1) {
    if (act == ACT_NONE) return;
    act_job j = {x, NULL, 0, NULL, act, p0, p1};
    pool_for(p, n, 16384, flat_task, &j);
}

static void sigmoid_task(void *ctx, int64_t b, int64_t e) {
    const act_job *j = ctx;
    for (int64_t i = b; i < e; i++) {
        float v = j->x[i];
        if (v >= 0) j->y[i] = 1.0f / (1.0f + expf(-v));
        else { float t = expf(v); j->y[i] = t / (1.0f + t); }
    }
}

void sigmoid_f32(pool *p, const float *x, float *y, int64_t n) {
    act_job j = {y, x, 0, NULL, 0, 0, 0};
    pool_for(p, n, 4096, sigmoid_task, &j);
}

static void tanh_task(void *ctx, int64_t b, int64_t e) {
    const act_job *j = ctx;
    for (int64_t i = b; i < e; i++) j->y[i] = tanhf(j->x[i]);
}

void tanh_f32(pool *p, const float *x, float *y, int64_t n) {
    act_job j = {y, x, 0, NULL, 0, 0, 0};
    pool_for(p, n, 4096, tanh_task, &j);
}
