/* DrowsyNet (mirror of kernels/drowsy.py): the counter-based mask generator and masked
 * 2-D convolution that computes the kept outputs only.
 *
 * Masks: bit for bit the generator documented in kernels/drowsy.py (splitmix64 over
 * seed, image, layer and unit; unit numbering per granularity; 16 x 64 tiles), four units
 * at a time with AVX2, eight with AVX-512DQ. Dropped outputs are 0 whatever the fused
 * activation; survivors are act(acc + bias) * scale.
 *
 * Kernels, by granularity (each loops over kept work only):
 *   tile, pixel, channel: the panel engine of conv_panels.c, the exact conv's own: the
 *            patches of the pixels to compute gathered into panels of K x 16, multiplied
 *            by the weight rows to compute read in place (6 x 16 register tiles), the
 *            epilogue applied in registers:
 *              tile     per 64-pixel block, the rows of its kept tiles;
 *              pixel    blocks of the kept pixels only, every row, results scattered back
 *                       to their pixels;
 *              channel  every pixel, the kept rows only, so a dropped row costs nothing
 *                       but its zeroing;
 *   neuron   drowsy_neuron.c (eight dot products vectorised over K at a time).
 *   depthwise (group == C, one input channel per group) a direct kernel over kept outputs.
 * The mask generator has AVX2 and AVX-512DQ versions chosen at run time as in gemm.c;
 * nothing assumes either. Threads: the pthread pool. */
#include <math.h>
#include <string.h>

#include "drowsy_internal.h"

/* -- the mask generator (kernels/drowsy.py docstring) ------------------------------------ */
#define GAMMA 0x9E3779B97F4A7C15ULL

/* mix64 but its last step z ^ (z >> 31), which leaves bits 40..63 as they are: all a unit's
 * keep test reads */
static inline uint64_t mix64_high(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    return (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
}
static inline uint64_t mix64(uint64_t z) {
    z = mix64_high(z);
    return z ^ (z >> 31);
}

uint64_t drowsy_key(uint64_t seed, uint64_t image, uint64_t layer) {
    uint64_t k = mix64(GAMMA * (seed + 1));
    k = mix64(k ^ (GAMMA * (image + 1)));
    return mix64(k ^ (GAMMA * (layer + 1)));
}

uint32_t drowsy_threshold(double p) {
    if (!(p > 0.0)) return 0;
    if (p >= 1.0) return 1u << 24;
    return (uint32_t)floor(p * 16777216.0);
}

int64_t drowsy_unit_count(int gran, int64_t m, int64_t p) {
    switch (gran) {
    case DROWSY_NEURON: return m * p;
    case DROWSY_PIXEL: return p;
    case DROWSY_CHANNEL: return m;
    default: return ((m + DROWSY_TILE_C - 1) / DROWSY_TILE_C) * ((p + DROWSY_TILE_P - 1) / DROWSY_TILE_P);
    }
}

/* unit u's hash h = mix64(key ^ GAMMA (u + 1)) is kept when h >> 40 >= thr */
INLINE int unit_kept(uint64_t key, uint32_t thr, uint64_t u) {
    return (mix64_high(key ^ (GAMMA * (u + 1))) >> 40) >= thr;
}

/* the flags as bytes (keep) or, for the neuron kernel, as bits (bits: unit u at bit u % 64
 * of word u / 64, which reads an item's channel row as one 64-bit set); tasks are over
 * words of 64 units either way */
typedef struct units_job { uint64_t key; uint32_t thr; uint8_t *keep; uint64_t *bits; int64_t n; } units_job;

INLINE void units_scalar(const units_job *j, int64_t b, int64_t e) {
    for (int64_t w = b; w < e; w++) {
        int64_t u0 = 64 * w, u1 = u0 + 64 < j->n ? u0 + 64 : j->n;
        uint64_t v = 0;
        for (int64_t u = u0; u < u1; u++) {
            int k = unit_kept(j->key, j->thr, (uint64_t)u);
            if (j->keep) j->keep[u] = (uint8_t)k;
            v |= (uint64_t)k << (u - u0);
        }
        if (j->bits) j->bits[w] = v;
    }
}

#ifdef HAVE_DISPATCH
/* the keep bytes of up to 8 units from their bits: byte l = bit l of m (x86: little
 * endian), each bit spread to the top of its byte, then shifted down */
INLINE uint64_t bits_to_bytes(uint64_t m) {
    return ((((m * 0x0101010101010101ULL) & 0x8040201008040201ULL) + 0x7f7f7f7f7f7f7f7fULL)
            & 0x8080808080808080ULL) >> 7;
}
/* the same bits four units at a time. AVX2 has no 64-bit multiply: the low 64 bits of
 * z c are zl cl + ((zl ch + zh cl) << 32) from 32 x 32 -> 64-bit products */
AVX2_ATTR INLINE __m256i mul64_by(__m256i z, uint64_t c) {
    __m256i cl = _mm256_set1_epi64x((int64_t)(c & 0xffffffffu)), ch = _mm256_set1_epi64x((int64_t)(c >> 32));
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(z, ch), _mm256_mul_epu32(_mm256_srli_epi64(z, 32), cl));
    return _mm256_add_epi64(_mm256_mul_epu32(z, cl), _mm256_slli_epi64(cross, 32));
}
/* bit l: unit_kept of lane l, whose GAMMA (u + 1) is g's lane l */
AVX2_ATTR INLINE uint32_t kept4(__m256i g, __m256i key, __m256i thr) {
    __m256i z = _mm256_xor_si256(key, g);
    z = mul64_by(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
    z = mul64_by(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
    return (uint32_t)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_srli_epi64(z, 40), thr)));
}
AVX2_ATTR static void units_avx2(const units_job *j, int64_t b, int64_t e) {
    /* lane l: unit u = 64 b + l, then + 4 per step; GAMMA (u + 1) advances by 4 GAMMA (an add,
     * not a multiply) */
    uint64_t u = 64 * (uint64_t)b;
    __m256i g = _mm256_set_epi64x((int64_t)(GAMMA * (u + 4)), (int64_t)(GAMMA * (u + 3)),
                                  (int64_t)(GAMMA * (u + 2)), (int64_t)(GAMMA * (u + 1)));
    __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * GAMMA)), key = _mm256_set1_epi64x((int64_t)j->key);
    __m256i thr = _mm256_set1_epi64x((int64_t)j->thr - 1);   /* h >= thr: h > thr - 1 (h < 2^24, signed compare) */
    int64_t w = b;
    for (; w < e && 64 * w + 64 <= j->n; w++) {
        uint64_t v = 0;
        for (int i = 0; i < 16; i++, g = _mm256_add_epi64(g, g4)) {
            uint32_t m = kept4(g, key, thr);
            v |= (uint64_t)m << (4 * i);
            if (j->keep) {
                uint64_t by = bits_to_bytes(m);
                memcpy(j->keep + 64 * w + 4 * i, &by, 4);
            }
        }
        if (j->bits) j->bits[w] = v;
    }
    units_scalar(j, w, e);
}

/* AVX-512DQ has the 64-bit multiply that AVX2 lacks (vpmullq), and twice the lanes. That
 * matters for the neuron granularity, a unit per output (0.5 M per VGG-f image): on a Zen 4
 * the mask went from 1.91% to 0.83% of a C neuron run's samples at p = 0.5. Chosen at run
 * time like the AVX2 kernels, and off whenever they are (AIPNET_C_GENERIC=1). */
#define AVX512_ATTR __attribute__((target("avx512f,avx512dq")))
AVX512_ATTR static void units_avx512(const units_job *j, int64_t b, int64_t e) {
    /* lane l: unit u = 64 b + l, then + 8 per step (GAMMA (u + 1) advances by 8 GAMMA) */
    uint64_t u = 64 * (uint64_t)b;
    __m512i g = _mm512_set_epi64((int64_t)(GAMMA * (u + 8)), (int64_t)(GAMMA * (u + 7)), (int64_t)(GAMMA * (u + 6)),
                                 (int64_t)(GAMMA * (u + 5)), (int64_t)(GAMMA * (u + 4)), (int64_t)(GAMMA * (u + 3)),
                                 (int64_t)(GAMMA * (u + 2)), (int64_t)(GAMMA * (u + 1)));
    __m512i g8 = _mm512_set1_epi64((int64_t)(8 * GAMMA)), key = _mm512_set1_epi64((int64_t)j->key);
    __m512i m1 = _mm512_set1_epi64((int64_t)0xBF58476D1CE4E5B9ULL), m2 = _mm512_set1_epi64((int64_t)0x94D049BB133111EBULL);
    __m512i thr = _mm512_set1_epi64((int64_t)j->thr);
    int64_t w = b;
    for (; w < e && 64 * w + 64 <= j->n; w++) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++, g = _mm512_add_epi64(g, g8)) {
            __m512i z = _mm512_xor_si512(key, g);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), m1);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), m2);
            uint64_t m = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(z, 40), thr);
            v |= m << (8 * i);
            if (j->keep) {
                uint64_t by = bits_to_bytes(m);
                memcpy(j->keep + 64 * w + 8 * i, &by, 8);
            }
        }
        if (j->bits) j->bits[w] = v;
    }
    units_scalar(j, w, e);
}
#endif

static void units_task(void *ctx, int64_t b, int64_t e) {
#ifdef HAVE_DISPATCH
    if (aipn_cpu_has_avx512dq()) { units_avx512(ctx, b, e); return; }
    if (have_avx2()) { units_avx2(ctx, b, e); return; }
#endif
    units_scalar(ctx, b, e);
}

/* the keep flags of units 0 .. n - 1 as bytes (keep) or bits (bits, and a spare 0 word past
 * them, read by the neuron kernel's unaligned 64-bit sets); one of the two is NULL */
static void drowsy_keep_units(pool *p, uint64_t key, uint32_t thr, uint8_t *keep, uint64_t *bits, int64_t n) {
    units_job j = {key, thr, keep, bits, n};
    pool_for(p, (n + 63) / 64, 64, units_task, &j);
    if (bits) bits[(n + 63) / 64] = 0;
}
/* bytes of the unit mask: bits for the neuron kernel */
static size_t mask_bytes(int gran, int64_t n) {
    return ALIGN64(gran == DROWSY_NEURON ? (size_t)((n + 63) / 64 + 1) * 8 : (size_t)n);
}

/* -- depthwise: direct, kept outputs only -------------------------------------------------- */
INLINE int kept_at(const uint8_t *u, int gran, int64_t m, int64_t q, int64_t P, int64_t TB) {
    switch (gran) {
    case DROWSY_NEURON: return u[m * P + q];
    case DROWSY_PIXEL: return u[q];
    case DROWSY_CHANNEL: return u[m];
    default: return u[(m / DROWSY_TILE_C) * TB + q / DROWSY_TILE_P];
    }
}

typedef struct dwm_job { const djob *j; int gran; const float *w; int64_t TB; } dwm_job;
static void depthwise_task(void *ctx, int64_t b, int64_t e) {
    const dwm_job *d = ctx;
    const djob *j = d->j;
    const conv_params *cp = j->cp;
    int64_t mult = cp->m / cp->c, P = j->P;
    uint64_t done = 0;
    for (int64_t m = b; m < e; m++) {
        const float *xc = j->x + (m / mult) * cp->h * cp->w;
        const float *wk = d->w + m * cp->kh * cp->kw;
        float bb = j->bias ? j->bias[m] : 0.0f;
        for (int64_t yy = 0; yy < cp->oh; yy++)
            for (int64_t xx = 0; xx < cp->ow; xx++) {
                int64_t q = yy * cp->ow + xx;
                if (!kept_at(j->units, d->gran, m, q, P, d->TB)) continue;
                float acc = depthwise_tap_sum(cp, xc, wk, yy, xx);
                j->y[m * P + q] = apply(acc + bb, j->act, j->p0, j->p1) * j->scale;
                done++;
            }
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* -- scratch ------------------------------------------------------------------------------ */
static int panel_mode(int gran) {
    return gran == DROWSY_TILE ? PANEL_BLOCKS : gran == DROWSY_PIXEL ? PANEL_PIXELS : PANEL_SHARED;
}

/* the units' keep flags (mask_bytes), then the neuron kernel's scratch (per-thread slots for the pool's
 * threads), or the panel engine's state (panel_conv) and regions */
size_t conv_drowsy_scratch_bytes(const conv_params *cp, int gran, int threads) {
    size_t n = mask_bytes(gran, drowsy_unit_count(gran, cp->m, cp->oh * cp->ow));
    if (conv_is_depthwise(cp)) return n;
    if (gran == DROWSY_NEURON) return n + neuron_scratch_bytes(cp, threads);
    return n + ALIGN64(sizeof(panel_conv)) + panel_scratch_bytes(cp, panel_mode(gran));
}

/* -- the masked convolution ---------------------------------------------------------------- */
void conv2d_drowsy(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
                   void *scratch, int act, float p0, float p1, const drowsy_knobs *kn, int *wt_ready,
                   drowsy_counts *cnt) {
    int64_t cg = cp->c / cp->group, mg = cp->m / cp->group, P = cp->oh * cp->ow, K = cg * cp->kh * cp->kw;
    int64_t TB = (P + PANEL_BLK - 1) / PANEL_BLK, M = cp->m;
    int gran = kn->gran, dw = conv_is_depthwise(cp), panels = !dw && gran != DROWSY_NEURON;
    int64_t nunits = drowsy_unit_count(gran, M, P);
    uint8_t *units = scratch;
    void *nscratch = units + mask_bytes(gran, nunits);   /* the neuron kernel's own, or the panel engine's */
    panel_conv *pcp = nscratch;
    uint64_t done = 0;
    /* the neuron kernel's weights reordered once per layer (when constant) */
    if (gran == DROWSY_NEURON && !dw && !*wt_ready) {
        neuron_prepare_weights(p, cp, w, nscratch);
        if (kn->weights_const) *wt_ready = 1;
    }
    /* the panel engine's set-up, which depends on the shape only, done at the first call (the
     * scratch is the plan's, kept between runs, one run at a time): its geometry and, for
     * tile and channel, every pixel a slot, blocks of 64 consecutive ones */
    if (panels && !*wt_ready) {
        panel_bind(cp, panel_mode(gran), (uint8_t *)nscratch + ALIGN64(sizeof(panel_conv)), pcp);
        if (gran != DROWSY_PIXEL) {
            for (int64_t q = 0; q < P; q++) pcp->pix[q] = q;
            panel_slots(pcp, P);
        }
        *wt_ready = 1;
    }
    if (panels) {
        pcp->cp = cp;
        pcp->w = w; pcp->bias = bias; pcp->act = act; pcp->p0 = p0; pcp->p1 = p1; pcp->scale = kn->scale;
    }
    for (int64_t n = 0; n < cp->n; n++) {
        uint64_t image = kn->fixed ? 0 : kn->image0 + (uint64_t)n;
        int nrn = gran == DROWSY_NEURON && !dw;
        drowsy_keep_units(p, drowsy_key(kn->seed, image, kn->layer), kn->thr, nrn ? NULL : units,
                          nrn ? (uint64_t *)(void *)units : NULL, nunits);
        float *yn = y + n * M * P;
        djob j = {0};
        j.cp = cp; j.bias = bias; j.y = yn; j.units = units; j.ubits = (const uint64_t *)(void *)units; j.act = act; j.p0 = p0; j.p1 = p1;
        j.scale = kn->scale; j.K = K; j.P = P; j.done = &done;
        if (dw) {
            /* dropped outputs are 0: the kernel writes kept ones only */
            memset(yn, 0, (size_t)(M * P) * sizeof(float));
            j.x = x + n * cp->c * cp->h * cp->w;
            dwm_job d = {&j, gran, w, TB};
            pool_for(p, M, 1, depthwise_task, &d);
            continue;
        }
        /* pixel: the kept pixels, shared by the groups */
        if (gran == DROWSY_PIXEL) {
            int64_t npix = 0;
            for (int64_t q = 0; q < P; q++) if (units[q]) pcp->pix[npix++] = q;
            panel_slots(pcp, npix);
        }
        for (int64_t g = 0; g < cp->group; g++) {
            int64_t row0 = g * mg;
            j.x = x + (n * cp->c + g * cg) * cp->h * cp->w;
            j.row0 = row0; j.mg = mg;
            if (!panels) { neuron_conv_group(p, &j, nscratch); continue; }
            pcp->x = j.x; pcp->y = yn; pcp->row0 = row0;
            int32_t *rows = pcp->rowbuf;
            if (gran == DROWSY_PIXEL) {
                if (!pcp->nslot) { memset(yn + row0 * P, 0, (size_t)(mg * P) * sizeof(float)); continue; }
                for (int64_t i = 0; i < mg; i++) rows[i] = (int32_t)(row0 + i);
                for (int64_t b = 0; b < pcp->nblk; b++) pcp->nkept[b] = (int32_t)mg;
            } else if (gran == DROWSY_CHANNEL) {
                /* the kept rows, then the dropped ones (zeroed) */
                int64_t nk = 0, nz = mg;
                for (int64_t r = row0; r < row0 + mg; r++) rows[units[r] ? nk++ : --nz] = (int32_t)r;
                for (int64_t b = 0; b < pcp->nblk; b++) pcp->nkept[b] = (int32_t)nk;
            } else {
                /* per block, the rows of its kept tiles in this group, then the others */
                pcp->rstride = mg;
                for (int64_t b = 0; b < pcp->nblk; b++) {
                    int32_t *rb = rows + b * mg;
                    int64_t nk = 0, nz = mg;
                    for (int64_t r = row0; r < row0 + mg; r++) rb[units[(r / DROWSY_TILE_C) * TB + b] ? nk++ : --nz] = (int32_t)r;
                    pcp->nkept[b] = (int32_t)nk;
                }
            }
            pcp->rows = rows;
            done += panel_run(p, pcp);
        }
    }
    cnt->outputs = done;
    cnt->macs = done * (uint64_t)(dw ? cp->kh * cp->kw : K);
}
