/* DrowsyNet, neuron granularity (mirror of the neuron kernel in kernels/drowsy.py): masked
 * 2-D convolution that computes only the kept (channel, pixel) outputs of a random
 * per-neuron mask, eight dot products at a time. Called by conv2d_drowsy (drowsy.c) once per
 * image and group; the interface is in drowsy_internal.h. */
#include <string.h>

#include "drowsy_internal.h"

/* -- neuron: eight kept outputs at a time ------------------------------------------------ */
/* Layout. The input of the group is copied once into a zero-padded channels-last image xp
 * (Hp x Wp x cg, the padding made explicit), and the weights are reordered once per layer
 * to the same (tap row, tap column, channel) order, wn (M x Kn). Then the taps of output
 * pixel (oy, ox) on tap row i are the kw * cg contiguous floats at
 * xp + ((oy sh + i dh) Wp + ox sw) cg: a patch is kh contiguous segments of the image
 * itself, and no patch matrix is built ("direct" mode, when dw == 1 and kw * cg is a
 * multiple of 8). Otherwise (e.g. the 3-channel first layer) each patch is copied into a
 * row of Kn = K rounded up to 8 floats, zero-padded (one segment per pixel). Either way a
 * dot product is a whole number of 8-float vectors, no scalar tail.
 *
 * Work items: a run of at most NBP pixels of one output row x a chunk of NCN channels.
 * The item's kept outputs are listed in channel order and cut into groups of at most 8
 * outputs and at most 2 channels; one group is eight dot products vectorised over K that
 * share the loads of the two weight rows (10 vector loads per 8 FMAs), reduced once per
 * K chunk with a transpose-add. A K chunk is a few tap rows whose image region (the run's
 * pixels overlap on it) stays in L1 while the item's channels stream past it. */
enum { NBP = 16, NCN = 64, NREGION = 20 * 1024 };

typedef struct nlayout {
    int direct;
    int64_t Kn, L, nseg, xs;   /* K rounded, segment length, segments per patch, stride between segments */
    int64_t Hp, Wp, nbr;       /* padded image, runs per output row */
    int64_t sc;                /* segments per K chunk */
    const float *xp, *rows, *wn;
} nlayout;

static void neuron_layout(const conv_params *cp, nlayout *l) {
    int64_t cg = cp->c / cp->group, K = cg * cp->kh * cp->kw;
    l->direct = cp->dw == 1 && (cp->kw * cg) % 8 == 0;
    l->Kn = l->direct ? K : (K + 7) / 8 * 8;
    l->Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    l->Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
    l->nbr = (cp->ow + NBP - 1) / NBP;
    int64_t nb = (cp->ow + l->nbr - 1) / l->nbr, bytes;
    if (l->direct) {
        l->L = cp->kw * cg; l->nseg = cp->kh; l->xs = cp->dh * l->Wp * cg;
        bytes = ((nb - 1) * cp->sw + cp->kw) * cg * (int64_t)sizeof(float);
    } else {
        l->L = l->Kn; l->nseg = 1; l->xs = 0;
        bytes = nb * l->Kn * (int64_t)sizeof(float);
    }
    int64_t nchunk = (l->nseg * bytes + NREGION - 1) / NREGION;
    if (nchunk < 1) nchunk = 1;
    if (nchunk > l->nseg) nchunk = l->nseg;
    l->sc = (l->nseg + nchunk - 1) / nchunk;
}

/* wn[m, (i kw + j) cg + c] = w[m, (c kh + i) kw + j], rows zero-padded to Kn */
typedef struct nw_job { const conv_params *cp; const float *w; float *wn; int64_t Kn; } nw_job;
static void neuron_weights_task(void *ctx, int64_t b, int64_t e) {
    const nw_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t cg = cp->c / cp->group, kk = cp->kh * cp->kw, K = cg * kk;
    for (int64_t m = b; m < e; m++) {
        const float *src = j->w + m * K;
        float *d = j->wn + m * j->Kn;
        for (int64_t c = 0; c < cg; c++)
            for (int64_t t = 0; t < kk; t++) d[t * cg + c] = src[c * kk + t];
        for (int64_t k = K; k < j->Kn; k++) d[k] = 0.0f;
    }
}

/* xp[yy, xx, c] = x[c, yy - pt, xx - pl], 0 outside the image; one task per padded row */
typedef struct nx_job { const conv_params *cp; const float *x; float *xp; int64_t Wp; } nx_job;
static void neuron_nhwc_task(void *ctx, int64_t b, int64_t e) {
    const nx_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t cg = cp->c / cp->group, Wp = j->Wp;
    for (int64_t yy = b; yy < e; yy++) {
        float *d = j->xp + yy * Wp * cg;
        int64_t iy = yy - cp->pt;
        if (iy < 0 || iy >= cp->h) { memset(d, 0, (size_t)(Wp * cg) * sizeof(float)); continue; }
        /* columns xx with 0 <= xx - pl < w */
        int64_t x0 = cp->pl < 0 ? 0 : cp->pl, x1 = cp->pl + cp->w < Wp ? cp->pl + cp->w : Wp;
        if (x0 > x1) x0 = x1;
        memset(d, 0, (size_t)(x0 * cg) * sizeof(float));
        memset(d + x1 * cg, 0, (size_t)((Wp - x1) * cg) * sizeof(float));
        /* a transpose in 8 x 8 blocks: both the reads (8 columns of a row) and the writes
         * (8 channels of a pixel) stay in few cache lines */
        const float *s = j->x + iy * cp->w;   /* channel c, image column xx - pl: s[c hw + xx - pl] */
        int64_t hw = cp->h * cp->w;
        for (int64_t c8 = 0; c8 < cg; c8 += 8) {
            int64_t ce = c8 + 8 < cg ? c8 + 8 : cg;
            for (int64_t x8 = x0; x8 < x1; x8 += 8) {
                int64_t xe = x8 + 8 < x1 ? x8 + 8 : x1;
                for (int64_t xx = x8; xx < xe; xx++)
                    for (int64_t c = c8; c < ce; c++) d[xx * cg + c] = s[c * hw + xx - cp->pl];
            }
        }
    }
}

/* rows[q] = the patch of pixel q in wn's order, zero-padded to Kn (non-direct layouts) */
typedef struct nr_job { const conv_params *cp; const nlayout *l; float *rows; } nr_job;
static void neuron_rows_task(void *ctx, int64_t b, int64_t e) {
    const nr_job *j = ctx;
    const conv_params *cp = j->cp;
    const nlayout *l = j->l;
    int64_t cg = cp->c / cp->group, K = cg * cp->kh * cp->kw;
    for (int64_t q = b; q < e; q++) {
        int64_t oy = q / cp->ow, ox = q % cp->ow;
        float *d = j->rows + q * l->Kn;
        for (int64_t i = 0; i < cp->kh; i++) {
            const float *s = l->xp + ((oy * cp->sh + i * cp->dh) * l->Wp + ox * cp->sw) * cg;
            if (cp->dw == 1) { memcpy(d, s, (size_t)(cp->kw * cg) * sizeof(float)); d += cp->kw * cg; }
            else
                for (int64_t jj = 0; jj < cp->kw; jj++, d += cg) memcpy(d, s + jj * cp->dw * cg, (size_t)cg * sizeof(float));
        }
        for (int64_t k = K; k < l->Kn; k++) *d++ = 0.0f;
    }
}

/* r[i] = sum over nseg segments s, k < L (a multiple of 8) of w_(i < N ? a : b)[s L + k] *
 * x_i[s xs + k] (8 lanes, reduced by the caller) */
#define DOT8_BODY(N)                                                                               \
    {                                                                                              \
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};         \
        for (int64_t sg = 0; sg < nseg; sg++) {                                                    \
            const float *pa = wa + sg * L, *pb = wb + sg * L;                                      \
            const float *x0 = x[0] + sg * xs, *x1 = x[1] + sg * xs, *x2 = x[2] + sg * xs;          \
            const float *x3 = x[3] + sg * xs, *x4 = x[4] + sg * xs, *x5 = x[5] + sg * xs;          \
            const float *x6 = x[6] + sg * xs, *x7 = x[7] + sg * xs;                                \
            for (int64_t k = 0; k < L; k += 8) {                                                   \
                v8 va = *(const v8u *)(pa + k), vb = *(const v8u *)(pb + k);                       \
                s0 += (0 < N ? va : vb) * *(const v8u *)(x0 + k);                                  \
                s1 += (1 < N ? va : vb) * *(const v8u *)(x1 + k);                                  \
                s2 += (2 < N ? va : vb) * *(const v8u *)(x2 + k);                                  \
                s3 += (3 < N ? va : vb) * *(const v8u *)(x3 + k);                                  \
                s4 += (4 < N ? va : vb) * *(const v8u *)(x4 + k);                                  \
                s5 += (5 < N ? va : vb) * *(const v8u *)(x5 + k);                                  \
                s6 += (6 < N ? va : vb) * *(const v8u *)(x6 + k);                                  \
                s7 += (7 < N ? va : vb) * *(const v8u *)(x7 + k);                                  \
            }                                                                                      \
        }                                                                                          \
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3; r[4] = s4; r[5] = s5; r[6] = s6; r[7] = s7;    \
    }

#define DEFINE_DOT8(NAME, ATTR)                                                                    \
    ATTR static void NAME(int n, int64_t nseg, int64_t L, int64_t xs, const float *wa, const float *wb, \
                          const float *const *x, v8 *r) {                                          \
        switch (n) {                                                                               \
        case 1: DOT8_BODY(1) break;                                                                \
        case 2: DOT8_BODY(2) break;                                                                \
        case 3: DOT8_BODY(3) break;                                                                \
        case 4: DOT8_BODY(4) break;                                                                \
        case 5: DOT8_BODY(5) break;                                                                \
        case 6: DOT8_BODY(6) break;                                                                \
        case 7: DOT8_BODY(7) break;                                                                \
        default: DOT8_BODY(8) break;                                                               \
        }                                                                                          \
    }
DEFINE_DOT8(dot8_base, )
#ifdef HAVE_DISPATCH
DEFINE_DOT8(dot8_avx2, AVX2_ATTR)
#endif

INLINE float hsum(const v8 *v) { v8 s = *v; return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])); }
INLINE void reduce8_base(const v8 *r, float *out) { for (int i = 0; i < 8; i++) out[i] = hsum(&r[i]); }
#ifdef HAVE_DISPATCH
/* the eight horizontal sums at once (a transpose-add) */
AVX2_ATTR INLINE void reduce8_avx2(const v8 *r, float *out) {
    __m256 h01 = _mm256_hadd_ps(r[0], r[1]), h23 = _mm256_hadd_ps(r[2], r[3]);
    __m256 h45 = _mm256_hadd_ps(r[4], r[5]), h67 = _mm256_hadd_ps(r[6], r[7]);
    __m256 a = _mm256_hadd_ps(h01, h23), b = _mm256_hadd_ps(h45, h67);
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)));
}
#endif

/* the kept pixels of a run of at most 16, as a bit set: bytes are 0 or 1, and the multiply
 * gathers the low bits of 8 bytes into the top byte (byte i -> bit i). Reads 16 bytes when
 * they lie inside the mask, else byte by byte. */
INLINE unsigned kept_bits(const uint8_t *u, int64_t nb, int inside16) {
    unsigned bits = 0;
    if (inside16) {
        uint64_t lo, hi;
        memcpy(&lo, u, 8);
        memcpy(&hi, u + 8, 8);
        bits = (unsigned)((lo * 0x0102040810204080ULL) >> 56) | (unsigned)((hi * 0x0102040810204080ULL) >> 56) << 8;
    } else
        for (int64_t t = 0; t < nb; t++) bits |= (unsigned)(u[t] != 0) << t;
    return bits & ((1u << nb) - 1);
}
/* positions of the set bits of a nibble, one per byte, and their count */
static const uint32_t nib_pos[16] = {0, 0, 0x01, 0x0100, 0x02, 0x0200, 0x0201, 0x020100, 0x03, 0x0300, 0x0301,
                                     0x030100, 0x0302, 0x030200, 0x030201, 0x03020100};
static const uint8_t nib_cnt[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* a group: up to 8 outputs, lanes < split of channel ca, the others of cb; lane i is
 * pixel lq[i] (lanes past cnt repeat lane 0 and are ignored) */
typedef struct ngroup { int16_t cnt, split, ca, cb; int8_t lq[8]; } ngroup;

/* y[m, q0 .. q0 + nb) = kept ? act(acc + bias) * scale : 0, the switch outside the loop so
 * that it vectorises */
#define ROW_OUT(ACT)                                                                               \
    for (int64_t t = 0; t < nb; t++) {                                                             \
        float v = apply(a[t] + bb, ACT, j->p0, j->p1) * j->scale;                                  \
        uint32_t vb;                                                                               \
        memcpy(&vb, &v, 4);                                                                        \
        vb &= 0u - (uint32_t)u[t];  /* the mask byte is 0 or 1 */                                  \
        memcpy(yr + t, &vb, 4);                                                                    \
    }

/* one item: pixels ox0 .. ox0 + nb - 1 of output row oy x channels [c0, c1) of the group.
 * Branch-free where the mask is read (it is random: a branch per output would be
 * mispredicted half the time at p = 0.5). */
#define DEFINE_NEURON_ITEM(NAME, DOT8, REDUCE8, ATTR)                                              \
    ATTR static uint64_t NAME(const djob *j, const nlayout *l, int64_t oy, int64_t ox0, int64_t nb, \
                              int64_t c0, int64_t c1) {                                            \
        const conv_params *cp = j->cp;                                                             \
        int64_t P = j->P, cg = cp->c / cp->group, q0 = oy * cp->ow + ox0, Kn = l->Kn;              \
        int8_t lq[NCN * NBP + 4];  /* the kept pixels, channel by channel */                       \
        int end[NCN];              /* end of channel c0 + i's run in lq */                         \
        float acc[NCN * NBP] __attribute__((aligned(32)));                                         \
        ngroup gr[NCN * NBP];                                                                      \
        const float *xq[NBP];                                                                      \
        for (int64_t t = 0; t < nb; t++)                                                           \
            xq[t] = l->direct ? l->xp + ((oy * cp->sh) * l->Wp + (ox0 + t) * cp->sw) * cg : l->rows + (q0 + t) * Kn; \
        int n = 0;                                                                                 \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            int64_t at = (j->row0 + c) * P + q0;                                                   \
            unsigned bits = kept_bits(j->units + at, nb, at + 16 <= cp->m * P);                    \
            for (int h = 0; h < 16; h += 4, bits >>= 4) {                                          \
                uint32_t pos = nib_pos[bits & 15] + 0x01010101u * (uint32_t)h;                     \
                memcpy(lq + n, &pos, 4);                                                           \
                n += nib_cnt[bits & 15];                                                           \
            }                                                                                      \
            end[c - c0] = n;                                                                       \
        }                                                                                          \
        memset(acc, 0, (size_t)((c1 - c0) * NBP) * sizeof(float));                                 \
        /* groups: the rest of one channel's run (at most 8), topped up from the next run */       \
        int ng = 0, ca = 0;                                                                        \
        for (int o = 0; o < n;) {                                                                  \
            ngroup *G = &gr[ng++];                                                                 \
            while (end[ca] <= o) ca++;                                                             \
            int ea = end[ca], na = ea - o < 8 ? ea - o : 8, cnt = na;                              \
            G->ca = G->cb = (int16_t)ca; G->split = 8;                                             \
            if (na < 8 && ea < n) {                                                                \
                int cb = ca + 1;                                                                   \
                while (end[cb] == ea) cb++;                                                        \
                int nb2 = end[cb] - ea;                                                            \
                cnt = na + (nb2 < 8 - na ? nb2 : 8 - na);                                          \
                G->cb = (int16_t)cb; G->split = (int16_t)na;                                       \
            }                                                                                      \
            G->cnt = (int16_t)cnt;                                                                 \
            for (int i = 0; i < 8; i++) G->lq[i] = lq[o + (i < cnt ? i : 0)];                      \
            o += cnt;                                                                              \
        }                                                                                          \
        const float *w0 = l->wn + (j->row0 + c0) * Kn, *x[8];                                      \
        v8 r[8];                                                                                   \
        float out[8] __attribute__((aligned(32)));                                                 \
        for (int64_t s0 = 0; s0 < l->nseg; s0 += l->sc) {                                          \
            int64_t ns = l->nseg - s0 < l->sc ? l->nseg - s0 : l->sc;                              \
            for (int g = 0; g < ng; g++) {                                                         \
                const ngroup *G = &gr[g];                                                          \
                for (int i = 0; i < 8; i++) x[i] = xq[G->lq[i]] + s0 * l->xs;                      \
                DOT8(G->split, ns, l->L, l->xs, w0 + G->ca * Kn + s0 * l->L, w0 + G->cb * Kn + s0 * l->L, x, r); \
                REDUCE8(r, out);                                                                   \
                for (int i = 0; i < G->cnt; i++) acc[(i < G->split ? G->ca : G->cb) * NBP + G->lq[i]] += out[i]; \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            int64_t m = j->row0 + c;                                                               \
            float bb = j->bias ? j->bias[m] : 0.0f, *yr = j->y + m * P + q0;                       \
            const float *a = acc + (c - c0) * NBP;                                                 \
            const uint8_t *u = j->units + m * P + q0;                                              \
            switch (j->act) {                                                                      \
            case ACT_RELU: ROW_OUT(ACT_RELU) break;                                                \
            case ACT_CLIP: ROW_OUT(ACT_CLIP) break;                                                \
            case ACT_LEAKY: ROW_OUT(ACT_LEAKY) break;                                              \
            default: ROW_OUT(ACT_NONE) break;                                                      \
            }                                                                                      \
        }                                                                                          \
        return (uint64_t)n;                                                                        \
    }
DEFINE_NEURON_ITEM(neuron_item_base, dot8_base, reduce8_base, )
#ifdef HAVE_DISPATCH
DEFINE_NEURON_ITEM(neuron_item_avx2, dot8_avx2, reduce8_avx2, AVX2_ATTR)
#endif

/* items channel-chunk major, so that one thread's consecutive items share their weights */
typedef struct n_job { const djob *j; const nlayout *l; } n_job;
static void neuron_task(void *ctx, int64_t b, int64_t e) {
    const n_job *nj = ctx;
    const djob *j = nj->j;
    const nlayout *l = nj->l;
    const conv_params *cp = j->cp;
    int64_t nblocks = cp->oh * l->nbr;
    uint64_t done = 0;
    for (int64_t it = b; it < e; it++) {
        int64_t ch = it / nblocks, blk = it % nblocks, oy = blk / l->nbr, bi = blk % l->nbr;
        int64_t ox0 = bi * cp->ow / l->nbr, ox1 = (bi + 1) * cp->ow / l->nbr;
        int64_t c0 = ch * NCN, c1 = c0 + NCN < j->mg ? c0 + NCN : j->mg;
#ifdef HAVE_DISPATCH
        if (have_avx2()) done += neuron_item_avx2(j, l, oy, ox0, ox1 - ox0, c0, c1);
        else
#endif
            done += neuron_item_base(j, l, oy, ox0, ox1 - ox0, c0, c1);
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
}

/* -- the entry points (drowsy_internal.h) ----------------------------------------------------- */
/* scratch: xp (Hp x Wp x cg), wn (M x Kn), rows (P x Kn, non-direct layouts only) */
size_t neuron_scratch_bytes(const conv_params *cp) {
    nlayout l;
    neuron_layout(cp, &l);
    int64_t cg = cp->c / cp->group, P = cp->oh * cp->ow;
    size_t n = ALIGN64((size_t)(l.Hp * l.Wp * cg) * sizeof(float)) + ALIGN64((size_t)(cp->m * l.Kn) * sizeof(float));
    if (!l.direct) n += ALIGN64((size_t)(P * l.Kn) * sizeof(float));
    return n;
}

static void neuron_bind(const conv_params *cp, void *scratch, nlayout *l) {
    neuron_layout(cp, l);
    int64_t cg = cp->c / cp->group;
    uint8_t *cur = scratch;
    l->xp = (const float *)cur;
    cur += ALIGN64((size_t)(l->Hp * l->Wp * cg) * sizeof(float));
    l->wn = (const float *)cur;
    cur += ALIGN64((size_t)(cp->m * l->Kn) * sizeof(float));
    l->rows = l->direct ? NULL : (const float *)cur;
}

void neuron_prepare_weights(pool *p, const conv_params *cp, const float *w, void *scratch) {
    nlayout l;
    neuron_bind(cp, scratch, &l);
    nw_job wj = {cp, w, (float *)l.wn, l.Kn};
    pool_for(p, cp->m, 1, neuron_weights_task, &wj);
}

void neuron_conv_group(pool *p, const djob *j, void *scratch) {
    const conv_params *cp = j->cp;
    nlayout l;
    neuron_bind(cp, scratch, &l);
    nx_job xj = {cp, j->x, (float *)l.xp, l.Wp};
    pool_for(p, l.Hp, 1, neuron_nhwc_task, &xj);
    if (!l.direct) {
        nr_job rj = {cp, &l, (float *)l.rows};
        pool_for(p, j->P, 8, neuron_rows_task, &rj);
    }
    n_job nj = {j, &l};
    pool_for(p, cp->oh * l.nbr * ((j->mg + NCN - 1) / NCN), 1, neuron_task, &nj);
}
