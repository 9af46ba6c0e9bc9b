/* The .aipn reader: bounds-checked parsing of the header and table (layout in
 * include/aipnet.h), with every check the Python reader (engine/aipn_format.py) makes.
 * A hostile file gets an error status and a message, never an out-of-bounds read. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[512];

aipn_status aipn_fail(aipn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *aipn_last_error(void) { return last_error; }

size_t dtype_size(int dtype) {
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_I64: return 8;
    case DT_U8: case DT_I8: case DT_BOOL: return 1;
    default: return 0;
    }
}

/* -- arena ---------------------------------------------------------------------------- */
struct arena_block { arena_block *next; size_t size, used; max_align_t pad; };

void *arena_alloc(arena *a, size_t n) {
    if (n > ((size_t)1 << 46)) return NULL;
    n = (n + 63) & ~(size_t)63;
    arena_block *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t size = n > 65536 ? n : 65536;
        void *mem = NULL;
        if (posix_memalign(&mem, 64, size + 64) != 0) return NULL;
        b = mem;
        b->next = a->head;
        b->size = size;
        b->used = 0;
        a->head = b;
    }
    uint8_t *p = (uint8_t *)b + 64 + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void arena_free(arena *a) {
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* -- CRC-32 (IEEE 802.3, zlib's), slicing by 8 ------------------------------------------- */
static uint32_t crc_tab[8][256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xFF];
}

uint32_t aipn_crc32(uint32_t crc, const void *data, size_t n) {
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        crc_init();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = crc_tab[0][(c ^ *p++) & 0xFF] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^ crc_tab[5][(lo >> 16) & 0xFF] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xFF] ^ crc_tab[2][(hi >> 8) & 0xFF] ^
            crc_tab[1][(hi >> 16) & 0xFF] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

/* -- table reader ------------------------------------------------------------------------ */
typedef struct rd { const uint8_t *p, *end; aipn_model *m; int bad; } rd;

static int take(rd *r, size_t n, const uint8_t **out) {
    if (r->bad || (size_t)(r->end - r->p) < n) { r->bad = 1; return 0; }
    *out = r->p;
    r->p += n;
    return 1;
}
static uint32_t u32(rd *r) { const uint8_t *q; uint32_t v = 0; if (take(r, 4, &q)) memcpy(&v, q, 4); return v; }
static uint64_t u64(rd *r) { const uint8_t *q; uint64_t v = 0; if (take(r, 8, &q)) memcpy(&v, q, 8); return v; }
static int64_t i64(rd *r) { return (int64_t)u64(r); }
static float f32(rd *r) { const uint8_t *q; float v = 0; if (take(r, 4, &q)) memcpy(&v, q, 4); return v; }
/* a count of items that take at least `min_bytes` each must fit in what is left */
static uint32_t count(rd *r, size_t min_bytes) {
    uint32_t n = u32(r);
    if (r->bad || (uint64_t)n * min_bytes > (uint64_t)(r->end - r->p)) { r->bad = 1; return 0; }
    return n;
}
static const char *str(rd *r) {
    uint32_t n = u32(r);
    const uint8_t *q;
    if (!take(r, n, &q)) return "";
    char *s = arena_alloc(&r->m->mem, (size_t)n + 1);
    if (!s) { r->bad = 2; return ""; }
    memcpy(s, q, n);
    if (memchr(s, 0, n)) r->bad = 1; /* names are C strings in this API */
    return s;
}

/* product of dims, or -1 if negative or above `limit` (no overflow: checked stepwise) */
static int64_t shape_numel(const int64_t *dims, int ndim, uint64_t limit) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] == 0) n = 0;
        else if (n > limit / (uint64_t)dims[i]) return -1;
        else n *= (uint64_t)dims[i];
    }
    for (int i = 0; i < ndim; i++) if (dims[i] == 0) return 0;
    return n > limit ? -1 : (int64_t)n;
}

/* -- name table (open addressing) -------------------------------------------------------- */
typedef struct names { uint32_t cap; int32_t *slot; const valdecl *vals; } names;
static uint64_t fnv(const char *s) { uint64_t h = 1469598103934665603ull; while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull; return h; }
static int32_t names_find(const names *t, const char *s) {
    for (uint64_t i = fnv(s) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        int32_t v = t->slot[i];
        if (v < 0) return -1;
        if (strcmp(t->vals[v].name, s) == 0) return v;
    }
}
static void names_add(names *t, int32_t id) {
    uint64_t i = fnv(t->vals[id].name) & (t->cap - 1);
    while (t->slot[i] >= 0) i = (i + 1) & (t->cap - 1);
    t->slot[i] = id;
}

int op_lookup(const char *name); /* ops.c */

#define FAIL(st, ...) do { aipn_status s_ = aipn_fail(st, __VA_ARGS__); return s_; } while (0)

static aipn_status read_attr(rd *r, attr *a, const char *where) {
    a->name = str(r);
    a->type = (int)u32(r);
    switch (a->type) {
    case AT_INT: a->i = i64(r); break;
    case AT_FLOAT: a->f = f32(r); break;
    case AT_STRING: a->s = str(r); break;
    case AT_INTS:
        a->n = count(r, 8);
        a->ints = arena_alloc(&r->m->mem, (size_t)a->n * 8 + 8);
        if (!a->ints) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < a->n; i++) a->ints[i] = i64(r);
        break;
    case AT_FLOATS:
        a->n = count(r, 4);
        a->floats = arena_alloc(&r->m->mem, (size_t)a->n * 4 + 4);
        if (!a->floats) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < a->n; i++) a->floats[i] = f32(r);
        break;
    case AT_STRINGS:
        a->n = count(r, 4);
        a->strs = arena_alloc(&r->m->mem, (size_t)a->n * sizeof(char *) + 8);
        if (!a->strs) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < a->n; i++) a->strs[i] = str(r);
        break;
    case AT_TENSOR: {
        a->tdtype = (int)u32(r);
        uint32_t nd = u32(r);
        if (r->bad) break;
        if (!dtype_size(a->tdtype) || nd > MAXD)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: %s: attribute '%s' has dtype %d, rank %u", where, a->name, a->tdtype, nd);
        a->tndim = (int)nd;
        for (uint32_t i = 0; i < nd; i++) a->tdims[i] = i64(r);
        uint64_t nbytes = u64(r);
        if (r->bad) break;
        int64_t numel = shape_numel(a->tdims, a->tndim, (uint64_t)(r->end - r->p));
        if (numel < 0 || nbytes != (uint64_t)numel * dtype_size(a->tdtype))
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: %s: attribute '%s' has a bad shape or size", where, a->name);
        const uint8_t *q;
        if (!take(r, nbytes, &q)) break;
        a->tdata = arena_alloc(&r->m->mem, nbytes + 8);
        if (!a->tdata) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
        memcpy(a->tdata, q, nbytes);
        a->tnumel = (size_t)numel;
        break;
    }
    default:
        if (!r->bad) FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: %s: attribute '%s' has unknown type %d", where, a->name, a->type);
    }
    return AIPN_OK;
}

typedef struct span { uint64_t off, n; uint32_t id; } span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->n < y->n ? -1 : x->n > y->n);
}

aipn_status aipn_parse(aipn_model *m, const uint8_t *buf, size_t size, uint32_t flags) {
    static const uint8_t magic[8] = {'A', 'I', 'P', 'N', 0, '\r', '\n', 0x1a};
    if (size < 64) FAIL(AIPN_ERR_FORMAT, "not an .aipn file (only %zu bytes)", size);
    if (memcmp(buf, magic, 8) != 0) FAIL(AIPN_ERR_FORMAT, "not an .aipn file (bad magic)");
    uint16_t major, minor;
    uint32_t align, hflags, opset, crc, reserved;
    uint64_t t_off, t_size, d_off, d_size;
    memcpy(&major, buf + 8, 2); memcpy(&minor, buf + 10, 2);
    memcpy(&align, buf + 12, 4); memcpy(&hflags, buf + 16, 4); memcpy(&opset, buf + 20, 4);
    memcpy(&t_off, buf + 24, 8); memcpy(&t_size, buf + 32, 8); memcpy(&d_off, buf + 40, 8);
    memcpy(&d_size, buf + 48, 8); memcpy(&crc, buf + 56, 4); memcpy(&reserved, buf + 60, 4);
    if (major > AIPN_VERSION_MAJOR)
        FAIL(AIPN_ERR_VERSION, ".aipn format version %u.%u is newer than this reader (%d.%d); upgrade aipnet to read it",
             major, minor, AIPN_VERSION_MAJOR, AIPN_VERSION_MINOR);
    if (major != AIPN_VERSION_MAJOR) FAIL(AIPN_ERR_VERSION, ".aipn format version %u.%u is not supported", major, minor);
    if (align != 64 || hflags != 0 || reserved != 0)
        FAIL(AIPN_ERR_FORMAT, "corrupt .aipn header (alignment %u, flags %u, reserved %u)", align, hflags, reserved);
    if (t_off != 64 || t_size > size - 64 || d_off % 64 || d_off < t_off + t_size || d_off > size || d_size > size - d_off)
        FAIL(AIPN_ERR_FORMAT, "corrupt or truncated .aipn file (table %llu+%llu, data %llu+%llu, file %zu bytes)",
             (unsigned long long)t_off, (unsigned long long)t_size, (unsigned long long)d_off,
             (unsigned long long)d_size, size);
    int verify = !(flags & AIPN_LOAD_SKIP_CHECKSUMS);
    if (verify && aipn_crc32(aipn_crc32(0, buf, 56), buf + 64, t_size) != crc)
        FAIL(AIPN_ERR_CHECKSUM, ".aipn header checksum mismatch (corrupt file)");
    m->opset = opset;
    const uint8_t *data = buf + d_off;
    rd r = {buf + 64, buf + 64 + t_size, m, 0};
#define CHECK() do { if (r.bad == 2) FAIL(AIPN_ERR_MEMORY, "out of memory"); \
        if (r.bad) FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: a table entry runs past the end of the table"); } while (0)
    m->nmeta = count(&r, 8);
    CHECK();
    m->meta_k = arena_alloc(&m->mem, (size_t)m->nmeta * sizeof(char *) + 8);
    m->meta_v = arena_alloc(&m->mem, (size_t)m->nmeta * sizeof(char *) + 8);
    if (!m->meta_k || !m->meta_v) FAIL(AIPN_ERR_MEMORY, "out of memory");
    for (uint32_t i = 0; i < m->nmeta; i++) { m->meta_k[i] = str(&r); m->meta_v[i] = str(&r); }
    CHECK();
    m->ntensors = count(&r, 36);
    CHECK();
    /* values are tensors + inputs + node outputs; node outputs are counted later, so
     * size the array for what the table can hold at most (4 bytes per name) */
    uint64_t maxvals = (uint64_t)m->ntensors + (uint64_t)t_size / 4 + 1;
    m->vals = arena_alloc(&m->mem, maxvals * sizeof(valdecl));
    if (!m->vals) FAIL(AIPN_ERR_MEMORY, "out of memory");
    span *spans = arena_alloc(&m->mem, (size_t)m->ntensors * sizeof(span) + 8);
    if (!spans) FAIL(AIPN_ERR_MEMORY, "out of memory");
    for (uint32_t t = 0; t < m->ntensors; t++) {
        valdecl *v = &m->vals[t];
        v->name = str(&r);
        v->kind = 0;
        v->dtype = (int)u32(&r);
        uint32_t layout = u32(&r), nd = u32(&r);
        CHECK();
        if (!dtype_size(v->dtype) || layout != 0 || nd > MAXD)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: tensor '%s' has dtype %d, layout %u, rank %u", v->name, v->dtype, layout, nd);
        v->ndim = (int)nd;
        for (uint32_t i = 0; i < nd; i++) v->dims[i] = i64(&r);
        uint64_t off = u64(&r), nbytes = u64(&r);
        uint32_t tcrc = u32(&r);
        CHECK();
        int64_t numel = shape_numel(v->dims, v->ndim, d_size);
        if (numel < 0 || nbytes != (uint64_t)numel * dtype_size(v->dtype) || off % 64 || off > d_size || nbytes > d_size - off)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: tensor '%s' (%llu bytes at %llu) does not fit the data section",
                 v->name, (unsigned long long)nbytes, (unsigned long long)off);
        if (!v->name[0]) FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: a tensor has an empty name");
        if (verify && aipn_crc32(0, data + off, nbytes) != tcrc)
            FAIL(AIPN_ERR_CHECKSUM, "corrupt .aipn file: checksum mismatch in tensor '%s'", v->name);
        v->data = data + off;
        v->numel = (size_t)numel;
        spans[t] = (span){off, nbytes, t};
    }
    qsort(spans, m->ntensors, sizeof(span), span_cmp);
    for (uint32_t t = 1; t < m->ntensors; t++)
        if (spans[t - 1].off + spans[t - 1].n > spans[t].off)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: tensors '%s' and '%s' overlap",
                 m->vals[spans[t - 1].id].name, m->vals[spans[t].id].name);
    m->ninputs = count(&r, 12);
    CHECK();
    m->inputs = arena_alloc(&m->mem, (size_t)m->ninputs * 4 + 4);
    if (!m->inputs) FAIL(AIPN_ERR_MEMORY, "out of memory");
    uint32_t nv = m->ntensors;
    for (uint32_t i = 0; i < m->ninputs; i++) {
        valdecl *v = &m->vals[nv];
        v->name = str(&r);
        v->kind = 1;
        v->dtype = (int)u32(&r);
        int32_t nd = (int32_t)u32(&r);
        CHECK();
        if (!dtype_size(v->dtype) || nd > MAXD || nd < -1)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: input '%s' has dtype %d, rank %d", v->name, v->dtype, nd);
        v->ndim = nd;
        for (int32_t d = 0; d < nd; d++) v->dims[d] = i64(&r);
        m->inputs[i] = (int32_t)nv++;
    }
    CHECK();
    m->noutputs = count(&r, 4);
    CHECK();
    const char **outnames = arena_alloc(&m->mem, (size_t)m->noutputs * sizeof(char *) + 8);
    m->outputs = arena_alloc(&m->mem, (size_t)m->noutputs * 4 + 4);
    if (!outnames || !m->outputs) FAIL(AIPN_ERR_MEMORY, "out of memory");
    for (uint32_t i = 0; i < m->noutputs; i++) outnames[i] = str(&r);
    m->nnodes = count(&r, 20);
    CHECK();
    m->nodes = arena_alloc(&m->mem, (size_t)m->nnodes * sizeof(node) + 8);
    names tab = {1, NULL, m->vals};
    while (tab.cap < 2 * maxvals) tab.cap <<= 1;
    tab.slot = arena_alloc(&m->mem, (size_t)tab.cap * 4);
    if (!m->nodes || !tab.slot) FAIL(AIPN_ERR_MEMORY, "out of memory");
    memset(tab.slot, 0xFF, (size_t)tab.cap * 4);
    for (uint32_t v = 0; v < nv; v++) {
        if (names_find(&tab, m->vals[v].name) >= 0)
            FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: the name '%s' is defined twice", m->vals[v].name);
        names_add(&tab, (int32_t)v);
    }
    for (uint32_t k = 0; k < m->nnodes; k++) {
        node *n = &m->nodes[k];
        n->opname = str(&r);
        n->name = str(&r);
        n->nin = count(&r, 4);
        CHECK();
        n->in = arena_alloc(&m->mem, (size_t)n->nin * 4 + 4);
        if (!n->in) FAIL(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < n->nin; i++) {
            const char *s = str(&r);
            CHECK();
            n->in[i] = s[0] ? names_find(&tab, s) : -1;
            if (s[0] && n->in[i] < 0)
                FAIL(AIPN_ERR_MODEL, "node '%s' (%s) reads '%s', which no earlier node, input or tensor defines "
                     "(dangling name or cycle)", n->name, n->opname, s);
        }
        n->nout = count(&r, 4);
        CHECK();
        n->out = arena_alloc(&m->mem, (size_t)n->nout * 4 + 4);
        if (!n->out) FAIL(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < n->nout; i++) {
            const char *s = str(&r);
            CHECK();
            if (!s[0]) { n->out[i] = -1; continue; }
            if (names_find(&tab, s) >= 0)
                FAIL(AIPN_ERR_MODEL, "node '%s' (%s) writes '%s', which is already defined", n->name, n->opname, s);
            if (nv >= maxvals) FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: too many values");
            m->vals[nv] = (valdecl){.name = s, .kind = 2, .ndim = -1};
            names_add(&tab, (int32_t)nv);
            n->out[i] = (int32_t)nv++;
        }
        n->nattr = count(&r, 8);
        CHECK();
        n->attrs = arena_alloc(&m->mem, (size_t)n->nattr * sizeof(attr) + 8);
        if (!n->attrs) FAIL(AIPN_ERR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < n->nattr; i++) {
            aipn_status st = read_attr(&r, &n->attrs[i], n->name);
            if (st != AIPN_OK) return st;
            CHECK();
        }
        n->op = op_lookup(n->opname);
        if (n->op < 0)
            FAIL(AIPN_ERR_UNSUPPORTED, "unsupported op '%s' in node '%s'; supported ops: %s", n->opname, n->name,
                 aipn_supported_ops());
    }
    CHECK();
    if (r.p != r.end) FAIL(AIPN_ERR_FORMAT, "corrupt .aipn file: %zu stray bytes after the graph table", (size_t)(r.end - r.p));
    for (uint32_t i = 0; i < m->noutputs; i++) {
        m->outputs[i] = names_find(&tab, outnames[i]);
        if (m->outputs[i] < 0) FAIL(AIPN_ERR_MODEL, "graph output '%s' is never computed", outnames[i]);
    }
    m->nvals = nv;
    return AIPN_OK;
}

const attr *node_attr(const node *n, const char *name) {
    for (uint32_t i = 0; i < n->nattr; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}
