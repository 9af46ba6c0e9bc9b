/* DrowsyNet, neuron granularity (mirror of the neuron kernel in kernels/drowsy_neuron.py):
 * masked 2-D convolution that computes only the kept (channel, pixel) outputs of a random
 * per-neuron mask, 8 or 12 dot products at a time. Called by conv2d_drowsy (drowsy.c) once per
 * image and group; the interface is in drowsy_internal.h. */
#include <stddef.h>
#include <string.h>

#include "drowsy_internal.h"

/* Layout. A dot product is vectorised over K, so a patch must be runs of floats whose
 * lengths are multiples of 8, in the order of a reordered weight row wn (M x Kn):
 * - direct (runs of 8k floats exist): the input of the group is copied once into a
 *   zero-padded channels-last image xp, in blocks of CB channels (Hp x Wp x CB each); the
 *   taps of output pixel (oy, ox) on tap row i in a block of cb channels are the kw cb
 *   contiguous floats at ((oy sh + i dh) Wp + ox sw) cb (dw == 1), or, dilated, kw runs of
 *   cb floats dw cb apart. Patches are read in place: no patch matrix. wn is in (channel
 *   block, tap row, tap column, channel) order.
 * - copy (e.g. the 3-channel first layer, kw cg = 33): patches are copied per work item, in
 *   the weights' own (channel, tap row, tap column) order, into a per-thread buffer of rows
 *   of at most CHK floats (K chunks), from the input itself when no tap falls outside it,
 *   else from a zero-padded copy; wn rows and the copied rows are zero-padded to K rounded
 *   up to 8.
 *
 * Work items: up to NBP consecutive output pixels (neuron_blocks) x a chunk of NCN channels; the item's kept pixels are a 64-bit set per
 * channel. Its kept outputs are cut into groups of dot products that share loads, channel
 * group (NGC channels) by channel group:
 * - triples: three channels x four pixels kept in all three (a channel triple's common
 *   pixels, in fours): 3 weight and 4 patch loads per 12 FMAs;
 * - bicliques: two channels x four pixels kept in both, from each pair's common pixels left:
 *   2 weight and 4 patch loads per 8 FMAs;
 * - singles: the other kept outputs, channel by channel in groups of 8, the rest of one
 *   channel topped up from the next (at most 2 channels): 1 or 2 weight loads and 8 patch
 *   loads per 8 FMAs.
 * A channel group's groups go together, so that its weight rows are read from L2 once and
 * reused from L1 (the next group's rows are prefetched). K is cut into chunks whose
 * patch data (the image region the item's pixels overlap on, or the copied rows) stays in
 * or near L1 (NREGION) while the groups stream their weights past it; each group's sums are
 * reduced once per chunk, and scattered into the item's outputs at its end. The
 * sizes were tuned on a Zen 4 (32 KB L1d, 1 MB L2): larger items (fewer partial groups and
 * weight fetches) win over a region that fits L1 with room to spare; the copy layout's
 * items take 64 pixels too (rows in L2: ~5% faster on VGG-f conv1 than 27 pixels in L1). */
enum {
    NBP = 64,          /* pixels per item at most (a bit set of 64) */
    NCN = 64,          /* channels per item */
    NREGION = 32768,   /* direct: bytes of image region per K chunk */
    CHK = 384,         /* copy: K chunk, floats per row at most */
    NBUF = NBP * (CHK + 8),   /* copy: floats of the per-thread row buffer: rows of 64 pixels */
    CODE_BIC = 9,      /* group codes: of a biclique, of a triple; 1..8 are singles' splits */
    CODE_TRI = 10,
};

typedef struct nlayout {
    int direct;
    int64_t cg, K, Kn, Hp, Wp;
    /* the item's pixels: nblk blocks of consecutive pixels, runs of the image across rows
     * (nbr == 0) or one of the nbr runs of a row */
    int64_t nbr, nblk;
    /* direct: the channels in ncb blocks of CB (the last one may be smaller), K chunks of sc
     * tap rows of one block (nts per block); copy: chunks of CHK floats of K, rows of stride rs
     * (8 floats of room) */
    int64_t CB, ncb, sc, nts, nchunk, rs;
    const float *xp, *wn;
    /* copy: the image the patches are copied from (xp, or the input itself when no tap falls
     * outside it), planes of xr rows of xc floats */
    const float *src;
    int64_t xr, xc;
} nlayout;

/* blocks of at most nbmax pixels: runs of the image across rows when two or more rows fit
 * or the rows are copied (as many pixels as fit: more triples and bicliques, ~5% on the 3x3
 * layers of VGG-f over whole rows; 4% on its first layer over runs of a row), else runs of a
 * row (an item's image region then spans fewer input rows) */
static void neuron_blocks(const conv_params *cp, nlayout *l, int64_t nbmax, int copy) {
    if (copy || nbmax / cp->ow > 1) {
        l->nbr = 0;
        l->nblk = (cp->oh * cp->ow + nbmax - 1) / nbmax;
    } else {
        l->nbr = (cp->ow + nbmax - 1) / nbmax;
        l->nblk = cp->oh * l->nbr;
    }
}

/* the input rows that `rows` consecutive output rows meet on sc consecutive tap rows */
static int64_t input_rows(const conv_params *cp, int64_t rows, int64_t sc) {
    int64_t span = (rows - 1) * cp->sh + (sc - 1) * cp->dh + 1;
    return rows * sc < span ? rows * sc : span;
}

static void neuron_layout(const conv_params *cp, nlayout *l) {
    int64_t cg = cp->c / cp->group, K = cg * cp->kh * cp->kw;
    l->cg = cg; l->K = K;
    l->Hp = (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh + 1;
    l->Wp = (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1;
    /* runs of 8k floats: whole tap rows (dw == 1), else taps */
    l->direct = cp->dw == 1 ? cp->kw * cg % 8 == 0 : cg % 8 == 0;
    if (l->direct) {
        l->Kn = K;
        neuron_blocks(cp, l, NBP, 0);
        /* the image region of a chunk: span bytes per channel of each of the input rows its
         * tap rows and the block's output rows meet, x CB channels; at most NREGION when it
         * can be (one tap row of 8 channels, or of all when not 8k, may be more) */
        int64_t nb = l->nbr ? (cp->ow + l->nbr - 1) / l->nbr : cp->ow, sc, rows = 1;
        int64_t span = ((nb - 1) * cp->sw + (cp->kw - 1) * cp->dw + 1) * (int64_t)sizeof(float);
        if (!l->nbr) {   /* the rows a run of the image may meet */
            int64_t run = (cp->oh * cp->ow + l->nblk - 1) / l->nblk;
            rows = (run + cp->ow - 2) / cp->ow + 1;
            rows = rows < cp->oh ? rows : cp->oh;
        }
        /* the fewest chunks (each costs every group a reduction and its set-up): for each
         * count of tap rows, blocks of as many channels as fit. More tap rows share input
         * rows (3 of 3x3 on 4 output rows: 6 input rows, not 12), so they can win over
         * more channels */
        l->nchunk = 0;
        for (sc = 1; sc <= cp->kh; sc++) {
            int64_t CB = cg, ncb, nts = (cp->kh + sc - 1) / sc, s2 = (cp->kh + nts - 1) / nts;
            if (s2 != sc) continue;   /* the same tap row chunks as a smaller count */
            if (sc > 1 && input_rows(cp, rows, sc) * span * (cg % 8 ? cg : 8) > NREGION) break;
            if (cg % 8 == 0) {
                int64_t fit = NREGION / (input_rows(cp, rows, sc) * span) / 8 * 8;
                CB = fit < 8 ? 8 : fit < cg ? fit : cg;
                ncb = (cg + CB - 1) / CB;
                CB = ((cg + ncb - 1) / ncb + 7) / 8 * 8;   /* balanced */
            }
            ncb = (cg + CB - 1) / CB;
            if (l->nchunk && ncb * nts >= l->nchunk) continue;
            l->CB = CB; l->ncb = ncb; l->sc = sc; l->nts = nts; l->nchunk = ncb * nts;
        }
    } else {
        l->Kn = (K + 7) / 8 * 8;
        l->nchunk = (K + CHK - 1) / CHK;
        l->rs = (l->nchunk > 1 ? CHK : l->Kn) + 8;
        neuron_blocks(cp, l, NBUF / l->rs < NBP ? NBUF / l->rs : NBP, 1);
    }
}

/* direct: channel c = b CB + c' of block b (cb channels) at wn[m, b kh kw CB + (i kw + j) cb + c']
 * = w[m, (c kh + i) kw + j]; copy: wn[m, k] = w[m, k]; rows zero-padded to Kn */
typedef struct nw_job { const conv_params *cp; const nlayout *l; const float *w; float *wn; } nw_job;
static void neuron_weights_task(void *ctx, int64_t b, int64_t e) {
    const nw_job *j = ctx;
    const conv_params *cp = j->cp;
    int64_t cg = j->l->cg, kk = cp->kh * cp->kw, K = j->l->K, Kn = j->l->Kn;
    for (int64_t m = b; m < e; m++) {
        const float *src = j->w + m * K;
        float *d = j->wn + m * Kn;
        if (j->l->direct)
            for (int64_t c = 0; c < cg; c++) {
                int64_t c0 = c / j->l->CB * j->l->CB, cb = cg - c0 < j->l->CB ? cg - c0 : j->l->CB;
                for (int64_t t = 0; t < kk; t++) d[c0 * kk + t * cb + c - c0] = src[c * kk + t];
            }
        else
            memcpy(d, src, (size_t)K * sizeof(float));
        for (int64_t k = K; k < Kn; k++) d[k] = 0.0f;
    }
}

/* d[xx cb + c] = s[c hw + xx] for xx < n, c < 8 (8 channels of n pixels); the AVX2 version
 * transposes 8 x 8 blocks in registers */
INLINE void nhwc8_base(float *d, const float *s, int64_t hw, int64_t n, int64_t cb) {
    for (int64_t xx = 0; xx < n; xx++)
        for (int64_t c = 0; c < 8; c++) d[xx * cb + c] = s[c * hw + xx];
}
#ifdef HAVE_DISPATCH
AVX2_ATTR INLINE void nhwc8_avx2(float *d, const float *s, int64_t hw, int64_t n, int64_t cb) {
    for (int64_t x8 = 0; x8 < n; x8 += 8) {
        /* the last block: columns past n masked off (not read) and not stored */
        int64_t r = n - x8 < 8 ? n - x8 : 8;
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 r0 = _mm256_maskload_ps(s + x8, m), r1 = _mm256_maskload_ps(s + hw + x8, m);
        __m256 r2 = _mm256_maskload_ps(s + 2 * hw + x8, m), r3 = _mm256_maskload_ps(s + 3 * hw + x8, m);
        __m256 r4 = _mm256_maskload_ps(s + 4 * hw + x8, m), r5 = _mm256_maskload_ps(s + 5 * hw + x8, m);
        __m256 r6 = _mm256_maskload_ps(s + 6 * hw + x8, m), r7 = _mm256_maskload_ps(s + 7 * hw + x8, m);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
        __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                       _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                       _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                       _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
        for (int64_t i = 0; i < r; i++) _mm256_storeu_ps(d + (x8 + i) * cb, o[i]);
    }
}
#endif

/* xp[b][yy, xx, c'] = x[b CB + c', yy - pt, xx - pl] (block b of cb channels at b Hp Wp CB),
 * 0 outside the image; one task per padded row */
typedef struct nx_job { const conv_params *cp; const nlayout *l; const float *x; float *xp; } nx_job;
#define DEFINE_NHWC(NAME, ATTR, NHWC8)                                                             \
    ATTR static void NAME(void *ctx, int64_t b, int64_t e) {                                       \
        const nx_job *j = ctx;                                                                     \
        const conv_params *cp = j->cp;                                                             \
        int64_t cg = j->l->cg, Wp = j->l->Wp, CB = j->l->CB, hw = cp->h * cp->w;                   \
        /* columns xx with 0 <= xx - pl < w */                                                     \
        int64_t x0 = cp->pl < 0 ? 0 : cp->pl, x1 = cp->pl + cp->w < Wp ? cp->pl + cp->w : Wp;      \
        if (x0 > x1) x0 = x1;                                                                      \
        for (int64_t yy = b; yy < e; yy++) {                                                       \
            int64_t iy = yy - cp->pt;                                                              \
            for (int64_t c0 = 0; c0 < cg; c0 += CB) {                                              \
                int64_t cb = cg - c0 < CB ? cg - c0 : CB;                                          \
                float *d = j->xp + (c0 * j->l->Hp + yy * cb) * Wp;                                 \
                if (iy < 0 || iy >= cp->h) {                                                       \
                    memset(d, 0, (size_t)(Wp * cb) * sizeof(float));                               \
                    continue;                                                                      \
                }                                                                                  \
                memset(d, 0, (size_t)(x0 * cb) * sizeof(float));                                   \
                memset(d + x1 * cb, 0, (size_t)((Wp - x1) * cb) * sizeof(float));                  \
                /* channel c0 + c, image column xx - pl at s[c hw + xx - pl] */                    \
                const float *s = j->x + c0 * hw + iy * cp->w;                                      \
                int64_t c = 0;                                                                     \
                for (; c + 8 <= cb; c += 8) NHWC8(d + x0 * cb + c, s + c * hw + x0 - cp->pl, hw, x1 - x0, cb); \
                for (int64_t xx = x0; xx < x1; xx++)                                               \
                    for (int64_t cc = c; cc < cb; cc++) d[xx * cb + cc] = s[cc * hw + xx - cp->pl]; \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_NHWC(nhwc_base, , nhwc8_base)
#ifdef HAVE_DISPATCH
DEFINE_NHWC(nhwc_avx2, AVX2_ATTR, nhwc8_avx2)
#endif

/* -- groups ------------------------------------------------------------------------------------ */
/* Kinds (code): 1..8 a single (lane i < split of channel ca, the others of cb), CODE_BIC a
 * biclique (lanes 0..3 channel ca, 4..7 cb), CODE_TRI a triple (lanes 0..3 ca, 4..7 cb,
 * 8..11 cc); channels relative to the item. Lane i (mod 4 for bicliques and triples) is
 * pixel lq[i]; lanes past cnt compute pixel 0 (their result is dropped); lq has room for
 * 8-byte copies; pf: the weight row the group prefetches; dst: a single's lane i's slot
 * among the item's sums (SPARE past cnt), a biclique's or triple's rows of sums of its
 * channels (the slot of lane i is then dst[i / 4] + lq[i % 4]) */
typedef struct ngroup { int8_t code, cnt, split, pad; int16_t ca, cb, cc, pf; int8_t lq[16]; int16_t dst[8]; } ngroup;
/* groups of an item at most: all have 8 or 12 outputs but one partial group per channel;
 * their sums between K chunks (8 or 12 floats each) fit in as many floats as outputs and
 * 8 a channel */
enum { MAXG = NCN * NBP / 8 + NCN, NGACC = NCN * NBP + 8 * NCN, SPARE = NCN * NBP };

typedef uint64_t pixset;   /* a set of the item's pixels, bit t: pixel t */
typedef short v8s __attribute__((vector_size(16)));
typedef int8_t v8b __attribute__((vector_size(8)));
INLINE int popcount64(pixset v) {   /* without the POPCNT instruction, which may be missing */
    v -= (v >> 1) & 0x5555555555555555u;
    v = (v & 0x3333333333333333u) + ((v >> 2) & 0x3333333333333333u);
    return (int)((((v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fu) * 0x0101010101010101u) >> 56);
}

/* q[i] = the position of the i-th lowest bit of s, for i < 8 (0 past its count: lanes
 * past a group's count are pixel 0); the count (at most 8). Without branches: the mask is
 * random */
INLINE int low8(pixset s, int8_t *q) {
    int n = 0;
    for (int i = 0; i < 8; i++) {
        n += s != 0;
        q[i] = (int8_t)(s ? __builtin_ctzll(s) : 0);
        s &= s - 1;
    }
    return n;
}
/* s without its bits up to position t */
INLINE pixset above(pixset s, int t) { return s & ~(((pixset)2 << t) - 1); }

/* a group of NGC channels: its triples, and its pairs in rounds of perfect matchings (round
 * robin: a round takes each channel once, so that its pixels are shared out among different
 * partners). 4 channels: 8 (1 MB L2) gave the same speed at twice the set-up */
enum { NGC = 4 };
static const uint8_t triples[4][3] = {{0, 1, 2}, {0, 1, 3}, {0, 2, 3}, {1, 2, 3}};
static const uint8_t rr_pairs[6][2] = {{0, 3}, {1, 2}, {0, 2}, {1, 3}, {0, 1}, {2, 3}};

/* as: the item's rows of sums (nb rounded up to 32); open: a partial single group, or -1;
 * g0: the first group of the channel group, next: the next channel group's first row */
typedef struct gbuild { ngroup *gr; int ng, open, as, g0, next, nc; } gbuild;
/* the next channel group's row that group g fetches: the first NGC groups of a channel group
 * one each (so that they arrive in time), the others their own row ca */
INLINE int16_t prefetch_row(const gbuild *b, int g, int ca) {
    int r = b->next + (g - b->g0);
    return (int16_t)(g - b->g0 < NGC && r < b->nc ? r : ca);
}
/* a single's eight lanes' slots at once (branches on the random counts would be mispredicted) */
INLINE void single_dst(ngroup *G, int as) {
    v8b b;
    memcpy(&b, G->lq, sizeof b);
    v8s lane = {0, 1, 2, 3, 4, 5, 6, 7}, lq = __builtin_convertvector(b, v8s);
    v8s in_a = lane < G->split, in_cnt = lane < G->cnt;
    v8s v = (((short)(G->ca * as) & in_a) | ((short)(G->cb * as) & ~in_a)) + lq;
    v = (v & in_cnt) | ((short)SPARE & ~in_cnt);
    memcpy(G->dst, &v, sizeof v);
}

/* the pixels of C in fours (the rest left) as groups of kind code on channels ca, cb, cc
 * (cc == cb for bicliques: its lanes 8..11 are not used); returns the pixels taken */
INLINE pixset take_quads(gbuild *b, pixset C, int code, int ca, int cb, int cc) {
    pixset U = C;
    for (;;) {
        pixset c1 = C & (C - 1), c2 = c1 & (c1 - 1), c3 = c2 & (c2 - 1);
        if (!c3) break;   /* fewer than 4 */
        ngroup *G = &b->gr[b->ng];
        G->pf = prefetch_row(b, b->ng++, ca);
        G->code = (int8_t)code; G->cnt = 8; G->split = 4;
        G->ca = (int16_t)ca; G->cb = (int16_t)cb; G->cc = (int16_t)cc;
        int8_t q[4] = {(int8_t)__builtin_ctzll(C), (int8_t)__builtin_ctzll(c1), (int8_t)__builtin_ctzll(c2),
                       (int8_t)__builtin_ctzll(c3)};
        memcpy(G->lq, q, 4);
        memcpy(G->lq + 4, q, 4);
        G->dst[0] = (int16_t)(ca * b->as); G->dst[1] = (int16_t)(cb * b->as); G->dst[2] = (int16_t)(cc * b->as);
        C = c3 & (c3 - 1);
    }
    return U ^ C;
}

/* the single outputs of channel c (pixels s): first the open group's top-up, then groups of
 * 8, the last one left open */
INLINE void feed_singles(gbuild *b, int c, pixset s) {
    if (s && b->open >= 0) {
        ngroup *G = &b->gr[b->open];
        int8_t q[8];
        int n = low8(s, q), o = 8 - G->cnt < n ? 8 - G->cnt : n;
        G->cb = G->cc = (int16_t)c;
        G->split = G->code = G->cnt;
        memcpy(G->lq + G->cnt, q, 8);
        G->cnt = (int8_t)(G->cnt + o);
        single_dst(G, b->as);
        s = above(s, q[o - 1]);
        b->open = -1;
    }
    while (s) {
        ngroup *G = &b->gr[b->ng];
        G->pf = prefetch_row(b, b->ng++, c);
        G->ca = G->cb = G->cc = (int16_t)c;
        G->code = G->split = 8;
        int n = low8(s, G->lq);
        G->cnt = (int8_t)n;
        s = n == 8 ? above(s, G->lq[7]) : 0;
        if (n == 8) single_dst(G, b->as);
        else b->open = b->ng - 1;
    }
}

/* the groups of channels 0 .. nc - 1 with kept pixel sets bits[] over nb pixels; their count.
 * Channels go in groups of NGC, each covered in turn by: triples, 3 channels x 4 pixels kept
 * in all three (3 weight and 4 patch loads per 12 FMAs), from each channel triple's common
 * pixels left; then bicliques, 2 x 4 (2 + 4 loads per 8 FMAs) from each pair's; then singles
 * (1 or 2 + 8 loads per 8 FMAs). A channel group's groups go together (its rows reused from
 * L1). Each group also names a weight row to prefetch (prefetch_row) and its lanes' slots
 * among the sums (rows of nb rounded up to 32) */
static int build_groups(const pixset *bits, int nc, int nb, ngroup *gr) {
    gbuild b = {gr, 0, -1, (nb + 31) / 32 * 32, 0, 0, nc};
    for (int c0 = 0; c0 < nc; c0 += NGC) {
        b.g0 = b.ng;
        b.next = c0 + NGC;
        pixset R[NGC];   /* the pixels left: none past nc */
        for (int i = 0; i < NGC; i++) R[i] = c0 + i < nc ? bits[c0 + i] : 0;
        for (int t = 0; t < NGC * (NGC - 1) * (NGC - 2) / 6; t++) {
            int x = triples[t][0], y = triples[t][1], z = triples[t][2];
            pixset U = take_quads(&b, R[x] & R[y] & R[z], CODE_TRI, c0 + x, c0 + y, c0 + z);
            R[x] &= ~U; R[y] &= ~U; R[z] &= ~U;
        }
        for (int t = 0; t < NGC * (NGC - 1) / 2; t++) {
            int x = rr_pairs[t][0], y = rr_pairs[t][1];
            pixset U = take_quads(&b, R[x] & R[y], CODE_BIC, c0 + x, c0 + y, c0 + y);
            R[x] &= ~U; R[y] &= ~U;
        }
        for (int i = 0; i < NGC && c0 + i < nc; i++) feed_singles(&b, c0 + i, R[i]);
    }
    if (b.open >= 0) single_dst(&gr[b.open], b.as);
    return b.ng;
}

/* -- the dot products ---------------------------------------------------------------------- */
/* one K chunk of a group: ns x nj runs of L floats, run (i, jj) of a patch at i xs + jj xj
 * from the pixel's base, of a weight row at i ws + jj wj */
typedef struct nchunk { int64_t ns, nj, L, xs, xj, ws, wj; } nchunk;

#define LD(p) (*(const v8u *)(p))
#define DOT_RUNS(BODY)                                                                             \
    for (int64_t sg = 0; sg < c->ns; sg++)                                                         \
        for (int64_t jj = 0; jj < c->nj; jj++) {                                                   \
            int64_t xo = sg * c->xs + jj * c->xj, wo = sg * c->ws + jj * c->wj;                   \
            const float *pa = wa + wo, *pb = wb + wo, *pc = wc + wo;                               \
            const float *x0 = x[0] + xo, *x1 = x[1] + xo, *x2 = x[2] + xo, *x3 = x[3] + xo;        \
            const float *x4 = x[4] + xo, *x5 = x[5] + xo, *x6 = x[6] + xo, *x7 = x[7] + xo;        \
            (void)pc; (void)x4; (void)x5; (void)x6; (void)x7;   /* unused by some kinds */        \
            _Pragma("GCC unroll 2")   /* the prefetch test then goes (~2% on 3x3) */           \
            for (int64_t k = 0; k < c->L; k += 8) {                                                \
                if (!(k & 8)) __builtin_prefetch(pf + wo + k);   /* a line every other step */     \
                BODY                                                                               \
            }                                                                                      \
        }
/* singles: lane i < N with weight row a, the others with row b; the weights loaded once into
 * registers (KEEP: else the compiler may fold a weight load into several FMAs instead of the
 * patch loads, one load more per step) */
#define DOT8_BODY(N, KEEP)                                                                         \
    {                                                                                              \
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};         \
        DOT_RUNS(v8 va = LD(pa + k); KEEP(va); v8 vb = LD(pb + k); KEEP(vb);                       \
                 s0 += (0 < N ? va : vb) * LD(x0 + k); s1 += (1 < N ? va : vb) * LD(x1 + k);       \
                 s2 += (2 < N ? va : vb) * LD(x2 + k); s3 += (3 < N ? va : vb) * LD(x3 + k);       \
                 s4 += (4 < N ? va : vb) * LD(x4 + k); s5 += (5 < N ? va : vb) * LD(x5 + k);       \
                 s6 += (6 < N ? va : vb) * LD(x6 + k); s7 += (7 < N ? va : vb) * LD(x7 + k);)      \
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3; r[4] = s4; r[5] = s5; r[6] = s6; r[7] = s7;    \
    }
/* biclique: rows a, b x patches 0..3; each patch loaded once into a register (KEEP stops
 * the compiler from folding the load into both FMAs, which would make it two loads) */
#define DOT24_BODY(KEEP)                                                                           \
    {                                                                                              \
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};         \
        DOT_RUNS(v8 va = LD(pa + k); v8 vb = LD(pb + k);                                           \
                 v8 p0 = LD(x0 + k); KEEP(p0); v8 p1 = LD(x1 + k); KEEP(p1);                       \
                 v8 p2 = LD(x2 + k); KEEP(p2); v8 p3 = LD(x3 + k); KEEP(p3);                       \
                 s0 += va * p0; s1 += va * p1; s2 += va * p2; s3 += va * p3;                       \
                 s4 += vb * p0; s5 += vb * p1; s6 += vb * p2; s7 += vb * p3;)                      \
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3; r[4] = s4; r[5] = s5; r[6] = s6; r[7] = s7;    \
    }
/* triple: rows a, b, c x patches 0..3: 12 sums, the 3 weights and one patch at a time in
 * registers (16 in all on AVX2) */
#define DOT34_BODY(KEEP)                                                                           \
    {                                                                                              \
        v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};         \
        v8 s8 = {0}, s9 = {0}, s10 = {0}, s11 = {0};                                               \
        DOT_RUNS(v8 va = LD(pa + k); KEEP(va); v8 vb = LD(pb + k); KEEP(vb); v8 vc = LD(pc + k); KEEP(vc); \
                 v8 p0 = LD(x0 + k); KEEP(p0); s0 += va * p0; s4 += vb * p0; s8 += vc * p0;        \
                 v8 p1 = LD(x1 + k); KEEP(p1); s1 += va * p1; s5 += vb * p1; s9 += vc * p1;        \
                 v8 p2 = LD(x2 + k); KEEP(p2); s2 += va * p2; s6 += vb * p2; s10 += vc * p2;       \
                 v8 p3 = LD(x3 + k); KEEP(p3); s3 += va * p3; s7 += vb * p3; s11 += vc * p3;)      \
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3; r[4] = s4; r[5] = s5; r[6] = s6; r[7] = s7;    \
        r[8] = s8; r[9] = s9; r[10] = s10; r[11] = s11;                                            \
    }

typedef float v4 __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4)));
INLINE float hsum(const v8 *v) { v8 s = *v; return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])); }
INLINE void reduce8_base(const v8 *r, v8 *o) { for (int i = 0; i < 8; i++) (*o)[i] = hsum(&r[i]); }
INLINE void reduce4_base(const v8 *r, v4 *o) { for (int i = 0; i < 4; i++) (*o)[i] = hsum(&r[i]); }
#define KEEP_NONE(v) ((void)0)
#ifdef HAVE_DISPATCH
/* the eight horizontal sums at once (a transpose-add) */
AVX2_ATTR INLINE void reduce8_avx2(const v8 *r, v8 *o) {
    __m256 h01 = _mm256_hadd_ps(r[0], r[1]), h23 = _mm256_hadd_ps(r[2], r[3]);
    __m256 h45 = _mm256_hadd_ps(r[4], r[5]), h67 = _mm256_hadd_ps(r[6], r[7]);
    __m256 a = _mm256_hadd_ps(h01, h23), b = _mm256_hadd_ps(h45, h67);
    *o = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
AVX2_ATTR INLINE void reduce4_avx2(const v8 *r, v4 *o) {
    __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
    *o = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
}
#define KEEP_REG(v) __asm__("" : "+x"(v))
#endif

/* one K chunk of the groups: group g's 8 or 12 dot products (code: the kind), with the
 * patch of pixel t at xq[t] and weight row ca at w0 + ca Kn, added to those of the chunks
 * before (in gacc, 8 or 12 floats a group in order, unless first), into gacc or, on the
 * last chunk, into their slots acc[dst]; one function per ISA with the dot products inlined
 * (a call per group costs too much). Group g also fetches the output lines ypf[2 g],
 * ypf[2 g + 1] (of npf) that the item writes at its end: fetched all at once, they would
 * stall on the misses in flight */
typedef void (*groups_fn)(const ngroup *gr, int ng, const nchunk *c, const float *const *xq, const float *w0,
                          int64_t Kn, float *gacc, float *acc, int first, int last, float *const *ypf, int npf);
#define DEFINE_GROUPS(NAME, ATTR, REDUCE8, REDUCE4, KEEP)                                          \
    ATTR static void NAME(const ngroup *gr, int ng, const nchunk *c, const float *const *xq,       \
                          const float *w0, int64_t Kn, float *gacc, float *acc, int first, int last, \
                          float *const *ypf, int npf) {                                            \
        float *ga = gacc;                                                                          \
        for (int g = 0; g < ng; g++) {                                                             \
            const ngroup *G = &gr[g];                                                              \
            for (int q = 2 * g; q < npf && q < 2 * g + 2; q++) __builtin_prefetch(ypf[q], 1);      \
            const float *x[8], *wa = w0 + G->ca * Kn, *wb = w0 + G->cb * Kn, *wc = w0 + G->cc * Kn; \
            const float *pf = w0 + G->pf * Kn;                                                     \
            for (int i = 0; i < 8; i++) x[i] = xq[G->lq[i]];                                       \
            v8 r[12];                                                                              \
            v4 u = {0};   /* a triple's sums of row c */                                           \
            switch (G->code) {                                                                     \
            case 1: DOT8_BODY(1, KEEP) break;                                                      \
            case 2: DOT8_BODY(2, KEEP) break;                                                      \
            case 3: DOT8_BODY(3, KEEP) break;                                                      \
            case 4: DOT8_BODY(4, KEEP) break;                                                      \
            case 5: DOT8_BODY(5, KEEP) break;                                                      \
            case 6: DOT8_BODY(6, KEEP) break;                                                      \
            case 7: DOT8_BODY(7, KEEP) break;                                                      \
            case 8: DOT8_BODY(8, KEEP) break;                                                      \
            case CODE_BIC: DOT24_BODY(KEEP) break;                                                 \
            default: DOT34_BODY(KEEP) REDUCE4(r + 8, &u); break;                                   \
            }                                                                                      \
            v8 t;                                                                                  \
            REDUCE8(r, &t);                                                                        \
            if (!first) t += LD(ga);                                                               \
            if (!last)                                                                             \
                *(v8u *)ga = t;                                                                    \
            else if (G->code <= 8)                                                                 \
                for (int i = 0; i < 8; i++) acc[G->dst[i]] = t[i];                                 \
            else                                                                                   \
                for (int i = 0; i < 4; i++) {                                                      \
                    acc[G->dst[0] + G->lq[i]] = t[i];                                              \
                    acc[G->dst[1] + G->lq[i]] = t[4 + i];                                          \
                }                                                                                  \
            ga += 8;                                                                               \
            if (G->code == CODE_TRI) {                                                             \
                if (!first) u += *(const v4u *)ga;                                                 \
                if (last)                                                                          \
                    for (int i = 0; i < 4; i++) acc[G->dst[2] + G->lq[i]] = u[i];                  \
                else                                                                               \
                    *(v4u *)ga = u;                                                                \
                ga += 4;                                                                           \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_GROUPS(groups_base, , reduce8_base, reduce4_base, KEEP_NONE)
#ifdef HAVE_DISPATCH
DEFINE_GROUPS(groups_avx2, AVX2_ATTR, reduce8_avx2, reduce4_avx2, KEEP_REG)
#endif

/* the kept pixels of units at .. at + nb - 1 (nb <= 64) as a bit set: two words of the mask's
 * bits shifted together (the mask has a spare word past its last) */
INLINE pixset kept_bits(const uint64_t *ub, int64_t at, int64_t nb) {
    int sh = (int)(at & 63);
    pixset bits = ub[at >> 6] >> sh | (ub[(at >> 6) + 1] << 1) << (63 - sh);
    return nb == 64 ? bits : bits & (((pixset)1 << nb) - 1);
}

/* -- copy layout: patch rows ---------------------------------------------------------------- */
/* elements [k0, k1) of a patch in (channel, tap row, tap column) order as runs: run r is
 * len[r] consecutive floats of the source image (cg planes of xr rows of xc) at off[r] from
 * the pixel's tap (0, 0) (up to kw taps, one when dilated: dw > 1); returns the count */
static int patch_runs(const conv_params *cp, const nlayout *l, int64_t k0, int64_t k1, int64_t *off, int64_t *len) {
    int64_t kw = cp->kw, r = k0 / kw, jj = k0 - r * kw, c = r / cp->kh, i = r - c * cp->kh;
    int n = 0;
    for (int64_t k = k0; k < k1; n++) {
        int64_t m = cp->dw > 1 ? 1 : kw - jj < k1 - k ? kw - jj : k1 - k;
        off[n] = (c * l->xr + i * cp->dh) * l->xc + jj * cp->dw;
        len[n] = m;
        k += m;
        jj += m;
        if (jj == kw) {
            jj = 0;
            if (++i == cp->kh) { i = 0; c++; }
        }
    }
    return n;
}

/* d = the runs from s on, 8 floats at a time: a run's copy may read up to 7 floats past it
 * (the image has 8 spare floats at its end) and write up to 7 past it (overwritten by the
 * next run; the rows have room) */
#define DEFINE_COPY(NAME, ATTR)                                                                    \
    ATTR static void NAME(float *d, const float *s, const int64_t *off, const int64_t *len, int n) { \
        for (int r = 0; r < n; r++) {                                                              \
            const float *src = s + off[r];                                                         \
            for (int64_t t = 0; t < len[r]; t += 8) *(v8u *)(d + t) = LD(src + t);                 \
            d += len[r];                                                                           \
        }                                                                                          \
    }
DEFINE_COPY(copy_base, )
#ifdef HAVE_DISPATCH
DEFINE_COPY(copy_avx2, AVX2_ATTR)
#endif

/* -- the items -------------------------------------------------------------------------------- */
/* a thread's work buffers, in the scratch (not on the stack: ~170 KB, more than threads of
 * small stacks have); the direct layout needs no patch rows (nor their runs) */
typedef struct nslot {
    ngroup gr[MAXG];
    float gacc[NGACC];
    float acc[NCN * NBP + 8];                 /* the item's sums, rows of nb rounded up to 32 */
    float *ypf[NCN * (NBP / 16 + 1)];         /* the output lines the item writes */
    int64_t off[CHK], rl[CHK];                /* copy: the runs of a K chunk */
    float buf[NBUF];                          /* copy: the patch rows */
} nslot;
static size_t slot_bytes(const nlayout *l) { return ALIGN64(l->direct ? offsetof(nslot, off) : sizeof(nslot)); }

/* a[t] = kept (bit t of bm) ? act(a[t] + bias) * scale : 0 for the 32 slots of each half
 * holding pixels (a fixed count, the switch outside the loop: it vectorises) */
#define ROW_OUT(ACT)                                                                               \
    for (int h = 0; h < (nb + 31) / 32; h++) {                                                     \
        uint32_t bh = (uint32_t)(bm >> (32 * h));                                                  \
        float *ah = a + 32 * h;                                                                    \
        for (int t = 0; t < 32; t++) {                                                             \
            float v = apply(ah[t] + bb, ACT, j->p0, j->p1) * j->scale;                             \
            uint32_t vb;                                                                           \
            memcpy(&vb, &v, 4);                                                                    \
            vb &= 0u - ((bh >> t) & 1u);                                                           \
            memcpy(ah + t, &vb, 4);                                                                \
        }                                                                                          \
    }

/* y[m, q0 .. q0 + nb) for the item's channels m = row0 + c0 + cc from their sums acc[cc as + t]
 * (as: nb rounded up to 32) and kept pixels bits[cc], 8 floats at a time (the last 8
 * overlapping, so that nothing past q0 + nb is written) */
#define DEFINE_OUT(NAME, ATTR)                                                                     \
    ATTR static void NAME(const djob *j, float *acc, const pixset *bits, int nc, int64_t c0, int64_t q0,   \
                          int64_t nb) {                                                            \
        int64_t as = (nb + 31) / 32 * 32;                                                          \
        for (int cc = 0; cc < nc; cc++) {                                                          \
            int64_t m = j->row0 + c0 + cc;                                                         \
            float bb = j->bias ? j->bias[m] : 0.0f, *yr = j->y + m * j->P + q0, *a = acc + cc * as;  \
            pixset bm = bits[cc];                                                                  \
            switch (j->act) {                                                                      \
            case ACT_RELU: ROW_OUT(ACT_RELU) break;                                                \
            case ACT_CLIP: ROW_OUT(ACT_CLIP) break;                                                \
            case ACT_LEAKY: ROW_OUT(ACT_LEAKY) break;                                              \
            default: ROW_OUT(ACT_NONE) break;                                                      \
            }                                                                                      \
            if (nb < 8)                                                                            \
                for (int64_t t = 0; t < nb; t++) yr[t] = a[t];                                     \
            else {                                                                                 \
                for (int64_t t = 0; t + 8 < nb; t += 8) *(v8u *)(yr + t) = LD(a + t);              \
                *(v8u *)(yr + nb - 8) = LD(a + nb - 8);                                            \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_OUT(out_base, )
#ifdef HAVE_DISPATCH
DEFINE_OUT(out_avx2, AVX2_ATTR)
#endif

/* the kernels of one ISA */
typedef struct nisa {
    groups_fn groups;
    void (*out)(const djob *j, float *acc, const pixset *bits, int nc, int64_t c0, int64_t q0, int64_t nb);
    void (*copy)(float *d, const float *s, const int64_t *off, const int64_t *len, int n);
} nisa;
static const nisa isa_base = {groups_base, out_base, copy_base};
#ifdef HAVE_DISPATCH
static const nisa isa_avx2 = {groups_avx2, out_avx2, copy_avx2};
#endif

/* one item: output pixels q0 .. q0 + nb - 1 x channels [c0, c1) of the group;
 * buf: the copy layout's rows. Branch-free where the mask is read (it is random: a branch
 * per output would be mispredicted half the time at p = 0.5). */
static uint64_t neuron_item(const djob *j, const nlayout *l, const nisa *isa, nslot *s, int64_t q0, int64_t nb,
                            int64_t c0, int64_t c1) {
    const conv_params *cp = j->cp;
    int64_t P = j->P, Kn = l->Kn, cg = l->cg, oy[NBP], ox[NBP], y0 = q0 / cp->ow, x0 = q0 - y0 * cp->ow;
    for (int64_t t = 0; t < nb; t++) {
        oy[t] = y0;
        ox[t] = x0;
        if (++x0 == cp->ow) { x0 = 0; y0++; }
    }
    int nc = (int)(c1 - c0);
    pixset bits[NCN];
    float **ypf = s->ypf;
    int npf = 0;
    uint64_t n = 0;
    for (int c = 0; c < nc; c++) {
        int64_t at = (j->row0 + c0 + c) * P + q0;
        bits[c] = kept_bits(j->ubits, at, nb);
        n += (uint64_t)popcount64(bits[c]);
        /* the output lines written at the end, fetched while the dot products run */
        float *yr = j->y + (j->row0 + c0 + c) * P + q0;
        for (uintptr_t a = (uintptr_t)yr / 64 * 64; a < (uintptr_t)(yr + nb); a += 64) ypf[npf++] = (float *)a;
    }
    ngroup *gr = s->gr;
    int ng = build_groups(bits, nc, (int)nb, gr);
    /* the sums: every kept output's slot written by its group, the others 0 */
    float *acc = s->acc;
    memset(acc, 0, (size_t)(nc * ((nb + 31) / 32 * 32)) * sizeof(float));
    const float *w0 = l->wn + (j->row0 + c0) * Kn, *xq[NBP];
    for (int64_t ch = 0; ch < l->nchunk; ch++) {
        nchunk c;
        int64_t wofs;
        if (l->direct) {
            /* tap rows [s0, s0 + ns) of the channel block at c0 (cb channels): the pixels'
             * patches in place, runs of whole tap rows (or of single taps, dilated) */
            int64_t c0 = ch / l->nts * l->CB, s0 = ch % l->nts * l->sc, ns = cp->kh - s0 < l->sc ? cp->kh - s0 : l->sc;
            int64_t cb = cg - c0 < l->CB ? cg - c0 : l->CB, row = cp->kw * cb, xs = cp->dh * l->Wp * cb;
            if (cp->dw == 1) c = (nchunk){ns, 1, row, xs, 0, row, 0};
            else c = (nchunk){ns, cp->kw, cb, xs, cp->dw * cb, row, cb};
            wofs = c0 * cp->kh * cp->kw + s0 * row;
            const float *xb = l->xp + c0 * l->Hp * l->Wp + s0 * xs;
            for (int64_t t = 0; t < nb; t++) xq[t] = xb + (oy[t] * cp->sh * l->Wp + ox[t] * cp->sw) * cb;
        } else {
            /* K elements [k0, k1): copied rows, zero-padded to a multiple of 8 */
            int64_t k0 = ch * CHK, k1 = l->K - k0 < CHK ? l->K : k0 + CHK, len = (k1 - k0 + 7) / 8 * 8;
            c = (nchunk){1, 1, len, 0, 0, 0, 0};
            wofs = k0;
            int nrun = patch_runs(cp, l, k0, k1, s->off, s->rl);
            for (int64_t t = 0; t < nb; t++) {
                float *d = s->buf + t * l->rs;
                isa->copy(d, l->src + oy[t] * cp->sh * l->xc + ox[t] * cp->sw, s->off, s->rl, nrun);
                for (int64_t k = k1 - k0; k < len; k++) d[k] = 0.0f;
                xq[t] = d;
            }
        }
        isa->groups(gr, ng, &c, xq, w0 + wofs, Kn, s->gacc, acc, ch == 0, ch == l->nchunk - 1, ypf, ch ? 0 : npf);
    }
    /* act(acc + bias) * scale where kept, 0 elsewhere */
    isa->out(j, acc, bits, nc, c0, q0, nb);
    return n;
}

/* items channel-chunk major, so that consecutive items share their weights; taken one at a
 * time from a shared counter (dynamic, so that both threads finish together) */
typedef struct n_job { const djob *j; const nlayout *l; const nisa *isa; uint8_t *slots; int64_t nitems, next; } n_job;
/* task b of one per thread: slot b its own */
static void neuron_task(void *ctx, int64_t b, int64_t e) {
    n_job *nj = ctx;
    const djob *j = nj->j;
    const nlayout *l = nj->l;
    const conv_params *cp = j->cp;
    nslot *s = (nslot *)(nj->slots + b * slot_bytes(l));
    uint64_t done = 0;
    for (int64_t it; (it = __atomic_fetch_add(&nj->next, 1, __ATOMIC_RELAXED)) < nj->nitems;) {
        int64_t ch = it / l->nblk, blk = it % l->nblk, q0, q1;
        if (!l->nbr) {
            q0 = blk * (cp->oh * cp->ow) / l->nblk;
            q1 = (blk + 1) * (cp->oh * cp->ow) / l->nblk;
        } else {
            int64_t oy = blk / l->nbr, bi = blk % l->nbr;
            q0 = oy * cp->ow + bi * cp->ow / l->nbr;
            q1 = oy * cp->ow + (bi + 1) * cp->ow / l->nbr;
        }
        int64_t c0 = ch * NCN, c1 = c0 + NCN < j->mg ? c0 + NCN : j->mg;
        done += neuron_item(j, l, nj->isa, s, q0, q1 - q0, c0, c1);
    }
    __atomic_fetch_add(j->done, done, __ATOMIC_RELAXED);
    (void)b; (void)e;
}

/* -- the entry points (drowsy_internal.h) ----------------------------------------------------- */
/* scratch: xp (direct: blocks of Hp x Wp x CB; copy: cg x Hp x Wp; and 8 spare floats), wn
 * (M x Kn), then a slot per thread */
static size_t xp_bytes(const nlayout *l) { return ALIGN64((size_t)(l->Hp * l->Wp * l->cg + 8) * sizeof(float)); }
static size_t wn_bytes(const conv_params *cp, const nlayout *l) { return ALIGN64((size_t)(cp->m * l->Kn) * sizeof(float)); }

size_t neuron_scratch_bytes(const conv_params *cp, int threads) {
    nlayout l;
    neuron_layout(cp, &l);
    return xp_bytes(&l) + wn_bytes(cp, &l) + (size_t)(threads < 1 ? 1 : threads) * slot_bytes(&l);
}

/* returns the slots */
static uint8_t *neuron_bind(const conv_params *cp, void *scratch, nlayout *l) {
    neuron_layout(cp, l);
    l->xp = (const float *)scratch;
    l->wn = (const float *)((uint8_t *)scratch + xp_bytes(l));
    return (uint8_t *)scratch + xp_bytes(l) + wn_bytes(cp, l);
}

void neuron_prepare_weights(pool *p, const conv_params *cp, const float *w, void *scratch) {
    nlayout l;
    neuron_bind(cp, scratch, &l);
    nw_job wj = {cp, &l, w, (float *)l.wn};
    pool_for(p, cp->m, 1, neuron_weights_task, &wj);
}

void neuron_conv_group(pool *p, const djob *j, void *scratch) {
    const conv_params *cp = j->cp;
    nlayout l;
    uint8_t *slots = neuron_bind(cp, scratch, &l);
    float *xp = (float *)l.xp;
    if (l.direct) {
        nx_job xj = {cp, &l, j->x, xp};
        task_fn nhwc = nhwc_base;
#ifdef HAVE_DISPATCH
        if (have_avx2()) nhwc = nhwc_avx2;
#endif
        pool_for(p, l.Hp, 1, nhwc, &xj);
    } else {
        /* the input itself when no tap falls outside it and the copies' overreach (up to 8
         * floats from the last tap of the last pixel) stays inside it */
        int64_t last = ((l.cg - 1) * cp->h + (cp->oh - 1) * cp->sh + (cp->kh - 1) * cp->dh) * cp->w +
                       (cp->ow - 1) * cp->sw + (cp->kw - 1) * cp->dw;
        if (cp->pt == 0 && cp->pl == 0 && l.Hp <= cp->h && l.Wp <= cp->w && last + 8 <= l.cg * cp->h * cp->w) {
            l.src = j->x; l.xr = cp->h; l.xc = cp->w;
        } else {
            conv_pad_input(p, cp, j->x, l.cg, l.Hp, l.Wp, xp);
            l.src = xp; l.xr = l.Hp; l.xc = l.Wp;
        }
    }
    memset(xp + l.Hp * l.Wp * l.cg, 0, 8 * sizeof(float));   /* the spare floats a copy may read */
    n_job nj = {j, &l, &isa_base, slots, l.nblk * ((j->mg + NCN - 1) / NCN), 0};
#ifdef HAVE_DISPATCH
    if (have_avx2()) nj.isa = &isa_avx2;
#endif
    pool_for(p, pool_threads(p), 1, neuron_task, &nj);
}
