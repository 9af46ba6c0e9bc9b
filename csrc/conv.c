/* 2-D convolution (mirror of kernels/conv.py). Layouts: NCHW activations, M x C/group x
 * KH x KW weights.
 *
 * General case: the panel engine (conv_panels.c), the C backend's one dense conv kernel,
 * which DrowsyNet's tile, pixel and channel granularities run on too: for every block of 64
 * output pixels, the patches gathered straight from a zero-padded copy of the input (no
 * im2col matrix) into panels of K x 16, multiplied by the weights, packed once per layer
 * when they are constant (kept in the scratch with the engine's layout), in 6 x 16
 * register tiles, bias and activation applied in registers. Depthwise convolutions use a
 * direct kernel. Shapes the engine cannot take (panel_fits: a padded plane of 2^31 floats
 * or more, past its 32-bit offsets, or nothing to sum over) fall back to im2col + sgemm. */
#include <string.h>

#include "conv_panels.h"

#define ALIGN16(n) (((size_t)(n) + 15) / 16 * 16)

static size_t im2col_floats(const conv_params *cp) {
    int64_t cg = cp->c / cp->group;
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
            for (int64_t xx = 0; xx < cp->ow; xx++) out[y * cp->ow + xx] = depthwise_tap_sum(cp, xc, wk, y, xx);
    }
}

/* -- padding (shared with conv_panels.c and drowsy_neuron.c) -------------------------------- */
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

/* -- the panel engine ------------------------------------------------------------------------ */
/* The scratch of a panel conv: this header, the weights packed by group (gemm_pack_a), then the
 * engine's regions (panel_bind). The engine's set-up (slots, blocks, row list: all rows, all
 * kept) depends on the shape only and is done at the first call; the weights are packed again
 * at every call unless they are constant and the same buffer as last time. The scratch is the
 * plan's (ops.c: one per conv step, arena_alloc zeroes it, so ready and w_ready start at 0),
 * and a session runs one call at a time, so no two calls share it at once. */
typedef struct panel_hdr { panel_conv pc; const float *w; int ready, w_ready; } panel_hdr;
#define PHDR_FLOATS (ALIGN64(sizeof(panel_hdr)) / sizeof(float))

static size_t wpack_floats(const conv_params *cp) {
    return ALIGN16(gemm_packed_a_floats(cp->m / cp->group, cp->c / cp->group * cp->kh * cp->kw));
}

size_t conv_scratch_floats(const conv_params *cp) {
    if (conv_is_depthwise(cp)) return 0;
    if (!panel_fits(cp)) return im2col_floats(cp);
    return PHDR_FLOATS + wpack_floats(cp) * (size_t)cp->group + panel_scratch_bytes(cp, PANEL_SHARED) / sizeof(float);
}

static void conv2d_panels(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
                          float *scratch, int act, float p0, float p1) {
    panel_hdr *h = (panel_hdr *)scratch;
    panel_conv *pc = &h->pc;
    float *wpack = scratch + PHDR_FLOATS;
    int64_t P = cp->oh * cp->ow, cg = cp->c / cp->group, mg = cp->m / cp->group, K = cg * cp->kh * cp->kw;
    size_t wg = wpack_floats(cp);
    if (!h->ready) {   /* every pixel a slot, every row kept: row list 0 .. M - 1, a group's from row0 */
        panel_bind(cp, PANEL_SHARED, wpack + wg * (size_t)cp->group, pc);
        for (int64_t q = 0; q < P; q++) pc->pix[q] = q;
        panel_slots(pc, P);
        for (int64_t i = 0; i < cp->m; i++) pc->rowbuf[i] = (int32_t)i;
        for (int64_t b = 0; b < pc->nblk; b++) pc->nkept[b] = (int32_t)mg;
        h->ready = 1;
    }
    if (!(cp->weights_const && h->w_ready && h->w == w)) {
        for (int64_t g = 0; g < cp->group; g++) gemm_pack_a(p, mg, K, w + g * mg * K, K, 0, wpack + g * wg);
        h->w = w;
        h->w_ready = 1;
    }
    pc->cp = cp;
    pc->w = w; pc->bias = bias; pc->act = act; pc->p0 = p0; pc->p1 = p1; pc->scale = 1.0f;
    for (int64_t n = 0; n < cp->n; n++)
        for (int64_t g = 0; g < cp->group; g++) {
            pc->x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            pc->y = y + n * cp->m * P;
            pc->row0 = g * mg;
            pc->rows = pc->rowbuf + g * mg;
            pc->wpack = wpack + g * wg;
            panel_run(p, pc);
        }
}

void conv2d(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
            float *scratch, int act, float p0, float p1) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    if (conv_is_depthwise(cp)) {
        dw_job j = {cp, x, w, y, cp->m / cp->c};
        pool_for(p, cp->n * cp->m, 1, depthwise_task, &j);
        for (int64_t n = 0; n < cp->n; n++) bias_act_rows(p, y + n * cp->m * P, cp->m, P, bias, act, p0, p1);
        return;
    }
    if (panel_fits(cp)) {
        conv2d_panels(p, cp, x, w, bias, y, scratch, act, p0, p1);
        return;
    }
    /* the shapes panel_fits refuses: im2col + sgemm (64-bit offsets throughout) */
    for (int64_t n = 0; n < cp->n; n++) {
        float *yn = y + n * cp->m * P;
        for (int64_t g = 0; g < cp->group; g++) {
            im2col_job j = {cp, x + (n * cp->c + g * cg) * cp->h * cp->w, scratch, cg};
            pool_for(p, K, 4, im2col_task, &j);
            sgemm(p, mg, P, K, w + g * mg * K, K, 0, scratch, P, 0, yn + g * mg * P, P, 0);
        }
        bias_act_rows(p, yn, cp->m, P, bias, act, p0, p1);
    }
}
