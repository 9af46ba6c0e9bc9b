/* AIP kernels and the run of one AIP FC layer (mirror of kernels/aip.py and of
 * engine/aip.py's aip_fc, which are the reference semantics).
 *
 * Layout (built by aipnet.aip.pack_fc, stored in the .aipn file or packed at load):
 *   approx  nb x k x 16 float32: approx[b, t, r] = W[16 b + r, S[t]] (rows past N zero):
 *           the approximate pass streams one 64-byte line per kept input and block;
 *   rest    N x (K - k) float32: rest[j, :] = W[j, ~S], read whole for a refined row;
 *   perm    K int64: S (sorted) then ~S (sorted).
 *
 * A run (x is B x K):
 *   1. gather xs = x[:, S] and, with skip_zeros, keep only the inputs t that are nonzero
 *      in some sample (a line is skipped only when its input is zero in every sample);
 *   2. approximate pass: p[s, j] = sum over kept t, in increasing t, of approx * xs, in
 *      float32 with no fused multiply-add, so p is bit for bit the Numba kernel's
 *      (numba compiles without fast-math: one mul and one add per term, in t order);
 *   3. est = float32(scale) * p + b (b = 0 without a bias), also without FMA;
 *   4. rows to refine: approx mode or K - k = 0 (see below): none / all; role relu: the
 *      union over samples of est > theta (theta rounded to float32, as numpy compares a
 *      float32 array with a Python float); role final: the union over samples of each
 *      sample's m = min(refine, N) best estimates; role dense: every row;
 *   5. refinement: y[s, j] = (p[s, j] + rest[j] . xr[s]) + b[j], reusing p. The dot
 *      product is vectorised (8-lane partial sums, FMA where the CPU has it), so a
 *      refined value may differ from Numba's strictly sequential float32 sum by a few
 *      ulps of the row's magnitude; the approximate pass, the estimates and therefore
 *      the rows chosen in a layer are identical;
 *   6. relu role: in refine mode the rows not refined are 0; then max(y, 0) (NaN kept).
 * Final-layer ties: candidates are ordered by estimate, larger first, then by smaller
 * row index; NaN estimates come after every number (numpy's argpartition leaves the
 * choice among equal estimates unspecified; this is one deterministic choice).
 * With K - k = 0 every row is "refined" (y = p + b), as in the Python.
 *
 * Counts, measured here: lines = the kept inputs (the same for every block);
 * macs = lines * N * B + rows * (K - k) * B; weight bytes = 64 * lines * nb +
 * 4 * rows * (K - k) + 4 * N with a bias; outputs refined = rows * B.
 *
 * Threads: the approximate pass splits blocks of 16 rows, refinement splits the chosen
 * rows over the pool; every output is written by one thread, in a fixed order, so the
 * result does not depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LANES 16
#define LINE_BYTES 64

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

#define NOFMA __attribute__((optimize("fp-contract=off")))

/* -- the approximate pass ------------------------------------------------------------------
 * part: B x (nb*16); nz: the L kept inputs; xc: L x B, their values per sample. */
typedef struct approx_job {
    const float *approx;
    int64_t k, L, bsz, nb16;
    const int64_t *nz;
    const float *xc;
    float *part;
} approx_job;

#define LOADW(w, o) (*(const v8u *)((w) + (o))), (*(const v8u *)((w) + (o) + 8))

#define DEFINE_APPROX(NAME, ATTR)                                                                     \
    ATTR NOFMA static void NAME(void *ctx, int64_t b0, int64_t b1) {                                 \
        const approx_job *j = ctx;                                                                    \
        const int64_t k = j->k, L = j->L, bsz = j->bsz, line = k * LANES;                            \
        const int64_t *nz = j->nz;                                                                    \
        const float *xc = j->xc;                                                                      \
        int64_t b = b0;                                                                               \
        if (bsz == 1) {                                                                               \
            /* four blocks at once: four independent chains of adds, each in t order */              \
            for (; b + 4 <= b1; b += 4) {                                                             \
                const float *w0 = j->approx + b * line, *w1 = w0 + line, *w2 = w1 + line, *w3 = w2 + line; \
                v8 a0 = {0}, a1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0}, e0 = {0}, e1 = {0};    \
                for (int64_t i = 0; i < L; i++) {                                                     \
                    const int64_t o = nz[i] * LANES;                                                  \
                    const v8 v = (v8){0} + xc[i];                                                     \
                    a0 += *(const v8u *)(w0 + o) * v; a1 += *(const v8u *)(w0 + o + 8) * v;           \
                    c0 += *(const v8u *)(w1 + o) * v; c1 += *(const v8u *)(w1 + o + 8) * v;           \
                    d0 += *(const v8u *)(w2 + o) * v; d1 += *(const v8u *)(w2 + o + 8) * v;           \
                    e0 += *(const v8u *)(w3 + o) * v; e1 += *(const v8u *)(w3 + o + 8) * v;           \
                }                                                                                     \
                v8u *p = (v8u *)(j->part + b * LANES);                                                \
                p[0] = a0; p[1] = a1; p[2] = c0; p[3] = c1; p[4] = d0; p[5] = d1; p[6] = e0; p[7] = e1; \
            }                                                                                         \
            for (; b < b1; b++) {                                                                     \
                const float *w0 = j->approx + b * line;                                               \
                v8 a0 = {0}, a1 = {0};                                                                \
                for (int64_t i = 0; i < L; i++) {                                                     \
                    const int64_t o = nz[i] * LANES;                                                  \
                    const v8 v = (v8){0} + xc[i];                                                     \
                    a0 += *(const v8u *)(w0 + o) * v; a1 += *(const v8u *)(w0 + o + 8) * v;           \
                }                                                                                     \
                v8u *p = (v8u *)(j->part + b * LANES);                                                \
                p[0] = a0; p[1] = a1;                                                                 \
            }                                                                                         \
            return;                                                                                   \
        }                                                                                             \
        for (; b < b1; b++) {                                                                         \
            const float *w0 = j->approx + b * line;                                                   \
            for (int64_t s = 0; s < bsz; s++) memset(j->part + s * j->nb16 + b * LANES, 0, LINE_BYTES); \
            for (int64_t i = 0; i < L; i++) {                                                         \
                const int64_t o = nz[i] * LANES;                                                      \
                const v8 wa = *(const v8u *)(w0 + o), wb = *(const v8u *)(w0 + o + 8);                \
                const float *xv = xc + i * bsz;                                                       \
                for (int64_t s = 0; s < bsz; s++) {                                                   \
                    v8u *p = (v8u *)(j->part + s * j->nb16 + b * LANES);                              \
                    const v8 v = (v8){0} + xv[s];                                                     \
                    p[0] += wa * v;                                                                   \
                    p[1] += wb * v;                                                                   \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }

/* -- refinement: y[s, j] = (p[s, j] + rest[j] . xr[s]) + b[j] for the chosen rows ---------- */
typedef struct refine_job {
    const float *rest, *xr, *part, *bias;
    const int64_t *rows;
    int64_t kr, bsz, n, nb16;
    float *y;
} refine_job;

#define DEFINE_REFINE(NAME, ATTR)                                                                     \
    ATTR static void NAME(void *ctx, int64_t i0, int64_t i1) {                                        \
        const refine_job *j = ctx;                                                                    \
        const int64_t kr = j->kr;                                                                     \
        for (int64_t i = i0; i < i1; i++) {                                                           \
            const int64_t row = j->rows[i];                                                           \
            const float *w = j->rest + row * kr;                                                      \
            if (i + 1 < i1) __builtin_prefetch(j->rest + j->rows[i + 1] * kr);                        \
            for (int64_t s = 0; s < j->bsz; s++) {                                                    \
                const float *x = j->xr + s * kr;                                                      \
                v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                            \
                int64_t t = 0;                                                                        \
                for (; t + 32 <= kr; t += 32) {                                                       \
                    s0 += *(const v8u *)(w + t) * *(const v8u *)(x + t);                              \
                    s1 += *(const v8u *)(w + t + 8) * *(const v8u *)(x + t + 8);                      \
                    s2 += *(const v8u *)(w + t + 16) * *(const v8u *)(x + t + 16);                    \
                    s3 += *(const v8u *)(w + t + 24) * *(const v8u *)(x + t + 24);                    \
                }                                                                                     \
                for (; t + 8 <= kr; t += 8) s0 += *(const v8u *)(w + t) * *(const v8u *)(x + t);     \
                v8 sv = (s0 + s1) + (s2 + s3);                                                        \
                float r = ((sv[0] + sv[4]) + (sv[1] + sv[5])) + ((sv[2] + sv[6]) + (sv[3] + sv[7])); \
                for (; t < kr; t++) r += w[t] * x[t];                                                 \
                j->y[s * j->n + row] = (j->part[s * j->nb16 + row] + r) + j->bias[row];               \
            }                                                                                         \
        }                                                                                             \
    }

DEFINE_APPROX(approx_base, )
DEFINE_REFINE(refine_base, )

#if defined(__x86_64__) && defined(__GNUC__)
DEFINE_APPROX(approx_avx2, __attribute__((target("avx2"))))
DEFINE_REFINE(refine_avx2, __attribute__((target("avx2,fma"))))
#define have_avx2 aipn_cpu_has_avx2_fma
#define PICK(base, avx2) (have_avx2() ? (avx2) : (base))
#else
#define PICK(base, avx2) (base)
#endif

/* est = float32(scale) * p + b, as numpy computes it (no FMA) */
NOFMA static void estimates(const float *part, int64_t nb16, int64_t bsz, int64_t n, float scale,
                            const float *bias, float *y) {
    for (int64_t s = 0; s < bsz; s++) {
        const float *p = part + s * nb16;
        float *o = y + s * n;
        for (int64_t j = 0; j < n; j++) o[j] = scale * p[j] + bias[j];
    }
}

/* a is better than b: larger value first (NaN last), then smaller index */
static inline int better(float va, int64_t ia, float vb, int64_t ib) {
    if (isnan(va)) return isnan(vb) && ia < ib;
    if (isnan(vb)) return 1;
    return va > vb || (va == vb && ia < ib);
}

/* -- scratch -------------------------------------------------------------------------------- */
typedef struct scratch_map { size_t xc, nz, xr, part, rows, mark, topi, topv, zero, total; } scratch_map;

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

static scratch_map layout(const aip_fc_layer *l, int64_t bsz) {
    scratch_map s;
    size_t o = 0;
    int64_t kr = l->kdim - l->k;
    s.xc = o; o += up64((size_t)(l->k * bsz) * sizeof(float));
    s.nz = o; o += up64((size_t)l->k * sizeof(int64_t));
    s.xr = o; o += up64((size_t)(kr * bsz) * sizeof(float));
    s.part = o; o += up64((size_t)(bsz * l->nb * LANES) * sizeof(float));
    s.rows = o; o += up64((size_t)l->n * sizeof(int64_t));
    s.mark = o; o += up64((size_t)l->n);
    s.topi = o; o += up64((size_t)l->n * sizeof(int64_t));
    s.topv = o; o += up64((size_t)l->n * sizeof(float));
    s.zero = o; o += up64((size_t)l->n * sizeof(float));
    s.total = o;
    return s;
}

size_t aip_fc_scratch_bytes(const aip_fc_layer *l, int64_t batch) { return layout(l, batch).total; }

void aip_fc_run(pool *p, const aip_fc_layer *l, const aip_fc_knobs *kn, const float *x, int64_t bsz, float *y,
                void *scratch, aip_fc_counts *c) {
    const int64_t n = l->n, kdim = l->kdim, k = l->k, kr = kdim - k, nb = l->nb, nb16 = nb * LANES;
    scratch_map sm = layout(l, bsz);
    uint8_t *base = scratch;
    float *xc = (float *)(base + sm.xc), *xr = (float *)(base + sm.xr), *part = (float *)(base + sm.part);
    int64_t *nz = (int64_t *)(base + sm.nz), *rows = (int64_t *)(base + sm.rows), *topi = (int64_t *)(base + sm.topi);
    uint8_t *mark = base + sm.mark;
    float *topv = (float *)(base + sm.topv);
    const float *bias = l->bias;
    if (!bias) {
        float *z = (float *)(base + sm.zero);
        memset(z, 0, (size_t)n * sizeof(float));
        bias = z;
    }

    /* 1. the kept inputs of the subset, values laid out L x B */
    int64_t L = 0;
    for (int64_t t = 0; t < k; t++) {
        const int64_t col = l->perm[t];
        int keep = !kn->skip_zeros;
        for (int64_t s = 0; s < bsz && !keep; s++) keep = x[s * kdim + col] != 0.0f;
        if (!keep) continue;
        for (int64_t s = 0; s < bsz; s++) xc[L * bsz + s] = x[s * kdim + col];
        nz[L++] = t;
    }

    /* 2. approximate pass */
    approx_job aj = {l->approx, k, L, bsz, nb16, nz, xc, part};
    int64_t grain = 1 + (int64_t)(65536 / ((L + 1) * LINE_BYTES)); /* at least ~64 KB a chunk */
    pool_for(p, nb, grain < 4 ? 4 : grain, PICK(approx_base, approx_avx2), &aj);

    /* 3. estimates */
    estimates(part, nb16, bsz, n, l->scale, bias, y);

    /* 4. rows */
    int64_t nrows = 0;
    if (kn->approx || kr == 0) {
        if (kr == 0)
            for (int64_t j = 0; j < n; j++) rows[nrows++] = j;
    } else if (kn->role == AIP_ROLE_RELU) {
        const float th = kn->theta;
        for (int64_t j = 0; j < n; j++)
            for (int64_t s = 0; s < bsz; s++)
                if (y[s * n + j] > th) { rows[nrows++] = j; break; }
    } else if (kn->role == AIP_ROLE_FINAL) {
        int64_t m = kn->refine < n ? kn->refine : n;
        if (m >= n) {
            for (int64_t j = 0; j < n; j++) rows[nrows++] = j;
        } else {
            memset(mark, 0, (size_t)n);
            for (int64_t s = 0; s < bsz; s++) {
                const float *e = y + s * n;
                int64_t cnt = 0;
                for (int64_t j = 0; j < n; j++) {
                    float v = e[j];
                    if (cnt == m && !better(v, j, topv[m - 1], topi[m - 1])) continue;
                    int64_t pos = cnt < m ? cnt++ : m - 1;
                    while (pos > 0 && better(v, j, topv[pos - 1], topi[pos - 1])) {
                        topv[pos] = topv[pos - 1];
                        topi[pos] = topi[pos - 1];
                        pos--;
                    }
                    topv[pos] = v;
                    topi[pos] = j;
                }
                for (int64_t i = 0; i < cnt; i++) mark[topi[i]] = 1;
            }
            for (int64_t j = 0; j < n; j++)
                if (mark[j]) rows[nrows++] = j;
        }
    } else {
        for (int64_t j = 0; j < n; j++) rows[nrows++] = j;
    }

    /* 5. refinement */
    if (nrows && kr) {
        for (int64_t s = 0; s < bsz; s++)
            for (int64_t t = 0; t < kr; t++) xr[s * kr + t] = x[s * kdim + l->perm[k + t]];
        refine_job rj = {l->rest, xr, part, bias, rows, kr, bsz, n, nb16, y};
        int64_t rg = 1 + (int64_t)(32768 / (kr * 4 + 1));
        pool_for(p, nrows, rg, PICK(refine_base, refine_avx2), &rj);
    } else if (nrows) {
        for (int64_t i = 0; i < nrows; i++)
            for (int64_t s = 0; s < bsz; s++) y[s * n + rows[i]] = part[s * nb16 + rows[i]] + bias[rows[i]];
    }

    /* 6. relu */
    if (kn->role == AIP_ROLE_RELU) {
        if (!kn->approx) {
            memset(mark, 0, (size_t)n);
            for (int64_t i = 0; i < nrows; i++) mark[rows[i]] = 1;
            for (int64_t s = 0; s < bsz; s++)
                for (int64_t j = 0; j < n; j++)
                    if (!mark[j]) y[s * n + j] = 0.0f;
        }
        for (int64_t i = 0; i < bsz * n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
    } else if (kn->act != ACT_NONE) { /* Clip, LeakyRelu of a dense (or final) layer */
        act_inplace(p, y, bsz * n, kn->act, kn->p0, kn->p1);
    }

    /* counts */
    uint64_t B = (uint64_t)bsz, macs = (uint64_t)L * (uint64_t)n * B + (uint64_t)nrows * (uint64_t)kr * B;
    c->macs = macs;
    c->macs_skipped = B * (uint64_t)n * (uint64_t)kdim - macs;
    c->weight_bytes_read = (uint64_t)L * (uint64_t)nb * LINE_BYTES + (uint64_t)nrows * (uint64_t)kr * 4 +
                           (l->bias ? 4 * (uint64_t)n : 0);
    c->outputs_refined = (uint64_t)nrows * B;
    c->rows_refined = (uint64_t)nrows;
}
