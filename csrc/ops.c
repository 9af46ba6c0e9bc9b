/* The op table of the C backend: for every op the Numba backend implements (see
 * engine/ops/<op>.py, whose checks these mirror), `prep` validates attributes against the
 * input shapes, sets output shapes, resolves pads/axes and arranges weights once per
 * plan; `run` computes with the kernels of conv.c, gemm.c, ... Shape-only ops run at
 * plan time (their inputs are constants once input shapes are known). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define MAX_ELEMENTS ((int64_t)1 << 31)

static val *vin(plan *pl, step *st, uint32_t k) {
    return k < st->nd->nin && st->nd->in[k] >= 0 ? &pl->vals[st->nd->in[k]] : NULL;
}
static val *vout(plan *pl, step *st, uint32_t k) {
    return k < st->nd->nout && st->nd->out[k] >= 0 ? &pl->vals[st->nd->out[k]] : NULL;
}

static aipn_status bad_attr(step *st, const char *key, const char *why) {
    return aipn_fail(AIPN_ERR_UNSUPPORTED, "node '%s' (%s): attribute %s is not supported: %s", st->nd->name,
                     st->nd->opname, key, why);
}
#define BAD_INPUT(st, ...) bad_input_(st, __VA_ARGS__)
__attribute__((format(printf, 2, 3))) static aipn_status bad_input_(step *st, const char *fmt, ...);
#include <stdarg.h>
#include <stdio.h>
static aipn_status bad_input_(step *st, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return aipn_fail(AIPN_ERR_SHAPE, "node '%s' (%s): %s", st->nd->name, st->nd->opname, msg);
}

static aipn_status set_out(step *st, val *o, int dtype, int ndim, const int64_t *dims) {
    if (!o) return AIPN_OK;
    if (ndim < 0 || ndim > MAXD) return BAD_INPUT(st, "output rank %d is not supported (at most %d)", ndim, MAXD);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0) return BAD_INPUT(st, "negative output dimension");
        if (dims[i] && n > MAX_ELEMENTS / dims[i]) return BAD_INPUT(st, "output has more than 2^31 elements");
        n *= dims[i];
    }
    o->dtype = dtype;
    o->ndim = ndim;
    memcpy(o->dims, dims, sizeof(int64_t) * (size_t)ndim);
    o->numel = n;
    o->defined = 1;
    return AIPN_OK;
}

static int64_t aint(step *st, const char *k, int64_t def) {
    const attr *a = node_attr(st->nd, k);
    return a && a->type == AT_INT ? a->i : def;
}
static float afloat(step *st, const char *k, float def) {
    const attr *a = node_attr(st->nd, k);
    return a && a->type == AT_FLOAT ? a->f : a && a->type == AT_INT ? (float)a->i : def;
}
static const char *astr(step *st, const char *k, const char *def) {
    const attr *a = node_attr(st->nd, k);
    return a && a->type == AT_STRING ? a->s : def;
}
/* ints attribute: returns count, -1 if absent, -2 if longer than max */
static int aints(step *st, const char *k, int64_t *out, int max) {
    const attr *a = node_attr(st->nd, k);
    if (!a || a->type != AT_INTS) return -1;
    if (a->n > (uint32_t)max) return -2;
    memcpy(out, a->ints, sizeof(int64_t) * a->n);
    return (int)a->n;
}

static void fused_act(step *st) {
    const char *k = astr(st, "_act", "");
    const attr *p = node_attr(st->nd, "_act_params");
    float p0 = p && p->type == AT_FLOATS && p->n > 0 ? p->floats[0] : 0.0f;
    float p1 = p && p->type == AT_FLOATS && p->n > 1 ? p->floats[1] : 0.0f;
    st->act = !strcmp(k, "relu") ? ACT_RELU : !strcmp(k, "clip") ? ACT_CLIP : !strcmp(k, "leaky") ? ACT_LEAKY : ACT_NONE;
    st->p0 = p0;
    st->p1 = p1;
}

static int64_t prod(const int64_t *d, int a, int b) {
    int64_t n = 1;
    for (int i = a; i < b; i++) n *= d[i];
    return n;
}

static aipn_status need_f32(step *st, val *v, const char *what) {
    if (!v) return BAD_INPUT(st, "%s is missing", what);
    if (v->dtype != DT_F32) return BAD_INPUT(st, "%s must be float32 (dtype code %d)", what, v->dtype);
    return AIPN_OK;
}

static aipn_status norm_axis(step *st, int64_t axis, int rank, const char *key, int *out) {
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) return bad_attr(st, key, "out of range for the input rank");
    *out = (int)a;
    return AIPN_OK;
}

/* -- pads, as engine/ops/conv.py resolve_pads ------------------------------------------ */
static aipn_status resolve_pads(step *st, int nd, const int64_t *in, const int64_t *k, const int64_t *s,
                                const int64_t *d, int ceil_mode, int64_t *pads, int64_t *outs) {
    const char *ap = astr(st, "auto_pad", "NOTSET");
    int64_t eff[2];
    for (int a = 0; a < nd; a++) eff[a] = (k[a] - 1) * d[a] + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int a = 0; a < nd; a++) {
            outs[a] = (in[a] + s[a] - 1) / s[a];
            int64_t total = (outs[a] - 1) * s[a] + eff[a] - in[a];
            if (total < 0) total = 0;
            int64_t small = total / 2, big = total - small;
            pads[a] = ap[5] == 'U' ? small : big;
            pads[a + nd] = ap[5] == 'U' ? big : small;
        }
        return AIPN_OK;
    }
    if (!strcmp(ap, "VALID")) {
        for (int a = 0; a < 2 * nd; a++) pads[a] = 0;
    } else if (!strcmp(ap, "NOTSET") || !ap[0]) {
        int n = aints(st, "pads", pads, 2 * nd);
        if (n == -1) for (int a = 0; a < 2 * nd; a++) pads[a] = 0;
        else if (n != 2 * nd) return bad_attr(st, "pads", "wrong number of values");
        for (int a = 0; a < 2 * nd; a++) if (pads[a] < 0 || pads[a] > (1 << 20)) return bad_attr(st, "pads", "negative or huge pads");
    } else {
        return bad_attr(st, "auto_pad", "expected NOTSET, SAME_UPPER, SAME_LOWER or VALID");
    }
    for (int a = 0; a < nd; a++) {
        int64_t span = in[a] + pads[a] + pads[a + nd] - eff[a];
        if (span < 0) return BAD_INPUT(st, "kernel larger than the padded input");
        int64_t o;
        if (ceil_mode) {
            o = (span + s[a] - 1) / s[a] + 1;
            if ((o - 1) * s[a] >= in[a] + pads[a]) o--;
        } else {
            o = span / s[a] + 1;
        }
        outs[a] = o;
    }
    return AIPN_OK;
}

static aipn_status spatial(step *st, int nd, int64_t *strides, int64_t *dil) {
    const char *keys[2] = {"strides", "dilations"};
    int64_t *vals[2] = {strides, dil};
    for (int t = 0; t < 2; t++) {
        int n = aints(st, keys[t], vals[t], nd);
        if (n == -1) for (int a = 0; a < nd; a++) vals[t][a] = 1;
        else if (n != nd) return bad_attr(st, keys[t], "wrong number of values");
        for (int a = 0; a < nd; a++) if (vals[t][a] < 1 || vals[t][a] > (1 << 20)) return bad_attr(st, keys[t], "expected positive values");
    }
    return AIPN_OK;
}

#define TRY(x) do { aipn_status s_ = (x); if (s_ != AIPN_OK) return s_; } while (0)

/* -- Conv ------------------------------------------------------------------------------ */
/* DrowsyNet knobs of this conv (session's, or its per-layer override) and its scratch */
static aipn_status prep_drowsy(plan *pl, const aipn_model *m, step *st, const val *w) {
    const aipn_config *c = pl->cfg;
    if (!c) return AIPN_OK;
    double rate = c->drowsy;
    int gran = c->drowsy_granularity, rescale = c->drowsy_rescale;
    for (uint32_t i = 0; i < c->n_layers; i++) {
        const aipn_layer_knobs *lk = &c->layers[i];
        if (strcmp(lk->name, st->nd->name)) continue;
        if (lk->drowsy >= 0) rate = lk->drowsy;
        if (lk->drowsy_granularity >= 0) gran = lk->drowsy_granularity;
        if (lk->drowsy_rescale >= 0) rescale = lk->drowsy_rescale;
    }
    if (!(rate > 0.0)) return AIPN_OK;
    if (!conv_is_depthwise(&st->cp) && !panel_fits(&st->cp))
        return aipn_fail(AIPN_ERR_UNSUPPORTED,
                         "DrowsyNet on node '%s': its zero-padded input plane (dilated taps and pads) has 2^31 "
                         "floats or more, past the masked conv kernels' 32-bit offsets; run this layer exact "
                         "(drowsy rate 0)", st->nd->name);
    int64_t layer = 0;
    for (const node *k = m->nodes; k < st->nd; k++) layer += !strcmp(k->opname, "Conv");
    st->drowsy = 1;
    st->drowsy_rate = rate;
    st->dk = (drowsy_knobs){gran, c->seed, 0, c->drowsy_fixed_mask, layer, drowsy_threshold(rate),
                            rescale ? (float)(1.0 / (1.0 - rate)) : 1.0f, w->is_const};
    st->dscratch = arena_alloc(&pl->mem, conv_drowsy_scratch_bytes(&st->cp, gran, pl->threads) + 64);
    if (!st->dscratch) return aipn_fail(AIPN_ERR_MEMORY, "out of memory for the DrowsyNet scratch of node '%s'", st->nd->name);
    return AIPN_OK;
}

static aipn_status prep_conv(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0), *w = vin(pl, st, 1), *b = vin(pl, st, 2);
    TRY(need_f32(st, x, "input"));
    TRY(need_f32(st, w, "weight"));
    if (x->ndim != 3 && x->ndim != 4) return BAD_INPUT(st, "only 1-D and 2-D convolution are supported, got input rank %d", x->ndim);
    if (w->ndim != x->ndim) return BAD_INPUT(st, "weight rank %d does not match input rank %d", w->ndim, x->ndim);
    int nd = x->ndim - 2;
    int64_t group = aint(st, "group", 1), c = x->dims[1], mm = w->dims[0], cg = w->dims[1];
    if (group < 1 || c % group || mm % group || cg * group != c) return bad_attr(st, "group", "does not match the channels");
    int64_t ks[2], strides[2], dil[2], pads[4], outs[2];
    int n = aints(st, "kernel_shape", ks, 2);
    if (n >= 0 && (n != nd || memcmp(ks, w->dims + 2, sizeof(int64_t) * (size_t)nd)))
        return bad_attr(st, "kernel_shape", "does not match the weight shape");
    if (n == -2) return bad_attr(st, "kernel_shape", "too many values");
    TRY(spatial(st, nd, strides, dil));
    TRY(resolve_pads(st, nd, x->dims + 2, w->dims + 2, strides, dil, 0, pads, outs));
    if (b && (b->ndim != 1 || b->dims[0] != mm || b->dtype != DT_F32)) return BAD_INPUT(st, "bias shape is not (%lld,)", (long long)mm);
    conv_params *cp = &st->cp;
    cp->n = x->dims[0]; cp->c = c; cp->m = mm; cp->group = group;
    if (nd == 1) {
        cp->h = 1; cp->w = x->dims[2]; cp->kh = 1; cp->kw = w->dims[2]; cp->oh = 1; cp->ow = outs[0];
        cp->sh = 1; cp->sw = strides[0]; cp->dh = 1; cp->dw = dil[0]; cp->pt = 0; cp->pl = pads[0];
    } else {
        cp->h = x->dims[2]; cp->w = x->dims[3]; cp->kh = w->dims[2]; cp->kw = w->dims[3];
        cp->oh = outs[0]; cp->ow = outs[1]; cp->sh = strides[0]; cp->sw = strides[1];
        cp->dh = dil[0]; cp->dw = dil[1]; cp->pt = pads[0]; cp->pl = pads[1];
    }
    int64_t od[4] = {cp->n, mm, outs[0], nd == 2 ? outs[1] : 0};
    TRY(set_out(st, vout(pl, st, 0), DT_F32, x->ndim, od));
    fused_act(st);
    cp->weights_const = w->is_const;
    size_t sc = conv_scratch_floats(cp);
    if (sc) {
        st->scratch = arena_alloc(&pl->mem, sc * sizeof(float));
        if (!st->scratch) return aipn_fail(AIPN_ERR_MEMORY, "out of memory for the patch matrix of node '%s'", st->nd->name);
    }
    st->macs = (uint64_t)(cp->n * mm * cp->oh * cp->ow * cg * cp->kh * cp->kw);
    st->weight_mask = 6;
    return prep_drowsy(pl, m, st, w);
}
static aipn_status run_conv(pool *p, plan *pl, step *st) {
    val *b = vin(pl, st, 2);
    if (st->drowsy) {
        st->dk.image0 = pl->image_offset;
        conv2d_drowsy(p, &st->cp, vin(pl, st, 0)->data, vin(pl, st, 1)->data, b ? b->data : NULL,
                      vout(pl, st, 0)->data, st->dscratch, st->act, st->p0, st->p1, &st->dk, &st->dwt_ready, &st->dcnt);
        return AIPN_OK;
    }
    conv2d(p, &st->cp, vin(pl, st, 0)->data, vin(pl, st, 1)->data, b ? b->data : NULL, vout(pl, st, 0)->data,
           st->scratch, st->act, st->p0, st->p1);
    return AIPN_OK;
}

/* -- Gemm / MatMul --------------------------------------------------------------------- */
static int bcast2(const val *c, int64_t m, int64_t n, int64_t *rs, int64_t *cs) {
    if (c->ndim > 2) return 0;
    int64_t r = c->ndim == 2 ? c->dims[0] : 1, k = c->ndim >= 1 ? c->dims[c->ndim - 1] : 1;
    if ((r != 1 && r != m) || (k != 1 && k != n)) return 0;
    *rs = r == 1 ? 0 : k;
    *cs = k == 1 ? 0 : 1;
    return 1;
}

static aipn_status prep_gemm(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *a = vin(pl, st, 0), *b = vin(pl, st, 1), *c = vin(pl, st, 2);
    TRY(need_f32(st, a, "A"));
    TRY(need_f32(st, b, "B"));
    if (a->ndim != 2 || b->ndim != 2) return BAD_INPUT(st, "Gemm needs 2-D A and B");
    float alpha = afloat(st, "alpha", 1.0f), beta = afloat(st, "beta", 1.0f);
    int ta = aint(st, "transA", 0) != 0, tb = aint(st, "transB", 0) != 0;
    int64_t mm = ta ? a->dims[1] : a->dims[0], k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0], n = tb ? b->dims[0] : b->dims[1];
    if (k != kb) return BAD_INPUT(st, "inner dimensions differ");
    int64_t rs = 0, cs = 0;
    if (c && (c->dtype != DT_F32 || !bcast2(c, mm, n, &rs, &cs))) return BAD_INPUT(st, "C does not broadcast to (M, N)");
    int64_t od[2] = {mm, n};
    TRY(set_out(st, vout(pl, st, 0), DT_F32, 2, od));
    fused_act(st);
    st->i[0] = mm; st->i[1] = n; st->i[2] = k; st->i[3] = ta; st->i[4] = tb;
    st->f[0] = alpha; st->f[1] = beta;
    st->macs = (uint64_t)(mm * n * k);
    st->weight_mask = 6;
    if (b->is_const) { /* a fully-connected layer: weights as N x K rows, alpha folded in */
        if (tb && alpha == 1.0f) {
            st->w = b->data;
        } else {
            float *w = arena_alloc(&pl->mem, (size_t)(n * k) * sizeof(float));
            if (!w) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
            const float *bd = b->data;
            for (int64_t j = 0; j < n; j++)
                for (int64_t i = 0; i < k; i++) w[j * k + i] = alpha * (tb ? bd[j * k + i] : bd[i * n + j]);
            st->w = w;
        }
        if (c && c->is_const && (c->numel == 1 || rs == 0)) {
            float *bias = arena_alloc(&pl->mem, (size_t)n * sizeof(float));
            if (!bias) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
            const float *cd = c->data;
            for (int64_t j = 0; j < n; j++) bias[j] = beta * cd[j * cs];
            st->bias = bias;
            st->i[5] = 1; /* C folded into a bias */
        }
    }
    if (ta) {
        st->scratch = arena_alloc(&pl->mem, (size_t)(mm * k) * sizeof(float));
        if (!st->scratch) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    }
    return AIPN_OK;
}
static aipn_status run_gemm(pool *p, plan *pl, step *st) {
    val *a = vin(pl, st, 0), *b = vin(pl, st, 1), *c = vin(pl, st, 2);
    float *y = vout(pl, st, 0)->data;
    int64_t mm = st->i[0], n = st->i[1], k = st->i[2];
    const float *ad = a->data;
    if (st->i[3]) { /* A is K x M: make it M x K */
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < mm; j++) st->scratch[j * k + i] = ad[i * mm + j];
        ad = st->scratch;
    }
    if (st->w) {
        fc_f32(p, ad, mm, k, st->w, n, y);
    } else {
        sgemm(p, mm, n, k, ad, k, 0, b->data, st->i[4] ? k : n, (int)st->i[4], y, n, 0);
        if (st->f[0] != 1.0f) for (int64_t i = 0; i < mm * n; i++) y[i] *= st->f[0];
    }
    if (st->i[5] || !c) {
        bias_act_cols(p, y, mm, n, st->bias, st->act, st->p0, st->p1);
        return AIPN_OK;
    }
    int64_t rs = 0, cs = 0;
    bcast2(c, mm, n, &rs, &cs);
    const float *cd = c->data;
    float beta = st->f[1];
    if (c->numel)
        for (int64_t i = 0; i < mm; i++)
            for (int64_t j = 0; j < n; j++) y[i * n + j] += beta * cd[i * rs + j * cs];
    act_inplace(p, y, mm * n, st->act, st->p0, st->p1);
    return AIPN_OK;
}

/* -- AipFC: an FC layer in AIP's packed layout (engine/ops/aip_fc.py) --------------------- */
typedef struct aip_step {
    aip_fc_layer l;
    int role;
    float theta;             /* the layer's stored theta */
    void *scratch;
    int64_t batch;
} aip_step;

static const char *ROLE_NAMES[] = {"relu", "final", "dense"};

/* the role of an FC node, as engine/aip.py fc_roles computes it */
static int fc_role(const aipn_model *m, const node *nd) {
    const attr *a = node_attr(nd, "_act");
    const char *act = a && a->type == AT_STRING ? a->s : "";
    if (!strcmp(act, "relu")) return AIP_ROLE_RELU;
    if (act[0] || nd->nout < 1) return AIP_ROLE_DENSE;
    int32_t v = nd->out[0];
    for (uint32_t guard = 0; v >= 0 && guard <= m->nnodes; guard++) {
        for (uint32_t o = 0; o < m->noutputs; o++)
            if (m->outputs[o] == v) return AIP_ROLE_FINAL;
        const node *only = NULL;
        uint32_t uses = 0;
        for (uint32_t k = 0; k < m->nnodes; k++)
            for (uint32_t i = 0; i < m->nodes[k].nin; i++)
                if (m->nodes[k].in[i] == v) { uses++; only = &m->nodes[k]; }
        if (uses != 1) return AIP_ROLE_DENSE;
        const char *op = only->opname;
        if (strcmp(op, "Softmax") && strcmp(op, "LogSoftmax") && strcmp(op, "Flatten") && strcmp(op, "Reshape") &&
            strcmp(op, "Identity"))
            return AIP_ROLE_DENSE;
        v = only->nout ? only->out[0] : -1;
    }
    return AIP_ROLE_DENSE;
}

static aipn_status prep_aipfc(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0), *ap = vin(pl, st, 1), *rs = vin(pl, st, 2), *pm = vin(pl, st, 3), *b = vin(pl, st, 4);
    TRY(need_f32(st, x, "input"));
    TRY(need_f32(st, ap, "approx"));
    TRY(need_f32(st, rs, "rest"));
    if (!pm) return BAD_INPUT(st, "perm is missing");
    if (!ap->is_const || !rs->is_const || !pm->is_const)
        return BAD_INPUT(st, "the packed weights (approx, rest, perm) must be constants");
    int64_t k = aint(st, "k", -1);
    int64_t n = rs->ndim == 2 ? rs->dims[0] : -1, kr = rs->ndim == 2 ? rs->dims[1] : -1;
    int64_t kdim = pm->ndim == 1 ? pm->dims[0] : -1;
    if (ap->ndim != 3 || ap->dims[2] != 16 || ap->dims[1] != k || rs->ndim != 2 || kdim != k + kr ||
        ap->dims[0] != (n + 15) / 16 || k < 1)
        return BAD_INPUT(st, "inconsistent packed shapes: approx rank %d, rest rank %d, perm rank %d, k=%lld", ap->ndim,
                         rs->ndim, pm->ndim, (long long)k);
    if (pm->dtype != DT_I64 && pm->dtype != DT_I32) return BAD_INPUT(st, "perm must be int64");
    int64_t *perm = arena_alloc(&pl->mem, (size_t)kdim * sizeof(int64_t) + 8);
    uint8_t *seen = arena_alloc(&pl->mem, (size_t)kdim + 8);
    if (!perm || !seen) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    for (int64_t i = 0; i < kdim; i++) {
        int64_t v = pm->dtype == DT_I64 ? ((const int64_t *)pm->data)[i] : ((const int32_t *)pm->data)[i];
        if (v < 0 || v >= kdim || seen[v]) return BAD_INPUT(st, "perm is not a permutation of the inputs");
        seen[v] = 1;
        perm[i] = v;
    }
    if (x->ndim != 2 || x->dims[1] != kdim)
        return BAD_INPUT(st, "input shape does not match the layer's %lld inputs", (long long)kdim);
    if (b && (b->dtype != DT_F32 || b->ndim != 1 || b->dims[0] != n || !b->is_const))
        return BAD_INPUT(st, "bias is not a constant float32 of shape (%lld,)", (long long)n);
    int64_t od[2] = {x->dims[0], n};
    TRY(set_out(st, vout(pl, st, 0), DT_F32, 2, od));
    aip_step *a = arena_alloc(&pl->mem, sizeof *a);
    if (!a) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    a->l = (aip_fc_layer){n, kdim, k, ap->dims[0], ap->data, rs->data, perm, b ? b->data : NULL,
                          afloat(st, "scale", (float)kdim / (float)k)};
    a->role = fc_role(m, st->nd);
    fused_act(st);
    a->theta = afloat(st, "theta", 0.0f);
    a->batch = x->dims[0];
    a->scratch = arena_alloc(&pl->mem, aip_fc_scratch_bytes(&a->l, a->batch) + 64);
    if (!a->scratch) return aipn_fail(AIPN_ERR_MEMORY, "out of memory for the scratch of node '%s'", st->nd->name);
    st->aip = a;
    st->macs = (uint64_t)(x->dims[0] * n * kdim);
    st->weight_mask = (1u << 1) | (1u << 2) | (1u << 4);
    return AIPN_OK;
}

static aipn_status run_aipfc(pool *p, plan *pl, step *st) {
    aip_step *a = st->aip;
    const aipn_config *c = pl->cfg;
    aip_fc_knobs kn;
    if (c && c->aip) {
        kn = (aip_fc_knobs){a->role, c->aip_threshold_set ? c->aip_threshold : a->theta,
                            c->aip_refine ? c->aip_refine : 10, c->aip_mode == 1, c->aip_skip_zeros != 0,
                            st->act, st->p0, st->p1};
    } else { /* exact: every row refined (the packed layout holds no other copy of W) */
        kn = (aip_fc_knobs){a->role, -INFINITY, a->l.n, 0, 0, st->act, st->p0, st->p1};
    }
    aip_fc_run(p, &a->l, &kn, vin(pl, st, 0)->data, a->batch, vout(pl, st, 0)->data, a->scratch, &st->cnt);
    st->counted = c && c->aip;
    st->role = ROLE_NAMES[a->role];
    return AIPN_OK;
}

static aipn_status prep_matmul(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *a = vin(pl, st, 0), *b = vin(pl, st, 1);
    TRY(need_f32(st, a, "A"));
    TRY(need_f32(st, b, "B"));
    if (a->ndim == 0 || b->ndim == 0) return BAD_INPUT(st, "MatMul needs inputs of rank >= 1");
    int64_t a2[MAXD + 1], b2[MAXD + 1];
    int ra = a->ndim > 1 ? a->ndim : 2, rb = b->ndim > 1 ? b->ndim : 2;
    if (a->ndim == 1) { a2[0] = 1; a2[1] = a->dims[0]; } else memcpy(a2, a->dims, sizeof(int64_t) * (size_t)ra);
    if (b->ndim == 1) { b2[0] = b->dims[0]; b2[1] = 1; } else memcpy(b2, b->dims, sizeof(int64_t) * (size_t)rb);
    if (a2[ra - 1] != b2[rb - 2]) return BAD_INPUT(st, "inner dimensions differ");
    int r = (ra > rb ? ra : rb) - 2;
    int64_t od[MAXD + 2];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - (ra - 2)), ib = i - (r - (rb - 2));
        int64_t da = ia >= 0 ? a2[ia] : 1, db = ib >= 0 ? b2[ib] : 1;
        if (da != db && da != 1 && db != 1) return BAD_INPUT(st, "batch dimensions do not broadcast");
        od[i] = da == 1 ? db : da;
    }
    int64_t nb = prod(od, 0, r);
    od[r] = a2[ra - 2];
    od[r + 1] = b2[rb - 1];
    int ro = r + 2;
    if (a->ndim == 1) { od[ro - 2] = od[ro - 1]; ro--; }
    if (b->ndim == 1) ro--;
    TRY(set_out(st, vout(pl, st, 0), DT_F32, ro, od));
    fused_act(st);
    st->i[0] = a2[ra - 2]; st->i[1] = a2[ra - 1]; st->i[2] = b2[rb - 1];
    st->macs = (uint64_t)(nb * st->i[0] * st->i[1] * st->i[2]);
    st->weight_mask = b->is_const ? 2 : 0;
    return AIPN_OK;
}
static aipn_status run_matmul(pool *p, plan *pl, step *st) {
    val *a = vin(pl, st, 0), *b = vin(pl, st, 1), *y = vout(pl, st, 0);
    int64_t M = st->i[0], K = st->i[1], N = st->i[2];
    int ra = a->ndim > 1 ? a->ndim - 2 : 0, rb = b->ndim > 1 ? b->ndim - 2 : 0, r = ra > rb ? ra : rb;
    int64_t bd[MAXD], idx[MAXD] = {0};
    for (int i = 0; i < r; i++) {
        int ia = i - (r - ra), ib = i - (r - rb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        bd[i] = da == 1 ? db : da;
    }
    int64_t nb = prod(bd, 0, r);
    const float *ad = a->data, *bdp = b->data;
    float *yd = y->data;
    for (int64_t t = 0; t < nb; t++) {
        int64_t rem = t, ao = 0, bo = 0, as = 1, bs = 1;
        for (int i = r - 1; i >= 0; i--) { idx[i] = rem % bd[i]; rem /= bd[i]; }
        for (int i = r - 1; i >= 0; i--) {
            int ia = i - (r - ra), ib = i - (r - rb);
            if (ia >= 0) { if (a->dims[ia] != 1) ao += idx[i] * as; as *= a->dims[ia]; }
            if (ib >= 0) { if (b->dims[ib] != 1) bo += idx[i] * bs; bs *= b->dims[ib]; }
        }
        sgemm(p, M, N, K, ad + ao * M * K, K, 0, bdp + bo * K * N, N, 0, yd + t * M * N, N, 0);
    }
    act_inplace(p, yd, y->numel, st->act, st->p0, st->p1);
    return AIPN_OK;
}

/* -- elementwise with broadcasting ---------------------------------------------------------- */
enum { EW_ADD, EW_SUB, EW_MUL, EW_DIV };
static int ew_kind(const char *op) {
    return !strcmp(op, "Sub") ? EW_SUB : !strcmp(op, "Mul") ? EW_MUL : !strcmp(op, "Div") ? EW_DIV : EW_ADD;
}
static aipn_status prep_ew(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    uint32_t nin = st->nd->nin;
    if (nin == 0 || nin > 30) return BAD_INPUT(st, "expected 1 to 30 inputs");
    val *x0 = vin(pl, st, 0);
    if (!x0) return BAD_INPUT(st, "input 0 is missing");
    int rank = 0;
    for (uint32_t k = 0; k < nin; k++) {
        val *v = vin(pl, st, k);
        if (!v) return BAD_INPUT(st, "input %u is missing", k);
        if (v->dtype != x0->dtype || (v->dtype != DT_F32 && v->dtype != DT_I64 && v->dtype != DT_I32))
            return BAD_INPUT(st, "inputs must all be float32, int64 or int32");
        if (v->ndim > rank) rank = v->ndim;
        if (v->is_const && v->dtype == DT_F32) st->weight_mask |= 1u << k;
    }
    int64_t od[MAXD];
    for (int i = 0; i < rank; i++) {
        od[i] = 1;
        for (uint32_t k = 0; k < nin; k++) {
            val *v = vin(pl, st, k);
            int j = i - (rank - v->ndim);
            if (j < 0) continue;
            int64_t d = v->dims[j];
            if (d != od[i] && d != 1 && od[i] != 1) return BAD_INPUT(st, "input shapes do not broadcast");
            if (d != 1) od[i] = d;
        }
    }
    TRY(set_out(st, vout(pl, st, 0), x0->dtype, rank, od));
    st->i[0] = ew_kind(st->nd->opname);
    st->macs = (uint64_t)(vout(pl, st, 0) ? vout(pl, st, 0)->numel : 0) * (nin > 1 ? nin - 1 : 1);
    return AIPN_OK;
}

/* strides (in elements) of v broadcast to the rank-r shape od */
static void bstrides(const val *v, int r, int64_t *s) {
    int64_t acc = 1;
    for (int i = r - 1; i >= 0; i--) {
        int j = i - (r - v->ndim);
        if (j < 0) { s[i] = 0; continue; }
        s[i] = v->dims[j] == 1 ? 0 : acc;
        acc *= v->dims[j];
    }
}

#define EW_LOOP(T, EXPR)                                                                   \
    do {                                                                                   \
        T *yd = y->data; const T *ad = acc ? (const T *)y->data : a->data; const T *bd = b->data; \
        for (int64_t o = 0; o < outer; o++) {                                              \
            int64_t ao = 0, bo = 0, rem = o;                                               \
            for (int i = r - 2; i >= 0; i--) {                                             \
                int64_t ix = rem % y->dims[i]; rem /= y->dims[i];                          \
                ao += ix * sa[i]; bo += ix * sb[i];                                        \
            }                                                                              \
            T *yo = yd + o * inner;                                                        \
            for (int64_t t = 0; t < inner; t++) { T u = ad[ao + t * sa[r - 1]], v = bd[bo + t * sb[r - 1]]; yo[t] = (EXPR); } \
        }                                                                                  \
    } while (0)

static int64_t idiv(int64_t u, int64_t v) {
    if (v == 0) return 0;
    if (v == -1) return (int64_t)(0 - (uint64_t)u);
    return u / v;
}

static void ew_apply(int kind, val *y, const val *a, const val *b, int acc) {
    int r = y->ndim;
    int64_t sa[MAXD], sb[MAXD];
    if (r == 0) { /* scalars */
        sa[0] = sb[0] = 0;
    }
    val ya = *y;
    if (acc) a = &ya;
    bstrides(a, r, sa);
    bstrides(b, r, sb);
    int64_t inner = r ? y->dims[r - 1] : 1, outer = r ? y->numel / (inner ? inner : 1) : 1;
    if (r == 0) r = 1, sa[0] = sb[0] = 0;
    if (inner == 0 || y->numel == 0) return;
    if (y->dtype == DT_F32) {
        switch (kind) {
        case EW_ADD: EW_LOOP(float, u + v); break;
        case EW_SUB: EW_LOOP(float, u - v); break;
        case EW_MUL: EW_LOOP(float, u * v); break;
        default: EW_LOOP(float, u / v); break;
        }
    } else if (y->dtype == DT_I64) {
        switch (kind) {
        case EW_ADD: EW_LOOP(int64_t, (int64_t)((uint64_t)u + (uint64_t)v)); break;
        case EW_SUB: EW_LOOP(int64_t, (int64_t)((uint64_t)u - (uint64_t)v)); break;
        case EW_MUL: EW_LOOP(int64_t, (int64_t)((uint64_t)u * (uint64_t)v)); break;
        default: EW_LOOP(int64_t, idiv(u, v)); break;
        }
    } else {
        switch (kind) {
        case EW_ADD: EW_LOOP(int32_t, (int32_t)((uint32_t)u + (uint32_t)v)); break;
        case EW_SUB: EW_LOOP(int32_t, (int32_t)((uint32_t)u - (uint32_t)v)); break;
        case EW_MUL: EW_LOOP(int32_t, (int32_t)((uint32_t)u * (uint32_t)v)); break;
        default: EW_LOOP(int32_t, (int32_t)idiv(u, v)); break;
        }
    }
}

static aipn_status run_ew(pool *p, plan *pl, step *st) {
    (void)p;
    val *y = vout(pl, st, 0);
    if (!y) return AIPN_OK;
    uint32_t nin = st->nd->nin;
    if (nin == 1) { /* Sum of one input: a copy, broadcast to itself */
        memcpy(y->data, vin(pl, st, 0)->data, (size_t)y->numel * dtype_size(y->dtype));
        return AIPN_OK;
    }
    ew_apply((int)st->i[0], y, vin(pl, st, 0), vin(pl, st, 1), 0);
    for (uint32_t k = 2; k < nin; k++) ew_apply((int)st->i[0], y, y, vin(pl, st, k), 1);
    return AIPN_OK;
}

/* -- activations --------------------------------------------------------------------------- */
static aipn_status prep_unary(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    TRY(set_out(st, vout(pl, st, 0), DT_F32, x->ndim, x->dims));
    const char *op = st->nd->opname;
    st->act = !strcmp(op, "Relu") ? ACT_RELU : !strcmp(op, "LeakyRelu") ? ACT_LEAKY : !strcmp(op, "Clip") ? ACT_CLIP : ACT_NONE;
    st->p1 = afloat(st, "alpha", 0.01f);
    if (st->act == ACT_CLIP) {
        if (m->opset < 11) {
            st->p0 = afloat(st, "min", -INFINITY);
            st->p1 = afloat(st, "max", INFINITY);
        } else {
            for (uint32_t k = 1; k < 3; k++) {
                val *v = vin(pl, st, k);
                if (v && (v->dtype != DT_F32 || v->numel != 1)) return BAD_INPUT(st, "Clip %s must be a float scalar", k == 1 ? "min" : "max");
            }
        }
    }
    return AIPN_OK;
}
static aipn_status run_unary(pool *p, plan *pl, step *st) {
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    if (!y) return AIPN_OK;
    const char *op = st->nd->opname;
    if (!strcmp(op, "Sigmoid")) { sigmoid_f32(p, x->data, y->data, y->numel); return AIPN_OK; }
    if (!strcmp(op, "Tanh")) { tanh_f32(p, x->data, y->data, y->numel); return AIPN_OK; }
    float p0 = st->p0, p1 = st->p1;
    if (st->act == ACT_CLIP && st->nd->nin > 1) {
        val *lo = vin(pl, st, 1), *hi = vin(pl, st, 2);
        p0 = lo ? *(const float *)lo->data : -INFINITY;
        p1 = hi ? *(const float *)hi->data : INFINITY;
    }
    memcpy(y->data, x->data, (size_t)y->numel * sizeof(float));
    act_inplace(p, y->data, y->numel, st->act, p0, p1);
    return AIPN_OK;
}

/* -- BatchNormalization, LRN ------------------------------------------------------------------ */
static aipn_status prep_bn(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    if (x->ndim < 2) return BAD_INPUT(st, "expected an N x C x ... input");
    if (aint(st, "training_mode", 0)) return bad_attr(st, "training_mode", "aipnet runs inference only");
    for (uint32_t k = 1; k < st->nd->nout; k++)
        if (st->nd->out[k] >= 0) return bad_attr(st, "outputs", "running mean/var outputs are training-only");
    for (uint32_t k = 1; k < 5; k++) {
        val *v = vin(pl, st, k);
        if (!v || v->dtype != DT_F32 || v->ndim != 1 || v->dims[0] != x->dims[1]) return BAD_INPUT(st, "input %u is not of shape (C,)", k);
    }
    TRY(set_out(st, vout(pl, st, 0), DT_F32, x->ndim, x->dims));
    st->f[0] = afloat(st, "epsilon", 1e-5f);
    st->scratch = arena_alloc(&pl->mem, (size_t)x->dims[1] * 2 * sizeof(float));
    if (!st->scratch) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    st->weight_mask = 30;
    return AIPN_OK;
}
static aipn_status run_bn(pool *p, plan *pl, step *st) {
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    int64_t c = x->dims[1];
    const float *g = vin(pl, st, 1)->data, *be = vin(pl, st, 2)->data, *mu = vin(pl, st, 3)->data, *var = vin(pl, st, 4)->data;
    for (int64_t i = 0; i < c; i++) {
        double sc = (double)g[i] / sqrt((double)var[i] + (double)st->f[0]);
        st->scratch[i] = (float)sc;
        st->scratch[c + i] = (float)((double)be[i] - (double)mu[i] * sc);
    }
    if (y) scale_shift_f32(p, x->data, x->dims[0], c, prod(x->dims, 2, x->ndim), st->scratch, st->scratch + c, y->data);
    return AIPN_OK;
}

static aipn_status prep_lrn(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    if (x->ndim < 2) return BAD_INPUT(st, "expected an N x C x ... input");
    int64_t size = aint(st, "size", 0);
    if (size < 1) return bad_attr(st, "size", "a positive size is required");
    TRY(set_out(st, vout(pl, st, 0), DT_F32, x->ndim, x->dims));
    st->i[0] = size;
    st->f[0] = afloat(st, "alpha", 1e-4f);
    st->f[1] = afloat(st, "beta", 0.75f);
    st->f[2] = afloat(st, "bias", 1.0f);
    st->macs = (uint64_t)x->numel * (uint64_t)(size + 2);
    return AIPN_OK;
}
static aipn_status run_lrn(pool *p, plan *pl, step *st) {
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    if (y) lrn_f32(p, x->data, x->dims[0], x->dims[1], prod(x->dims, 2, x->ndim), st->i[0], st->f[0], st->f[1], st->f[2], y->data);
    return AIPN_OK;
}

/* -- pooling -------------------------------------------------------------------------------- */
static aipn_status prep_pool(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    if (x->ndim != 3 && x->ndim != 4) return BAD_INPUT(st, "only 1-D and 2-D pooling are supported");
    for (uint32_t k = 1; k < st->nd->nout; k++)
        if (st->nd->out[k] >= 0) return bad_attr(st, "outputs", "the Indices output of MaxPool is not supported");
    int nd = x->ndim - 2;
    int64_t ks[2], strides[2], dil[2], pads[4], outs[2];
    if (aints(st, "kernel_shape", ks, 2) != nd) return bad_attr(st, "kernel_shape", "expected one positive value per spatial axis");
    for (int a = 0; a < nd; a++) if (ks[a] < 1 || ks[a] > (1 << 20)) return bad_attr(st, "kernel_shape", "expected positive values");
    TRY(spatial(st, nd, strides, dil));
    int64_t ceil_mode = aint(st, "ceil_mode", 0);
    TRY(resolve_pads(st, nd, x->dims + 2, ks, strides, dil, ceil_mode != 0, pads, outs));
    if (!strcmp(st->nd->opname, "MaxPool")) {
        int64_t so = aint(st, "storage_order", 0);
        if (so != 0 && so != 1) return bad_attr(st, "storage_order", "expected 0 or 1");
    }
    pool_params *q = &st->pp;
    q->planes = x->dims[0] * x->dims[1];
    if (nd == 1) {
        q->h = 1; q->w = x->dims[2]; q->kh = 1; q->kw = ks[0]; q->sh = 1; q->sw = strides[0];
        q->dh = 1; q->dw = dil[0]; q->pt = 0; q->pl = pads[0]; q->pb = 0; q->pr = pads[1]; q->oh = 1; q->ow = outs[0];
    } else {
        q->h = x->dims[2]; q->w = x->dims[3]; q->kh = ks[0]; q->kw = ks[1]; q->sh = strides[0]; q->sw = strides[1];
        q->dh = dil[0]; q->dw = dil[1]; q->pt = pads[0]; q->pl = pads[1]; q->pb = pads[2]; q->pr = pads[3];
        q->oh = outs[0]; q->ow = outs[1];
    }
    q->count_include_pad = aint(st, "count_include_pad", 0) != 0;
    int64_t od[4] = {x->dims[0], x->dims[1], outs[0], nd == 2 ? outs[1] : 0};
    TRY(set_out(st, vout(pl, st, 0), DT_F32, x->ndim, od));
    st->macs = (uint64_t)(q->planes * q->oh * q->ow * q->kh * q->kw);
    return AIPN_OK;
}
static aipn_status run_maxpool(pool *p, plan *pl, step *st) {
    maxpool2d(p, &st->pp, vin(pl, st, 0)->data, vout(pl, st, 0)->data);
    return AIPN_OK;
}
static aipn_status run_avgpool(pool *p, plan *pl, step *st) {
    avgpool2d(p, &st->pp, vin(pl, st, 0)->data, vout(pl, st, 0)->data);
    return AIPN_OK;
}

static aipn_status prep_gpool(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    if (x->ndim < 3) return BAD_INPUT(st, "expected an N x C x ... input");
    int64_t od[MAXD];
    for (int i = 0; i < x->ndim; i++) od[i] = i < 2 ? x->dims[i] : 1;
    return set_out(st, vout(pl, st, 0), DT_F32, x->ndim, od);
}
static aipn_status run_gpool(pool *p, plan *pl, step *st) {
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    if (y) global_pool(p, x->data, x->dims[0] * x->dims[1], prod(x->dims, 2, x->ndim), !strcmp(st->nd->opname, "GlobalMaxPool"), y->data);
    return AIPN_OK;
}

/* -- softmax ---------------------------------------------------------------------------------- */
static aipn_status prep_softmax(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0);
    TRY(need_f32(st, x, "input"));
    if (x->ndim == 0) return BAD_INPUT(st, "expected an input of rank >= 1");
    int axis = 0;
    if (m->opset < 13) {
        TRY(norm_axis(st, aint(st, "axis", 1), x->ndim, "axis", &axis));
        st->i[0] = prod(x->dims, 0, axis); st->i[1] = prod(x->dims, axis, x->ndim); st->i[2] = 1;
    } else {
        TRY(norm_axis(st, aint(st, "axis", -1), x->ndim, "axis", &axis));
        st->i[0] = prod(x->dims, 0, axis); st->i[1] = x->dims[axis]; st->i[2] = prod(x->dims, axis + 1, x->ndim);
    }
    return set_out(st, vout(pl, st, 0), DT_F32, x->ndim, x->dims);
}
static aipn_status run_softmax(pool *p, plan *pl, step *st) {
    val *y = vout(pl, st, 0);
    if (y) softmax_f32(p, vin(pl, st, 0)->data, st->i[0], st->i[1], st->i[2], !strcmp(st->nd->opname, "LogSoftmax"), y->data);
    return AIPN_OK;
}

/* -- views: Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout ---------------------------- */
static aipn_status run_view(pool *p, plan *pl, step *st) {
    (void)p;
    val *y = vout(pl, st, 0), *m = vout(pl, st, 1);
    if (y) y->data = vin(pl, st, 0)->data;
    if (m) memset(m->data, 1, (size_t)m->numel);
    return AIPN_OK;
}

static aipn_status prep_flatten(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t axis = aint(st, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis > x->ndim) return bad_attr(st, "axis", "out of range for the input rank");
    int64_t od[2] = {prod(x->dims, 0, (int)axis), prod(x->dims, (int)axis, x->ndim)};
    st->is_view = 1;
    return set_out(st, vout(pl, st, 0), x->dtype, 2, od);
}

static aipn_status const_ints(plan *pl, step *st, uint32_t k, const char *what, int64_t *out, int max, int *n) {
    val *v = vin(pl, st, k);
    if (!v || !v->is_const) return BAD_INPUT(st, "%s (input %u) must be a constant or computable from input shapes", what, k);
    if (v->dtype != DT_I64 && v->dtype != DT_I32) return BAD_INPUT(st, "%s must be integers", what);
    if (v->numel > max) return BAD_INPUT(st, "%s has too many values", what);
    for (int64_t i = 0; i < v->numel; i++)
        out[i] = v->dtype == DT_I64 ? ((const int64_t *)v->data)[i] : ((const int32_t *)v->data)[i];
    *n = (int)v->numel;
    return AIPN_OK;
}

static aipn_status prep_reshape(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t t[MAXD], od[MAXD];
    int n = 0;
    TRY(const_ints(pl, st, 1, "the target shape", t, MAXD, &n));
    int allowzero = aint(st, "allowzero", 0) != 0, neg = -1;
    int64_t rest = 1;
    for (int i = 0; i < n; i++) {
        if (t[i] == 0 && !allowzero) {
            if (i >= x->ndim) return BAD_INPUT(st, "target shape copies a dim the input does not have");
            od[i] = x->dims[i];
        } else {
            od[i] = t[i];
        }
        if (od[i] < -1 || (od[i] == -1 && neg >= 0)) return BAD_INPUT(st, "invalid target shape");
        if (od[i] == -1) neg = i;
        else if (od[i] && rest > MAX_ELEMENTS / od[i]) return BAD_INPUT(st, "target shape too large");
        else rest *= od[i];
    }
    if (neg >= 0) {
        if (rest == 0 || x->numel % rest) return BAD_INPUT(st, "cannot reshape to the target shape");
        od[neg] = x->numel / rest;
        rest *= od[neg];
    }
    if (rest != x->numel) return BAD_INPUT(st, "cannot reshape %lld elements to the target shape", (long long)x->numel);
    st->is_view = 1;
    return set_out(st, vout(pl, st, 0), x->dtype, n, od);
}

static aipn_status get_axes(plan *pl, const aipn_model *m, step *st, int64_t *axes, int *n) {
    *n = -1;
    if (m->opset < 13) {
        *n = aints(st, "axes", axes, MAXD);
        if (*n == -2) return bad_attr(st, "axes", "too many axes");
        return AIPN_OK;
    }
    if (vin(pl, st, 1)) return const_ints(pl, st, 1, "axes", axes, MAXD, n);
    return AIPN_OK;
}

static aipn_status prep_squeeze(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t axes[MAXD], od[MAXD];
    int n, drop[MAXD] = {0}, r = 0;
    TRY(get_axes(pl, m, st, axes, &n));
    for (int i = 0; i < n; i++) {
        int a = 0;
        TRY(norm_axis(st, axes[i], x->ndim, "axes", &a));
        if (x->dims[a] != 1) return BAD_INPUT(st, "cannot squeeze axis %d of size %lld", a, (long long)x->dims[a]);
        drop[a] = 1;
    }
    for (int i = 0; i < x->ndim; i++)
        if (n < 0 ? x->dims[i] != 1 : !drop[i]) od[r++] = x->dims[i];
    st->is_view = 1;
    return set_out(st, vout(pl, st, 0), x->dtype, r, od);
}

static aipn_status prep_unsqueeze(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t axes[MAXD], od[MAXD];
    int n, ins[MAXD + 1] = {0};
    TRY(get_axes(pl, m, st, axes, &n));
    if (n < 0) return bad_attr(st, "axes", "axes are required");
    int rank = x->ndim + n;
    if (rank > MAXD) return BAD_INPUT(st, "output rank above %d", MAXD);
    for (int i = 0; i < n; i++) {
        int a = 0;
        TRY(norm_axis(st, axes[i], rank, "axes", &a));
        if (ins[a]) return bad_attr(st, "axes", "repeated axes");
        ins[a] = 1;
    }
    for (int i = 0, j = 0; i < rank; i++) od[i] = ins[i] ? 1 : x->dims[j++];
    st->is_view = 1;
    return set_out(st, vout(pl, st, 0), x->dtype, rank, od);
}

static aipn_status prep_identity(plan *pl, const aipn_model *m, step *st) {
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    st->is_view = 1;
    if (!strcmp(st->nd->opname, "Dropout")) {
        val *mode = vin(pl, st, 2);
        if (m->opset >= 12 && mode && mode->is_const && mode->numel == 1 && dtype_size(mode->dtype) &&
            memcmp(mode->data, "\0\0\0\0\0\0\0\0", dtype_size(mode->dtype)) != 0)
            return bad_attr(st, "training_mode", "aipnet runs inference only");
        TRY(set_out(st, vout(pl, st, 1), DT_BOOL, x->ndim, x->dims));
    }
    return set_out(st, vout(pl, st, 0), x->dtype, x->ndim, x->dims);
}

/* -- Transpose, Concat, Gather -------------------------------------------------------------- */
static aipn_status prep_transpose(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t od[MAXD];
    int n = aints(st, "perm", st->perm, MAXD), seen[MAXD] = {0};
    if (n == -1) { n = x->ndim; for (int i = 0; i < n; i++) st->perm[i] = n - 1 - i; }
    if (n != x->ndim) return bad_attr(st, "perm", "not a permutation of the input axes");
    for (int i = 0; i < n; i++) {
        if (st->perm[i] < 0 || st->perm[i] >= n || seen[st->perm[i]]) return bad_attr(st, "perm", "not a permutation of the input axes");
        seen[st->perm[i]] = 1;
        od[i] = x->dims[st->perm[i]];
    }
    return set_out(st, vout(pl, st, 0), x->dtype, n, od);
}
static aipn_status run_transpose(pool *p, plan *pl, step *st) {
    (void)p;
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    if (!y || !y->numel) return AIPN_OK;
    int r = y->ndim;
    size_t es = dtype_size(x->dtype);
    int64_t xs[MAXD], s[MAXD], idx[MAXD] = {0};
    int64_t acc = 1;
    for (int i = r - 1; i >= 0; i--) { xs[i] = acc; acc *= x->dims[i]; }
    for (int i = 0; i < r; i++) s[i] = xs[st->perm[i]];
    const uint8_t *src = x->data;
    uint8_t *dst = y->data;
    for (int64_t o = 0; o < y->numel; o++) {
        int64_t off = 0;
        for (int i = 0; i < r; i++) off += idx[i] * s[i];
        memcpy(dst + o * es, src + off * es, es);
        for (int i = r - 1; i >= 0; i--) { if (++idx[i] < y->dims[i]) break; idx[i] = 0; }
    }
    return AIPN_OK;
}

static aipn_status prep_concat(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x0 = vin(pl, st, 0);
    if (!x0) return BAD_INPUT(st, "input 0 is missing");
    if (!node_attr(st->nd, "axis")) return bad_attr(st, "axis", "Concat needs an axis");
    int a = 0;
    TRY(norm_axis(st, aint(st, "axis", 0), x0->ndim, "axis", &a));
    int64_t od[MAXD];
    memcpy(od, x0->dims, sizeof od);
    od[a] = 0;
    for (uint32_t k = 0; k < st->nd->nin; k++) {
        val *v = vin(pl, st, k);
        if (!v || v->ndim != x0->ndim || v->dtype != x0->dtype) return BAD_INPUT(st, "inputs differ in rank or dtype");
        for (int i = 0; i < v->ndim; i++)
            if (i != a && v->dims[i] != x0->dims[i]) return BAD_INPUT(st, "input shapes do not agree off axis %d", a);
        od[a] += v->dims[a];
    }
    st->i[0] = a;
    return set_out(st, vout(pl, st, 0), x0->dtype, x0->ndim, od);
}
static aipn_status run_concat(pool *p, plan *pl, step *st) {
    (void)p;
    val *y = vout(pl, st, 0);
    if (!y) return AIPN_OK;
    int a = (int)st->i[0];
    size_t es = dtype_size(y->dtype);
    int64_t outer = prod(y->dims, 0, a), inner = prod(y->dims, a + 1, y->ndim), off = 0;
    for (uint32_t k = 0; k < st->nd->nin; k++) {
        val *v = vin(pl, st, k);
        int64_t chunk = v->dims[a] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy((uint8_t *)y->data + (o * y->dims[a] * inner + off) * (int64_t)es,
                   (const uint8_t *)v->data + o * chunk * (int64_t)es, (size_t)chunk * es);
        off += chunk;
    }
    return AIPN_OK;
}

static aipn_status check_indices(step *st, const val *idx, int64_t dim) {
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t v = idx->dtype == DT_I64 ? ((const int64_t *)idx->data)[i] : ((const int32_t *)idx->data)[i];
        if (v < -dim || v >= dim) return BAD_INPUT(st, "indices out of range [-%lld, %lld]", (long long)dim, (long long)dim - 1);
    }
    return AIPN_OK;
}

static aipn_status prep_gather(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0), *idx = vin(pl, st, 1);
    if (!x || !idx) return BAD_INPUT(st, "inputs are missing");
    if (idx->dtype != DT_I64 && idx->dtype != DT_I32) return BAD_INPUT(st, "indices must be integers");
    int a = 0;
    TRY(norm_axis(st, aint(st, "axis", 0), x->ndim, "axis", &a));
    if (x->ndim - 1 + idx->ndim > MAXD) return BAD_INPUT(st, "output rank above %d", MAXD);
    if (idx->is_const) TRY(check_indices(st, idx, x->dims[a]));
    int64_t od[MAXD];
    int r = 0;
    for (int i = 0; i < a; i++) od[r++] = x->dims[i];
    for (int i = 0; i < idx->ndim; i++) od[r++] = idx->dims[i];
    for (int i = a + 1; i < x->ndim; i++) od[r++] = x->dims[i];
    st->i[0] = a;
    return set_out(st, vout(pl, st, 0), x->dtype, r, od);
}
static aipn_status run_gather(pool *p, plan *pl, step *st) {
    (void)p;
    val *x = vin(pl, st, 0), *idx = vin(pl, st, 1), *y = vout(pl, st, 0);
    if (!y) return AIPN_OK;
    int a = (int)st->i[0];
    int64_t dim = x->dims[a];
    TRY(check_indices(st, idx, dim));
    size_t es = dtype_size(x->dtype);
    int64_t outer = prod(x->dims, 0, a), inner = prod(x->dims, a + 1, x->ndim);
    uint8_t *dst = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < idx->numel; i++) {
            int64_t v = idx->dtype == DT_I64 ? ((const int64_t *)idx->data)[i] : ((const int32_t *)idx->data)[i];
            if (v < 0) v += dim;
            memcpy(dst, (const uint8_t *)x->data + ((o * dim + v) * inner) * (int64_t)es, (size_t)inner * es);
            dst += inner * (int64_t)es;
        }
    return AIPN_OK;
}

/* -- Shape, Constant, ConstantOfShape (evaluated at plan time) -------------------------------- */
static aipn_status prep_shape(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    val *x = vin(pl, st, 0);
    if (!x) return BAD_INPUT(st, "input is missing");
    int64_t r = x->ndim, s = aint(st, "start", 0), e = aint(st, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    st->i[0] = s;
    int64_t n = e > s ? e - s : 0;
    return set_out(st, vout(pl, st, 0), DT_I64, 1, &n);
}
static aipn_status run_shape(pool *p, plan *pl, step *st) {
    (void)p;
    val *x = vin(pl, st, 0), *y = vout(pl, st, 0);
    if (y) memcpy(y->data, x->dims + st->i[0], (size_t)y->numel * 8);
    return AIPN_OK;
}

static aipn_status prep_constant(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    const attr *a = NULL;
    const char *keys[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (int i = 0; i < 5 && !a; i++) a = node_attr(st->nd, keys[i]);
    if (!a) return bad_attr(st, "value", "a dense value, value_float(s) or value_int(s) is required");
    int64_t n = a->n;
    switch (a->type) {
    case AT_TENSOR: return set_out(st, vout(pl, st, 0), a->tdtype, a->tndim, a->tdims);
    case AT_FLOAT: return set_out(st, vout(pl, st, 0), DT_F32, 0, NULL);
    case AT_INT: return set_out(st, vout(pl, st, 0), DT_I64, 0, NULL);
    case AT_FLOATS: return set_out(st, vout(pl, st, 0), DT_F32, 1, &n);
    case AT_INTS: return set_out(st, vout(pl, st, 0), DT_I64, 1, &n);
    default: return bad_attr(st, a->name, "unexpected attribute type");
    }
}
static aipn_status run_constant(pool *p, plan *pl, step *st) {
    (void)p;
    val *y = vout(pl, st, 0);
    const attr *a = NULL;
    const char *keys[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (int i = 0; i < 5 && !a; i++) a = node_attr(st->nd, keys[i]);
    if (!y) return AIPN_OK;
    size_t nb = (size_t)y->numel * dtype_size(y->dtype);
    const void *src = a->type == AT_TENSOR ? a->tdata : a->type == AT_FLOAT ? (const void *)&a->f
                    : a->type == AT_INT ? (const void *)&a->i : a->type == AT_FLOATS ? (const void *)a->floats : a->ints;
    if (nb) memcpy(y->data, src, nb);
    return AIPN_OK;
}

static aipn_status prep_cos(plan *pl, const aipn_model *m, step *st) {
    (void)m;
    int64_t dims[MAXD];
    int n = 0;
    TRY(const_ints(pl, st, 0, "shape", dims, MAXD, &n));
    for (int i = 0; i < n; i++) if (dims[i] < 0) return BAD_INPUT(st, "negative dims in the shape");
    const attr *a = node_attr(st->nd, "value");
    if (a && (a->type != AT_TENSOR || a->tnumel != 1)) return bad_attr(st, "value", "must hold one element");
    return set_out(st, vout(pl, st, 0), a ? a->tdtype : DT_F32, n, dims);
}
static aipn_status run_cos(pool *p, plan *pl, step *st) {
    (void)p;
    val *y = vout(pl, st, 0);
    const attr *a = node_attr(st->nd, "value");
    if (!y) return AIPN_OK;
    size_t es = dtype_size(y->dtype);
    uint8_t zero[8] = {0};
    const void *v = a ? a->tdata : zero;
    for (int64_t i = 0; i < y->numel; i++) memcpy((uint8_t *)y->data + i * (int64_t)es, v, es);
    return AIPN_OK;
}

/* -- the table ---------------------------------------------------------------------------------- */
const op_def OPS[] = {
    {"Add", prep_ew, run_ew}, {"AipFC", prep_aipfc, run_aipfc}, {"AveragePool", prep_pool, run_avgpool},
    {"BatchNormalization", prep_bn, run_bn}, {"Clip", prep_unary, run_unary},
    {"Concat", prep_concat, run_concat}, {"Constant", prep_constant, run_constant},
    {"ConstantOfShape", prep_cos, run_cos}, {"Conv", prep_conv, run_conv},
    {"Div", prep_ew, run_ew}, {"Dropout", prep_identity, run_view},
    {"Flatten", prep_flatten, run_view}, {"Gather", prep_gather, run_gather},
    {"Gemm", prep_gemm, run_gemm}, {"GlobalAveragePool", prep_gpool, run_gpool},
    {"GlobalMaxPool", prep_gpool, run_gpool}, {"Identity", prep_identity, run_view},
    {"LRN", prep_lrn, run_lrn}, {"LeakyRelu", prep_unary, run_unary},
    {"LogSoftmax", prep_softmax, run_softmax}, {"MatMul", prep_matmul, run_matmul},
    {"MaxPool", prep_pool, run_maxpool}, {"Mul", prep_ew, run_ew},
    {"Relu", prep_unary, run_unary}, {"Reshape", prep_reshape, run_view},
    {"Shape", prep_shape, run_shape}, {"Sigmoid", prep_unary, run_unary},
    {"Softmax", prep_softmax, run_softmax}, {"Squeeze", prep_squeeze, run_view},
    {"Sub", prep_ew, run_ew}, {"Sum", prep_ew, run_ew},
    {"Tanh", prep_unary, run_unary}, {"Transpose", prep_transpose, run_transpose},
    {"Unsqueeze", prep_unsqueeze, run_view},
};
const int NOPS = (int)(sizeof OPS / sizeof OPS[0]);

int op_lookup(const char *name) {
    for (int i = 0; i < NOPS; i++)
        if (!strcmp(OPS[i].name, name)) return i;
    return -1;
}
