/* The public API (include/aipnet.h): models, sessions, plans, runs and stats.
 *
 * A plan is made per distinct set of input shapes (cached by the session), as the
 * Python planner does (engine/plan.py): every node whose inputs are all known at plan
 * time (weights, or values computed from shapes, e.g. Shape -> Gather -> Concat ->
 * Reshape) is evaluated once and becomes a constant; the rest become steps with
 * buffers allocated once per plan. A run then only computes. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

#define MAX_PLANS 8

struct aipn_session {
    const aipn_model *model;
    aipn_config cfg;
    pool *pool;
    plan *plans;              /* most recently used first */
    aipn_layer_stats *stats;
    uint32_t nstats, stats_cap;
    aipn_layer_knobs *layers;  /* the session's copy of cfg.layers (names copied too) */
    uint64_t image_offset;     /* DrowsyNet: image id of the next run's first image */
};

const char *aipn_version(void) { return "aipnet 0.1.0 (.aipn 1.0)"; }

const char *aipn_status_name(aipn_status st) {
    static const char *names[] = {"ok", "bad argument", "I/O error", "bad format", "unsupported version",
                                  "checksum mismatch", "invalid model", "unsupported", "bad shape",
                                  "bad buffer size", "out of memory", "internal error"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "unknown status";
}

const char *aipn_supported_ops(void) {
    static char buf[1024];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        char tmp[1024] = "";
        for (int i = 0; i < NOPS; i++) {
            if (i) strcat(tmp, ",");
            strcat(tmp, OPS[i].name);
        }
        memcpy(buf, tmp, sizeof tmp);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return buf;
}

/* -- models ------------------------------------------------------------------------------ */
void aipn_model_free(aipn_model *m) {
    if (!m) return;
    arena_free(&m->mem);
    if (m->map) munmap(m->map, m->map_size);
    free(m->copy);
    free(m);
}

static aipn_status finish_load(aipn_model *m, const uint8_t *buf, size_t size, uint32_t flags, aipn_model **out) {
    aipn_status st = aipn_parse(m, buf, size, flags);
    if (st != AIPN_OK) {
        aipn_model_free(m);
        return st;
    }
    *out = m;
    return AIPN_OK;
}

aipn_status aipn_model_load_file(const char *path, uint32_t flags, aipn_model **out) {
    if (!out) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_load_file: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aipn_fail(AIPN_ERR_IO, "%s: cannot open (no such file or no permission)", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return aipn_fail(AIPN_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 64) {
        close(fd);
        return aipn_fail(AIPN_ERR_FORMAT, "%s: not an .aipn file (only %lld bytes)", path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return aipn_fail(AIPN_ERR_IO, "%s: cannot memory-map", path);
    aipn_model *m = calloc(1, sizeof *m);
    if (!m) { munmap(map, (size_t)sb.st_size); return aipn_fail(AIPN_ERR_MEMORY, "out of memory"); }
    m->map = map;
    m->map_size = (size_t)sb.st_size;
    return finish_load(m, map, m->map_size, flags, out);
}

aipn_status aipn_model_load_memory(const void *data, size_t size, uint32_t flags, aipn_model **out) {
    if (!out) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_load_memory: out is NULL");
    *out = NULL;
    if (!data) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_load_memory: data is NULL");
    aipn_model *m = calloc(1, sizeof *m);
    if (!m) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    const uint8_t *buf = data;
    if ((flags & AIPN_LOAD_COPY) || ((uintptr_t)data & 63)) {
        m->copy = aligned_alloc(64, (size + 64) & ~(size_t)63);
        if (!m->copy) { free(m); return aipn_fail(AIPN_ERR_MEMORY, "out of memory copying a %zu-byte model", size); }
        memcpy(m->copy, data, size);
        buf = m->copy;
    }
    return finish_load(m, buf, size, flags, out);
}

aipn_status aipn_model_num_inputs(const aipn_model *m, uint32_t *count) {
    if (!m || !count) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_num_inputs: NULL argument");
    *count = m->ninputs;
    return AIPN_OK;
}

aipn_status aipn_model_num_outputs(const aipn_model *m, uint32_t *count) {
    if (!m || !count) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_num_outputs: NULL argument");
    *count = m->noutputs;
    return AIPN_OK;
}

aipn_status aipn_model_input(const aipn_model *m, uint32_t i, const char **name, int32_t *ndim, int64_t *dims) {
    if (!m) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_input: model is NULL");
    if (i >= m->ninputs) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_input: index %u out of range (%u inputs)", i, m->ninputs);
    const valdecl *v = &m->vals[m->inputs[i]];
    if (name) *name = v->name;
    if (ndim) *ndim = v->ndim;
    if (dims) for (int d = 0; d < MAXD; d++) dims[d] = d < v->ndim ? v->dims[d] : 0;
    return AIPN_OK;
}

aipn_status aipn_model_output(const aipn_model *m, uint32_t i, const char **name) {
    if (!m || !name) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_output: NULL argument");
    if (i >= m->noutputs) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_output: index %u out of range (%u outputs)", i, m->noutputs);
    *name = m->vals[m->outputs[i]].name;
    return AIPN_OK;
}

aipn_status aipn_model_meta(const aipn_model *m, const char *key, const char **value) {
    if (!m || !key || !value) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_model_meta: NULL argument");
    *value = NULL;
    for (uint32_t i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta_k[i], key)) *value = m->meta_v[i];
    return AIPN_OK;
}

/* -- sessions ---------------------------------------------------------------------------- */
void aipn_config_default(aipn_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->aip_skip_zeros = 1;
    c->drowsy_granularity = DROWSY_PIXEL;
    c->drowsy_rescale = 1;
}

static aipn_status check_drowsy(double p, int32_t gran, int32_t rescale, int per_layer, const char *where) {
    if (isnan(p) || (per_layer ? p >= 1.0 : (p < 0.0 || p >= 1.0)))
        return aipn_fail(AIPN_ERR_ARGUMENT, "%sdrowsy must be a drop rate with 0 <= p < 1, got %g", where, p);
    if (gran < (per_layer ? -1 : 0) || gran > 3)
        return aipn_fail(AIPN_ERR_ARGUMENT, "%sdrowsy_granularity must be 0 (neuron), 1 (pixel), 2 (channel) or 3 (tile)%s, got %d",
                         where, per_layer ? " or -1 (the session's)" : "", gran);
    if (rescale < (per_layer ? -1 : 0) || rescale > 1)
        return aipn_fail(AIPN_ERR_ARGUMENT, "%sdrowsy_rescale must be 0 or 1%s, got %d", where,
                         per_layer ? " or -1 (the session's)" : "", rescale);
    return AIPN_OK;
}

aipn_status aipn_session_new(const aipn_model *m, const aipn_config *cfg, aipn_session **out) {
    if (!out) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_new: out is NULL");
    *out = NULL;
    if (!m) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_new: model is NULL");
    aipn_config c;
    aipn_config_default(&c);
    if (cfg) {
        if (cfg->struct_size != sizeof c)
            return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_new: config.struct_size is %u, expected %zu (call aipn_config_default)",
                             cfg->struct_size, sizeof c);
        c = *cfg;
    }
    if (c.threads < 0 || c.threads > 1024) return aipn_fail(AIPN_ERR_ARGUMENT, "threads must be 0 (all cores) or 1..1024, got %d", c.threads);
    if (c.aip != 0 && c.aip != 1) return aipn_fail(AIPN_ERR_ARGUMENT, "aip must be 0 or 1, got %d", c.aip);
    if (c.aip_threshold_set != 0 && c.aip_threshold_set != 1)
        return aipn_fail(AIPN_ERR_ARGUMENT, "aip_threshold_set must be 0 or 1, got %d", c.aip_threshold_set);
    if (c.aip_threshold_set && isnan(c.aip_threshold))
        return aipn_fail(AIPN_ERR_ARGUMENT, "aip_threshold must be a number (inf allowed), got NaN");
    if (c.aip_refine < 0) return aipn_fail(AIPN_ERR_ARGUMENT, "aip_refine must be 0 (default) or >= 1, got %d", c.aip_refine);
    if (c.aip_mode != 0 && c.aip_mode != 1) return aipn_fail(AIPN_ERR_ARGUMENT, "aip_mode must be 0 (refine) or 1 (approx), got %d", c.aip_mode);
    if (c.aip_skip_zeros != 0 && c.aip_skip_zeros != 1)
        return aipn_fail(AIPN_ERR_ARGUMENT, "aip_skip_zeros must be 0 or 1, got %d", c.aip_skip_zeros);
    aipn_status dst = check_drowsy(c.drowsy, c.drowsy_granularity, c.drowsy_rescale, 0, "");
    if (dst != AIPN_OK) return dst;
    if (c.drowsy_fixed_mask != 0 && c.drowsy_fixed_mask != 1)
        return aipn_fail(AIPN_ERR_ARGUMENT, "drowsy_fixed_mask must be 0 or 1, got %d", c.drowsy_fixed_mask);
    if (c.n_layers && !c.layers) return aipn_fail(AIPN_ERR_ARGUMENT, "config.layers is NULL but n_layers is %u", c.n_layers);
    if (c.n_layers > 1u << 20) return aipn_fail(AIPN_ERR_ARGUMENT, "config.n_layers is %u", c.n_layers);
    for (uint32_t i = 0; i < c.n_layers; i++) {
        const aipn_layer_knobs *lk = &c.layers[i];
        if (!lk->name) return aipn_fail(AIPN_ERR_ARGUMENT, "config.layers[%u].name is NULL", i);
        int conv = 0;
        for (uint32_t k = 0; k < m->nnodes && !conv; k++)
            conv = !strcmp(m->nodes[k].opname, "Conv") && !strcmp(m->nodes[k].name, lk->name);
        if (!conv) return aipn_fail(AIPN_ERR_ARGUMENT, "config.layers[%u]: '%s' is not a Conv layer of the model", i, lk->name);
        char where[320];
        snprintf(where, sizeof where, "layer '%.200s': ", lk->name);
        dst = check_drowsy(lk->drowsy < 0 ? 0.0 : lk->drowsy, lk->drowsy_granularity, lk->drowsy_rescale, 1, where);
        if (dst != AIPN_OK) return dst;
    }
    if (c.aip) {
        int packed = 0, gemm = 0;
        for (uint32_t k = 0; k < m->nnodes; k++) {
            packed |= !strcmp(m->nodes[k].opname, "AipFC");
            gemm |= !strcmp(m->nodes[k].opname, "Gemm");
        }
        if (gemm && !packed)
            return aipn_fail(AIPN_ERR_UNSUPPORTED, "aip = 1 but the model has no packed FC layer (AipFC): pack it with "
                             "`aipnet convert --aip-policy stride ...` (or use aipnet.Session(backend='c', aip=True), "
                             "which packs at load)");
    }
    for (int i = 0; i < 8; i++)
        if (c.reserved[i]) return aipn_fail(AIPN_ERR_ARGUMENT, "config.reserved must be 0");
    for (uint32_t i = 0; i < m->ninputs; i++)
        if (m->vals[m->inputs[i]].dtype != DT_F32)
            return aipn_fail(AIPN_ERR_UNSUPPORTED, "input '%s' is not float32; the C API takes float32 inputs",
                             m->vals[m->inputs[i]].name);
    int threads = c.threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    aipn_session *s = calloc(1, sizeof *s);
    if (!s) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    s->model = m;
    s->cfg = c;
    if (c.n_layers) { /* copy the per-layer knobs and their names */
        size_t bytes = c.n_layers * sizeof(aipn_layer_knobs);
        for (uint32_t i = 0; i < c.n_layers; i++) bytes += strlen(c.layers[i].name) + 1;
        s->layers = malloc(bytes);
        if (!s->layers) { free(s); return aipn_fail(AIPN_ERR_MEMORY, "out of memory"); }
        char *names = (char *)(s->layers + c.n_layers);
        for (uint32_t i = 0; i < c.n_layers; i++) {
            s->layers[i] = c.layers[i];
            size_t len = strlen(c.layers[i].name) + 1;
            memcpy(names, c.layers[i].name, len);
            s->layers[i].name = names;
            names += len;
        }
        s->cfg.layers = s->layers;
    } else {
        s->cfg.layers = NULL;
    }
    s->pool = pool_new(threads);
    if (!s->pool) { free(s->layers); free(s); return aipn_fail(AIPN_ERR_MEMORY, "cannot start %d threads", threads); }
    *out = s;
    return AIPN_OK;
}

static void plan_free(plan *p) {
    if (!p) return;
    arena a = p->mem;
    arena_free(&a);
}

void aipn_session_free(aipn_session *s) {
    if (!s) return;
    for (plan *p = s->plans; p;) {
        plan *next = p->next;
        plan_free(p);
        p = next;
    }
    pool_free(s->pool);
    free(s->layers);
    free(s->stats);
    free(s);
}

static aipn_status check_inputs(const aipn_model *m, const aipn_tensor *in, uint32_t n, int need_data) {
    if (n != m->ninputs) return aipn_fail(AIPN_ERR_ARGUMENT, "the model has %u inputs, got %u", m->ninputs, n);
    if (n && !in) return aipn_fail(AIPN_ERR_ARGUMENT, "inputs is NULL");
    for (uint32_t i = 0; i < n; i++) {
        const valdecl *d = &m->vals[m->inputs[i]];
        const aipn_tensor *t = &in[i];
        if (t->ndim < 0 || t->ndim > MAXD) return aipn_fail(AIPN_ERR_SHAPE, "input '%s': rank %d out of range", d->name, t->ndim);
        if (d->ndim >= 0 && t->ndim != d->ndim)
            return aipn_fail(AIPN_ERR_SHAPE, "input '%s' has rank %d, expected rank %d", d->name, t->ndim, d->ndim);
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            if (t->dims[k] < 0 || t->dims[k] > ((int64_t)1 << 31))
                return aipn_fail(AIPN_ERR_SHAPE, "input '%s': dim %d is %lld", d->name, k, (long long)t->dims[k]);
            if (k > 0 && d->ndim >= 0 && d->dims[k] >= 0 && t->dims[k] != d->dims[k])
                return aipn_fail(AIPN_ERR_SHAPE, "input '%s': dim %d is %lld, expected %lld", d->name, k,
                                 (long long)t->dims[k], (long long)d->dims[k]);
            numel *= (uint64_t)t->dims[k];
            if (numel > ((uint64_t)1 << 31)) return aipn_fail(AIPN_ERR_SHAPE, "input '%s' is too large", d->name);
        }
        if (need_data) {
            if (t->len != numel)
                return aipn_fail(AIPN_ERR_SIZE, "input '%s': len is %zu elements, its shape holds %llu", d->name, t->len,
                                 (unsigned long long)numel);
            if (!t->data && numel) return aipn_fail(AIPN_ERR_ARGUMENT, "input '%s': data is NULL", d->name);
        }
    }
    return AIPN_OK;
}

static aipn_status make_plan(aipn_session *s, const aipn_tensor *in, uint32_t n, plan **out) {
    const aipn_model *m = s->model;
    arena mem = {0};
    plan *p = arena_alloc(&mem, sizeof *p);
    if (!p) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    p->mem = mem;
    p->vals = arena_alloc(&p->mem, (size_t)m->nvals * sizeof(val) + 8);
    p->steps = arena_alloc(&p->mem, (size_t)m->nnodes * sizeof(step) + 8);
    aipn_status st = AIPN_ERR_MEMORY;
    if (!p->vals || !p->steps) { aipn_fail(st, "out of memory"); goto fail; }
    for (uint32_t t = 0; t < m->ntensors; t++) {
        const valdecl *d = &m->vals[t];
        val *v = &p->vals[t];
        v->dtype = d->dtype; v->ndim = d->ndim;
        memcpy(v->dims, d->dims, sizeof v->dims);
        v->numel = (int64_t)d->numel; v->data = (void *)d->data; v->is_const = 1; v->defined = 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        val *v = &p->vals[m->inputs[i]];
        v->dtype = DT_F32; v->ndim = in[i].ndim;
        memcpy(v->dims, in[i].dims, sizeof v->dims);
        v->numel = 1;
        for (int k = 0; k < v->ndim; k++) v->numel *= v->dims[k];
        v->defined = 1;
    }
    p->nin = n;
    p->cfg = &s->cfg;
    p->threads = pool_threads(s->pool);
    p->keylen = 0;
    for (uint32_t i = 0; i < n && p->keylen + MAXD + 1 <= sizeof p->key / sizeof p->key[0]; i++) {
        p->key[p->keylen++] = in[i].ndim;
        for (int k = 0; k < in[i].ndim; k++) p->key[p->keylen++] = in[i].dims[k];
    }
    for (uint32_t k = 0; k < m->nnodes; k++) {
        const node *nd = &m->nodes[k];
        step *stp = &p->steps[p->nsteps];
        memset(stp, 0, sizeof *stp);
        stp->nd = nd;
        int all_const = 1;
        for (uint32_t i = 0; i < nd->nin; i++) {
            if (nd->in[i] < 0) continue;
            val *v = &p->vals[nd->in[i]];
            if (!v->defined) { st = aipn_fail(AIPN_ERR_MODEL, "node '%s' reads '%s', which is not computed before it", nd->name, m->vals[nd->in[i]].name); goto fail; }
            all_const &= v->is_const;
        }
        st = OPS[nd->op].prep(p, m, stp);
        if (st != AIPN_OK) goto fail;
        int fold = all_const || !strcmp(nd->opname, "Shape");
        for (uint32_t o = 0; o < nd->nout; o++) {
            if (nd->out[o] < 0) continue;
            val *v = &p->vals[nd->out[o]];
            if (!v->defined) { st = aipn_fail(AIPN_ERR_INTERNAL, "node '%s': output %u has no shape", nd->name, o); goto fail; }
            if (o == 0 && stp->is_view) continue;
            v->data = arena_alloc(&p->mem, (size_t)v->numel * dtype_size(v->dtype) + 8);
            if (!v->data) { st = aipn_fail(AIPN_ERR_MEMORY, "out of memory for the output of node '%s'", nd->name); goto fail; }
        }
        if (fold) {
            st = OPS[nd->op].run(s->pool, p, stp);
            if (st != AIPN_OK) goto fail;
            for (uint32_t o = 0; o < nd->nout; o++)
                if (nd->out[o] >= 0) p->vals[nd->out[o]].is_const = 1;
            continue;
        }
        /* cost, as engine/ops/base.py counts it */
        for (uint32_t i = 0; i < nd->nin; i++) {
            if (nd->in[i] < 0) continue;
            val *v = &p->vals[nd->in[i]];
            uint64_t b = 4 * (uint64_t)v->numel;
            if (stp->weight_mask & (1u << (i < 31 ? i : 31))) stp->wbytes += b;
            else stp->aread += b;
            if (v->is_const && v->dtype == DT_F32) stp->wtotal += b;
        }
        for (uint32_t o = 0; o < nd->nout; o++) {
            if (nd->out[o] < 0) continue;
            stp->awritten += 4 * (uint64_t)p->vals[nd->out[o]].numel;
            stp->outputs += (uint64_t)p->vals[nd->out[o]].numel;
        }
        p->nsteps++;
    }
    for (uint32_t o = 0; o < m->noutputs; o++) {
        val *v = &p->vals[m->outputs[o]];
        if (!v->defined) { st = aipn_fail(AIPN_ERR_MODEL, "graph output '%s' is never computed", m->vals[m->outputs[o]].name); goto fail; }
        if (v->dtype != DT_F32) { st = aipn_fail(AIPN_ERR_UNSUPPORTED, "graph output '%s' is not float32", m->vals[m->outputs[o]].name); goto fail; }
    }
    *out = p;
    return AIPN_OK;
fail:
    plan_free(p);
    return st;
}

static aipn_status get_plan(aipn_session *s, const aipn_tensor *in, uint32_t n, plan **out) {
    int64_t key[16 * (MAXD + 1)];
    uint32_t kl = 0;
    for (uint32_t i = 0; i < n && kl + MAXD + 1 <= sizeof key / sizeof key[0]; i++) {
        key[kl++] = in[i].ndim;
        for (int k = 0; k < in[i].ndim; k++) key[kl++] = in[i].dims[k];
    }
    plan **pp = &s->plans;
    int count = 0;
    for (plan *p = s->plans; p; pp = &p->next, p = p->next, count++) {
        if (p->nin == n && p->keylen == kl && !memcmp(p->key, key, kl * sizeof(int64_t)) && n <= 16) {
            *pp = p->next; /* move to the front */
            p->next = s->plans;
            s->plans = p;
            *out = p;
            return AIPN_OK;
        }
    }
    plan *p = NULL;
    aipn_status st = make_plan(s, in, n, &p);
    if (st != AIPN_OK) return st;
    if (count >= MAX_PLANS) { /* drop the least recently used */
        plan **q = &s->plans;
        while ((*q)->next) q = &(*q)->next;
        plan_free(*q);
        *q = NULL;
    }
    p->next = s->plans;
    s->plans = p;
    *out = p;
    return AIPN_OK;
}

static aipn_status fill_outputs(aipn_session *s, plan *p, aipn_tensor *outs, uint32_t n, int check_len) {
    const aipn_model *m = s->model;
    if (n != m->noutputs) return aipn_fail(AIPN_ERR_ARGUMENT, "the model has %u outputs, got %u", m->noutputs, n);
    if (n && !outs) return aipn_fail(AIPN_ERR_ARGUMENT, "outputs is NULL");
    for (uint32_t o = 0; o < n; o++) {
        val *v = &p->vals[m->outputs[o]];
        outs[o].ndim = v->ndim;
        for (int k = 0; k < MAXD; k++) outs[o].dims[k] = k < v->ndim ? v->dims[k] : 0;
        if (check_len) {
            if (outs[o].len < (size_t)v->numel)
                return aipn_fail(AIPN_ERR_SIZE, "output '%s' needs %lld elements, its buffer holds %zu",
                                 m->vals[m->outputs[o]].name, (long long)v->numel, outs[o].len);
            if (!outs[o].data && v->numel) return aipn_fail(AIPN_ERR_ARGUMENT, "output %u: data is NULL", o);
        }
    }
    return AIPN_OK;
}

aipn_status aipn_session_plan(aipn_session *s, const aipn_tensor *in, uint32_t n_in, aipn_tensor *outs, uint32_t n_out) {
    if (!s) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_plan: session is NULL");
    aipn_status st = check_inputs(s->model, in, n_in, 0);
    if (st != AIPN_OK) return st;
    plan *p = NULL;
    if ((st = get_plan(s, in, n_in, &p)) != AIPN_OK) return st;
    return fill_outputs(s, p, outs, n_out, 0);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

aipn_status aipn_session_run(aipn_session *s, const aipn_tensor *in, uint32_t n_in, aipn_tensor *outs, uint32_t n_out) {
    if (!s) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_run: session is NULL");
    const aipn_model *m = s->model;
    aipn_status st = check_inputs(m, in, n_in, 1);
    if (st != AIPN_OK) return st;
    plan *p = NULL;
    if ((st = get_plan(s, in, n_in, &p)) != AIPN_OK) return st;
    if ((st = fill_outputs(s, p, outs, n_out, 1)) != AIPN_OK) return st;
    if (p->nsteps > s->stats_cap) {
        aipn_layer_stats *ns = realloc(s->stats, p->nsteps * sizeof *ns);
        if (!ns) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
        s->stats = ns;
        s->stats_cap = p->nsteps;
    }
    for (uint32_t i = 0; i < n_in; i++) p->vals[m->inputs[i]].data = in[i].data;
    p->image_offset = s->image_offset;
    s->nstats = 0;
    for (uint32_t k = 0; k < p->nsteps; k++) {
        step *stp = &p->steps[k];
        double t0 = now();
        st = OPS[stp->nd->op].run(s->pool, p, stp);
        double dt = now() - t0;
        if (st != AIPN_OK) return st;
        const attr *act = node_attr(stp->nd, "_act");
        s->stats[k] = (aipn_layer_stats){stp->nd->name, stp->nd->opname, act && act->type == AT_STRING ? act->s : "",
                                         stp->macs, 0, stp->wbytes, stp->wtotal, stp->aread, stp->awritten,
                                         stp->outputs, 0, dt, 0, "", 0.0, 0};
        if (stp->counted) { /* approximate kernels count what they really did */
            aipn_layer_stats *r = &s->stats[k];
            r->macs = stp->cnt.macs;
            r->macs_skipped = stp->cnt.macs_skipped;
            r->weight_bytes_read = stp->cnt.weight_bytes_read;
            r->outputs_refined = stp->cnt.outputs_refined;
            r->aip_rows_refined = stp->cnt.rows_refined;
            r->aip_role = stp->role;
        }
        if (stp->drowsy) { /* masked conv: what it really did */
            aipn_layer_stats *r = &s->stats[k];
            r->macs = stp->dcnt.macs;
            r->macs_skipped = stp->macs - stp->dcnt.macs;
            r->drowsy_rate = stp->drowsy_rate;
            r->drowsy_outputs_computed = stp->dcnt.outputs;
        }
        s->nstats = k + 1;
    }
    for (uint32_t o = 0; o < n_out; o++) {
        val *v = &p->vals[m->outputs[o]];
        if (v->numel) memcpy(outs[o].data, v->data, (size_t)v->numel * sizeof(float));
    }
    return AIPN_OK;
}

aipn_status aipn_session_set_image_offset(aipn_session *s, uint64_t image_offset) {
    if (!s) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_set_image_offset: session is NULL");
    s->image_offset = image_offset;
    return AIPN_OK;
}

aipn_status aipn_session_stats(const aipn_session *s, const aipn_layer_stats **layers, uint32_t *n, const char **source) {
    if (!s || !layers || !n) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_session_stats: NULL argument");
    *layers = s->stats;
    *n = s->nstats;
    if (source) *source = "analytic";
    return AIPN_OK;
}
