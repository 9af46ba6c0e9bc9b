/* Dense GEMM and the FC product (mirror of kernels/gemm.py).
 *
 * sgemm is a Goto-style blocked GEMM of our own: op(B) is packed into kc x NR panels,
 * op(A) into MR x kc panels (transposes cost nothing: packing reads through strides),
 * and a 6 x 16 register-tiled micro-kernel written with GCC vector extensions
 * accumulates in 12 8-float registers. The same source is compiled twice: once for the
 * build's baseline ISA (SSE2 on x86-64, NEON on AArch64) and, on x86-64, once with
 * target("avx2,fma"), chosen at run time with __builtin_cpu_supports. Nothing assumes
 * AVX-512.
 *
 * fc_f32 is the FC layer at small batch: a matrix-vector product that streams the
 * N x K weights once (memory-bound), several rows of x per weight row.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { MR = 6, NR = 16, KC = 256, MC = 96, NC = 2048 };

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

#define INLINE static inline __attribute__((always_inline))

INLINE void pack_a(int64_t mc, int64_t kc, const float *a, int64_t lda, int trans, float *dst) {
    /* dst: panels of MR rows, each kc x MR (k-major) */
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        int64_t mr = mc - i0 < MR ? mc - i0 : MR;
        for (int64_t k = 0; k < kc; k++) {
            for (int64_t i = 0; i < mr; i++)
                dst[k * MR + i] = trans ? a[k * lda + i0 + i] : a[(i0 + i) * lda + k];
            for (int64_t i = mr; i < MR; i++) dst[k * MR + i] = 0.0f;
        }
        dst += kc * MR;
    }
}

INLINE void pack_b(int64_t kc, int64_t nc, const float *b, int64_t ldb, int trans, float *dst) {
    /* dst: panels of NR columns, each kc x NR */
    for (int64_t j0 = 0; j0 < nc; j0 += NR) {
        int64_t nr = nc - j0 < NR ? nc - j0 : NR;
        if (!trans && nr == NR) {
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * NR, b + k * ldb + j0, NR * sizeof(float));
        } else {
            for (int64_t k = 0; k < kc; k++) {
                for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = trans ? b[(j0 + j) * ldb + k] : b[k * ldb + j0 + j];
                for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
            }
        }
        dst += kc * NR;
    }
}

INLINE void ukernel(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t mr, int64_t nr, int acc) {
    v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int64_t k = 0; k < kc; k++) {
        v8 b0 = *(const v8 *)(b + k * NR), b1 = *(const v8 *)(b + k * NR + 8);
        const float *ak = a + k * MR;
        v8 a0 = (v8){0} + ak[0], a1 = (v8){0} + ak[1], a2 = (v8){0} + ak[2];
        c00 += a0 * b0; c01 += a0 * b1; c10 += a1 * b0; c11 += a1 * b1; c20 += a2 * b0; c21 += a2 * b1;
        v8 a3 = (v8){0} + ak[3], a4 = (v8){0} + ak[4], a5 = (v8){0} + ak[5];
        c30 += a3 * b0; c31 += a3 * b1; c40 += a4 * b0; c41 += a4 * b1; c50 += a5 * b0; c51 += a5 * b1;
    }
    v8 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            v8u *p0 = (v8u *)(c + i * ldc), *p1 = (v8u *)(c + i * ldc + 8);
            if (acc) { *p0 += rows[i][0]; *p1 += rows[i][1]; }
            else { *p0 = rows[i][0]; *p1 = rows[i][1]; }
        }
        return;
    }
    float tmp[MR][NR] __attribute__((aligned(64)));
    memcpy(tmp, rows, sizeof tmp);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) c[i * ldc + j] = acc ? c[i * ldc + j] + tmp[i][j] : tmp[i][j];
}

typedef struct gemm_job {
    int64_t m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float *c;
    int ta, tb, acc, split_n;
    int64_t unit;
    /* operands packed once for all threads (NULL: each task packs its own), in the layout
     * of gemm_pack_a / gemm_pack_b: per K block of kstep, whole panels of the operand */
    const float *pa_all, *pb_all;
    int64_t mpad, npad;
} gemm_job;

INLINE int64_t kstep_of(int64_t k) {
    int64_t nb = (k + KC - 1) / KC;
    return (k + nb - 1) / nb;
}

/* one thread's share: rows [m0, m1) x cols [n0, n1) of C, with micro-kernel UK */
#define DEFINE_GEMM_BLOCK(NAME, UK, ATTR)                                                              \
    ATTR static void NAME(const gemm_job *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float *pa, float *pb) { \
        int64_t kstep = kstep_of(g->k);                                                                \
        for (int64_t jc = n0; jc < n1; jc += NC) {                                                     \
            int64_t nc = n1 - jc < NC ? n1 - jc : NC;                                                  \
            for (int64_t pc = 0; pc < g->k; pc += kstep) {                                             \
                int64_t kc = g->k - pc < kstep ? g->k - pc : kstep;                                    \
                const float *bpk = pb;                                                                 \
                if (g->pb_all) bpk = g->pb_all + pc * g->npad + jc * kc;                               \
                else {                                                                                 \
                    const float *bp = g->tb ? g->b + jc * g->ldb + pc : g->b + pc * g->ldb + jc;       \
                    pack_b(kc, nc, bp, g->ldb, g->tb, pb);                                             \
                }                                                                                      \
                int acc = g->acc || pc > 0;                                                            \
                for (int64_t ic = m0; ic < m1; ic += MC) {                                             \
                    int64_t mc = m1 - ic < MC ? m1 - ic : MC;                                          \
                    const float *apk = pa;                                                             \
                    if (g->pa_all) apk = g->pa_all + pc * g->mpad + ic * kc;                           \
                    else {                                                                             \
                        const float *ap = g->ta ? g->a + pc * g->lda + ic : g->a + ic * g->lda + pc;   \
                        pack_a(mc, kc, ap, g->lda, g->ta, pa);                                         \
                    }                                                                                  \
                    for (int64_t jr = 0; jr < nc; jr += NR)                                            \
                        for (int64_t ir = 0; ir < mc; ir += MR)                                        \
                            UK(kc, apk + ir * kc, bpk + jr * kc, g->c + (ic + ir) * g->ldc + jc + jr, g->ldc, \
                               mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, acc);         \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* the same 6 x 16 tile with AVX2 intrinsics: broadcasts straight from memory keep all
 * 12 accumulators in registers (the vector-extension version spills two on x86) */
__attribute__((target("avx2,fma"), always_inline)) static inline void ukernel_avx2(
    int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t mr, int64_t nr, int acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), t;
        t = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(t, b0, c00); c01 = _mm256_fmadd_ps(t, b1, c01);
        t = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(t, b0, c10); c11 = _mm256_fmadd_ps(t, b1, c11);
        t = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(t, b0, c20); c21 = _mm256_fmadd_ps(t, b1, c21);
        t = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(t, b0, c30); c31 = _mm256_fmadd_ps(t, b1, c31);
        t = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(t, b0, c40); c41 = _mm256_fmadd_ps(t, b1, c41);
        t = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(t, b0, c50); c51 = _mm256_fmadd_ps(t, b1, c51);
    }
    __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            float *p = c + i * ldc;
            if (acc) {
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), rows[i][0]));
                _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), rows[i][1]));
            } else {
                _mm256_storeu_ps(p, rows[i][0]);
                _mm256_storeu_ps(p + 8, rows[i][1]);
            }
        }
        return;
    }
    float tmp[MR][NR] __attribute__((aligned(64)));
    for (int i = 0; i < MR; i++) { _mm256_store_ps(tmp[i], rows[i][0]); _mm256_store_ps(tmp[i] + 8, rows[i][1]); }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++) c[i * ldc + j] = acc ? c[i * ldc + j] + tmp[i][j] : tmp[i][j];
}
DEFINE_GEMM_BLOCK(gemm_block_avx2, ukernel_avx2, __attribute__((target("avx2,fma"))))
/* CPU check shared by every kernel file (declared in internal.h), cached after the first call */
int aipn_cpu_has_avx2_fma(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        __builtin_cpu_init();
        /* AIPNET_C_GENERIC=1 runs the portable kernels on any CPU: how the tests check the
         * code that AArch64 and pre-AVX2 x86 run */
        const char *generic = getenv("AIPNET_C_GENERIC");
        r = !(generic && generic[0] == '1') && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}
/* the same for AVX-512F + DQ (the 64-bit multiply), off whenever AVX2 is */
int aipn_cpu_has_avx512dq(void) {
    static int v = -1;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        r = aipn_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}
#define have_avx2 aipn_cpu_has_avx2_fma
#define HAVE_DISPATCH 1
#endif

DEFINE_GEMM_BLOCK(gemm_block_base, ukernel, )

const char *gemm_isa(void) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) return "avx2+fma (runtime dispatch)";
#endif
#if defined(__AVX2__)
    return "avx2 (build flags)";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "baseline";
#endif
}

static void gemm_task(void *ctx, int64_t b, int64_t e) {
    const gemm_job *g = ctx;
    int64_t m0 = 0, m1 = g->m, n0 = 0, n1 = g->n;
    if (g->split_n) { n0 = b * g->unit; n1 = e * g->unit < g->n ? e * g->unit : g->n; }
    else { m0 = b * g->unit; m1 = e * g->unit < g->m ? e * g->unit : g->m; }
    size_t kc = (size_t)(g->k < KC ? g->k : KC);
    size_t na = g->pa_all ? 0 : (size_t)MC * kc + 64, nb = g->pb_all ? 0 : (size_t)NC * kc + 64;
    float *buf = aligned_alloc(64, ((na + nb) * sizeof(float) + 63) / 64 * 64 + 64);
    if (!buf) abort(); /* allocation of a few MB failed: nothing sensible left to do */
    float *pa = buf, *pb = buf + (na + 15) / 16 * 16;
#ifdef HAVE_DISPATCH
    if (have_avx2()) gemm_block_avx2(g, m0, m1, n0, n1, pa, pb);
    else
#endif
        gemm_block_base(g, m0, m1, n0, n1, pa, pb);
    free(buf);
}

/* -- whole operands packed once ------------------------------------------------------------ */
int64_t gemm_kstep(int64_t k) { return kstep_of(k); }
size_t gemm_packed_a_floats(int64_t m, int64_t k) { return (size_t)((m + MR - 1) / MR * MR) * (size_t)k; }
static size_t gemm_packed_b_floats(int64_t n, int64_t k) { return (size_t)((n + NR - 1) / NR * NR) * (size_t)k; }

typedef struct packall_job { int64_t rows, k, ld, np; const float *src; int trans, is_b; float *dst; } packall_job;

/* unit u: K block u / np, panel u % np */
static void packall_task(void *ctx, int64_t b, int64_t e) {
    const packall_job *j = ctx;
    int64_t kstep = kstep_of(j->k), R = j->is_b ? NR : MR, pad = j->np * R;
    for (int64_t u = b; u < e; u++) {
        int64_t pc = (u / j->np) * kstep, i = (u % j->np) * R;
        int64_t kc = j->k - pc < kstep ? j->k - pc : kstep, r = j->rows - i < R ? j->rows - i : R;
        float *d = j->dst + pc * pad + i * kc;
        if (j->is_b) pack_b(kc, r, j->trans ? j->src + i * j->ld + pc : j->src + pc * j->ld + i, j->ld, j->trans, d);
        else pack_a(r, kc, j->trans ? j->src + pc * j->ld + i : j->src + i * j->ld + pc, j->ld, j->trans, d);
    }
}

static void pack_all(pool *p, int64_t rows, int64_t k, const float *src, int64_t ld, int trans, int is_b, float *dst) {
    int64_t R = is_b ? NR : MR, np = (rows + R - 1) / R, nblk = (k + kstep_of(k) - 1) / kstep_of(k);
    packall_job j = {rows, k, ld, np, src, trans, is_b, dst};
    pool_for(p, np * nblk, 4, packall_task, &j);
}

void gemm_pack_a(pool *p, int64_t m, int64_t k, const float *a, int64_t lda, int trans_a, float *dst) {
    pack_all(p, m, k, a, lda, trans_a, 0, dst);
}

void sgemm(pool *p, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int trans_a, const float *b,
           int64_t ldb, int trans_b, float *c, int64_t ldc, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    gemm_job g = {m, n, k, lda, ldb, ldc, a, b, c, trans_a, trans_b, accumulate, 0, 0, NULL, NULL, 0, 0};
    int t = pool_threads(p);
    /* split the larger dimension; units are whole register tiles */
    int64_t nunits = (n + NR - 1) / NR, munits = (m + MR - 1) / MR;
    g.mpad = munits * MR;
    g.npad = nunits * NR;
    float *shared = NULL;
    if (nunits >= munits || nunits >= 2 * t) {
        g.split_n = 1;
        g.unit = NR;
        int64_t grain = 1 + nunits / (4 * t) > 4 ? 4 : 1;
        /* several tasks: A packed once for all of them (else each would pack all of A) */
        if (t > 1 && nunits > grain && gemm_packed_a_floats(m, k) <= ((size_t)1 << 26) &&
            (shared = aligned_alloc(64, (gemm_packed_a_floats(m, k) * sizeof(float) + 63) / 64 * 64))) {
            pack_all(p, m, k, a, lda, trans_a, 0, shared);
            g.pa_all = shared;
        }
        pool_for(p, nunits, grain, gemm_task, &g);
    } else {
        g.unit = MR;
        if (t > 1 && munits > 1 && gemm_packed_b_floats(n, k) <= ((size_t)1 << 26) &&
            (shared = aligned_alloc(64, (gemm_packed_b_floats(n, k) * sizeof(float) + 63) / 64 * 64))) {
            pack_all(p, n, k, b, ldb, trans_b, 1, shared);
            g.pb_all = shared;
        }
        pool_for(p, munits, 1, gemm_task, &g);
    }
    free(shared);
}

/* -- FC at small batch: y[r, j] = x[r, :] . w[j, :] ----------------------------------------- */
INLINE float dot(const float *a, const float *b, int64_t k) {
    v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        s0 += *(const v8u *)(a + i) * *(const v8u *)(b + i);
        s1 += *(const v8u *)(a + i + 8) * *(const v8u *)(b + i + 8);
        s2 += *(const v8u *)(a + i + 16) * *(const v8u *)(b + i + 16);
        s3 += *(const v8u *)(a + i + 24) * *(const v8u *)(b + i + 24);
    }
    v8 s = (s0 + s1) + (s2 + s3);
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < k; i++) r += a[i] * b[i];
    return r;
}

typedef struct fc_job { const float *x, *w; float *y; int64_t rows, k, n; } fc_job;

INLINE void fc_rows(const fc_job *f, int64_t b, int64_t e) {
    for (int64_t j = b; j < e; j++)
        for (int64_t r = 0; r < f->rows; r++) f->y[r * f->n + j] = dot(f->x + r * f->k, f->w + j * f->k, f->k);
}
#ifdef HAVE_DISPATCH
__attribute__((target("avx2,fma"))) static void fc_rows_avx2(const fc_job *f, int64_t b, int64_t e) { fc_rows(f, b, e); }
#endif
static void fc_task(void *ctx, int64_t b, int64_t e) {
#ifdef HAVE_DISPATCH
    if (have_avx2()) { fc_rows_avx2(ctx, b, e); return; }
#endif
    fc_rows(ctx, b, e);
}

void fc_f32(pool *p, const float *x, int64_t rows, int64_t k, const float *w, int64_t n, float *y) {
    if (rows > 4) {
        sgemm(p, rows, n, k, x, k, 0, w, k, 1, y, n, 0);
        return;
    }
    fc_job f = {x, w, y, rows, k, n};
    pool_for(p, n, 16, fc_task, &f);
}
