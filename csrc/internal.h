/* Internal structures of the C runtime: the model (format.c), plans and sessions
 * (runtime.c, ops.c), the thread pool (threads.c) and the kernels (conv.c, gemm.c, ...,
 * which mirror kernels/<op>.py file for file and know nothing of graphs). */
#ifndef AIPN_INTERNAL_H
#define AIPN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "aipnet.h"

#define MAXD 8
enum { DT_F32 = 1, DT_U8 = 2, DT_I8 = 3, DT_I32 = 6, DT_I64 = 7, DT_BOOL = 9 };
enum { AT_INT = 1, AT_FLOAT = 2, AT_STRING = 3, AT_INTS = 4, AT_FLOATS = 5, AT_STRINGS = 6, AT_TENSOR = 7 };
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_CLIP = 2, ACT_LEAKY = 3 };

/* -- errors ----------------------------------------------------------------------- */
aipn_status aipn_fail(aipn_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t dtype_size(int dtype);

/* -- arena: every allocation of a model or plan, freed at once ------------------------ */
typedef struct arena_block arena_block;
typedef struct arena { arena_block *head; } arena;
void *arena_alloc(arena *a, size_t n); /* zeroed, 64-byte aligned; NULL on overflow/OOM */
void arena_free(arena *a);

/* -- model ---------------------------------------------------------------------------- */
typedef struct attr {
    const char *name;
    int type;
    int64_t i;
    float f;
    const char *s;
    uint32_t n;          /* ints / floats / strings count */
    int64_t *ints;
    float *floats;
    const char **strs;
    int tdtype, tndim;   /* tensor */
    int64_t tdims[MAXD];
    void *tdata;
    size_t tnumel;
} attr;

typedef struct node {
    int op;              /* index into the op table (ops.c) */
    const char *opname;
    const char *name;
    uint32_t nin, nout, nattr;
    int32_t *in;         /* value ids, -1 for an absent optional input */
    int32_t *out;
    attr *attrs;
} node;

/* A value: a stored tensor (const), a graph input or a node output. */
typedef struct valdecl {
    const char *name;
    int kind;            /* 0 tensor, 1 input, 2 node output */
    int dtype;
    int ndim;            /* -1 unknown rank (inputs) */
    int64_t dims[MAXD];
    const void *data;    /* tensors */
    size_t numel;
} valdecl;

struct aipn_model {
    arena mem;
    void *map; size_t map_size;   /* mmap of a file */
    void *copy;                   /* malloc'd copy of a memory model */
    uint32_t opset;
    uint32_t nvals, ntensors, ninputs, noutputs, nnodes, nmeta;
    valdecl *vals;                /* tensors, then inputs, then node outputs */
    int32_t *inputs, *outputs;    /* value ids */
    node *nodes;
    const char **meta_k, **meta_v;
};

aipn_status aipn_parse(aipn_model *m, const uint8_t *buf, size_t size, uint32_t flags);
uint32_t aipn_crc32(uint32_t crc, const void *data, size_t n);
const attr *node_attr(const node *n, const char *name);

/* -- thread pool ---------------------------------------------------------------------- */
typedef struct pool pool;
typedef void (*task_fn)(void *ctx, int64_t begin, int64_t end);
pool *pool_new(int threads);
void pool_free(pool *p);
int pool_threads(const pool *p);
/* Run fn over [0, n) split in chunks of at least `grain` items; blocks until done. */
void pool_for(pool *p, int64_t n, int64_t grain, task_fn fn, void *ctx);

/* -- kernels (mirrors of kernels/<op>.py) ------------------------------------------------- */
/* activation.c */
void act_inplace(pool *p, float *x, int64_t n, int act, float p0, float p1);
void bias_act_rows(pool *p, float *y, int64_t rows, int64_t cols, const float *bias, int act, float p0, float p1);
void bias_act_cols(pool *p, float *y, int64_t rows, int64_t cols, const float *bias, int act, float p0, float p1);
void sigmoid_f32(pool *p, const float *x, float *y, int64_t n);
void tanh_f32(pool *p, const float *x, float *y, int64_t n);
/* gemm.c: C[m x n] (ldc) = op(A)[m x k] * op(B)[k x n] (+ C if accumulate); row-major */
void sgemm(pool *p, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int trans_a,
           const float *b, int64_t ldb, int trans_b, float *c, int64_t ldc, int accumulate);
/* y[r, :] = x[r, :] . W^T for W n x k row-major (the FC shape), any batch */
void fc_f32(pool *p, const float *x, int64_t rows, int64_t k, const float *w, int64_t n, float *y);
const char *gemm_isa(void);
/* A packed whole, for reuse (the exact conv's weights, packed once per layer for the panel
 * engine) and for sharing between threads (sgemm packs its shared operand the same way): K
 * in blocks of gemm_kstep(k) rows; within the block at pc (kc rows), ceil(m / GEMM_MR)
 * panels of kc x GEMM_MR (zero rows past m) at pa + pc * mpad, mpad = m rounded up to
 * GEMM_MR. Buffers 64-byte aligned. */
enum { GEMM_MR = 6 };
int64_t gemm_kstep(int64_t k);
size_t gemm_packed_a_floats(int64_t m, int64_t k);
void gemm_pack_a(pool *p, int64_t m, int64_t k, const float *a, int64_t lda, int trans_a, float *dst);
/* conv.c */
typedef struct conv_params {
    int64_t n, c, h, w, m, kh, kw, oh, ow;
    int64_t sh, sw, dh, dw, pt, pl, group;
    int weights_const;        /* the weights never change: conv2d packs them once into its scratch */
} conv_params;
size_t conv_scratch_floats(const conv_params *cp);
/* the panel engine (conv_panels.c) takes the conv: its padded plane is under 2^31 floats (32-bit
 * offsets) and there is something to sum; the others run exact on im2col + sgemm, and
 * DrowsyNet refuses them (its masked kernels all pad the input) */
int panel_fits(const conv_params *cp);
/* xpad[c, yy, xx] = x[c, yy - pt, xx - pl] for `channels` planes of Hp x Wp, 0 outside the
 * image (Hp x Wp covers exactly the taps the output reads); used by the panel engine
 * (conv_panels.c: the exact conv and DrowsyNet's tile, pixel, channel) and the neuron kernel. */
void conv_pad_input(pool *p, const conv_params *cp, const float *x, int64_t channels, int64_t Hp, int64_t Wp,
                    float *xpad);
/* rows [r0, r1) of it (row r: padded row r % Hp of channel r / Hp) on the calling thread, for
 * callers that schedule the padding with other work */
void conv_pad_rows(const conv_params *cp, const float *x, int64_t Hp, int64_t Wp, float *xpad, int64_t r0, int64_t r1);
/* One output of a single-input-channel (depthwise) kernel at output pixel (oy, ox), summed
 * over the taps that fall inside the image: xc is the input plane, wk the kh x kw kernel. */
static inline float depthwise_tap_sum(const conv_params *cp, const float *xc, const float *wk, int64_t oy,
                                      int64_t ox) {
    float acc = 0.0f;
    for (int64_t i = 0; i < cp->kh; i++) {
        int64_t iy = oy * cp->sh - cp->pt + i * cp->dh;
        if (iy < 0 || iy >= cp->h) continue;
        for (int64_t jj = 0; jj < cp->kw; jj++) {
            int64_t ix = ox * cp->sw - cp->pl + jj * cp->dw;
            if (ix >= 0 && ix < cp->w) acc += xc[iy * cp->w + ix] * wk[i * cp->kw + jj];
        }
    }
    return acc;
}
/* a spin-wait loop's pause (the pool's workers, the panel engine's waits) */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
/* depthwise: one input channel per group (conv2d and conv2d_drowsy use direct kernels for it) */
static inline int conv_is_depthwise(const conv_params *cp) { return cp->group == cp->c && cp->group > 1; }
void conv2d(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias,
            float *y, float *scratch, int act, float p0, float p1);
/* pool.c */
typedef struct pool_params {
    int64_t planes, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int count_include_pad;
} pool_params;
void maxpool2d(pool *p, const pool_params *pp, const float *x, float *y);
void avgpool2d(pool *p, const pool_params *pp, const float *x, float *y);
void global_pool(pool *p, const float *x, int64_t planes, int64_t s, int is_max, float *y);
/* norm.c */
void lrn_f32(pool *p, const float *x, int64_t n, int64_t c, int64_t s, int64_t size, float alpha,
             float beta, float bias, float *y);
void scale_shift_f32(pool *p, const float *x, int64_t n, int64_t c, int64_t s, const float *scale,
                     const float *shift, float *y);
/* softmax.c */
void softmax_f32(pool *p, const float *x, int64_t o, int64_t l, int64_t i, int log, float *y);
/* aip.c: one AIP FC layer (mirror of kernels/aip.py and engine/aip.py aip_fc) */
enum { AIP_ROLE_RELU = 0, AIP_ROLE_FINAL = 1, AIP_ROLE_DENSE = 2 };
typedef struct aip_fc_layer {
    int64_t n, kdim, k, nb;   /* outputs, inputs, subset size, blocks of 16 rows */
    const float *approx;      /* nb x k x 16 */
    const float *rest;        /* n x (kdim - k) */
    const int64_t *perm;      /* kdim: the subset, then the rest */
    const float *bias;        /* n, or NULL */
    float scale;
} aip_fc_layer;
typedef struct aip_fc_knobs {
    int role;                 /* AIP_ROLE_* */
    float theta;              /* relu role: refine where some sample's estimate > theta */
    int64_t refine;           /* final role: candidates refined per sample */
    int approx;               /* 1: estimates only */
    int skip_zeros;           /* skip the lines of inputs zero in every sample */
    int act; float p0, p1;    /* fused activation, applied at the end by roles other than relu */
} aip_fc_knobs;
typedef struct aip_fc_counts {
    uint64_t macs, macs_skipped, weight_bytes_read, outputs_refined, rows_refined;
} aip_fc_counts;
size_t aip_fc_scratch_bytes(const aip_fc_layer *l, int64_t batch);
/* y (batch x n) from x (batch x kdim); scratch of aip_fc_scratch_bytes, 64-byte aligned */
void aip_fc_run(pool *p, const aip_fc_layer *l, const aip_fc_knobs *kn, const float *x, int64_t batch, float *y,
                void *scratch, aip_fc_counts *c);

/* drowsy.c: DrowsyNet masks and masked convolution (mirror of kernels/drowsy.py) */
enum { DROWSY_NEURON = 0, DROWSY_PIXEL = 1, DROWSY_CHANNEL = 2, DROWSY_TILE = 3 };
enum { DROWSY_TILE_C = 16, DROWSY_TILE_P = 64 };
typedef struct drowsy_knobs {
    int gran;                 /* DROWSY_* */
    uint64_t seed, image0;    /* image id of image n of the batch: image0 + n, or 0 when fixed */
    int fixed;
    int64_t layer;            /* position among the graph's Conv nodes */
    uint32_t thr;             /* floor(p * 2^24) */
    float scale;              /* survivors x scale */
    int weights_const;        /* the neuron kernel may reorder the weights once */
} drowsy_knobs;
typedef struct drowsy_counts { uint64_t macs, outputs; } drowsy_counts;
uint64_t drowsy_key(uint64_t seed, uint64_t image, uint64_t layer);
uint32_t drowsy_threshold(double p);
int64_t drowsy_unit_count(int gran, int64_t m, int64_t p);
/* threads: of the pool the conv will run on (the neuron kernel has per-thread buffers) */
size_t conv_drowsy_scratch_bytes(const conv_params *cp, int gran, int threads);
/* y (all of it) from x: kept outputs act(acc + bias) * scale, dropped 0; scratch of
 * conv_drowsy_scratch_bytes for pool_threads(p), 64-byte aligned, kept between runs (*wt_ready: what it
 * keeps is valid: the neuron kernel's reordered weights, the panel engine's set-up) */
void conv2d_drowsy(pool *p, const conv_params *cp, const float *x, const float *w, const float *bias, float *y,
                   void *scratch, int act, float p0, float p1, const drowsy_knobs *kn, int *wt_ready,
                   drowsy_counts *cnt);

#if defined(__x86_64__) && defined(__GNUC__)
/* 1 when the CPU runs AVX2 and FMA (runtime dispatch of the kernels; defined in gemm.c) */
int aipn_cpu_has_avx2_fma(void);
/* 1 when it also runs AVX-512F and DQ, and AVX2 is on (gemm.c) */
int aipn_cpu_has_avx512dq(void);
#endif

#endif
