/* Plans and sessions: shared by runtime.c (API, planning, execution, stats) and ops.c
 * (the op table: attribute checks, output shapes, cost and run of every op). */
#ifndef AIPN_RUNTIME_H
#define AIPN_RUNTIME_H

#include "internal.h"

/* a value of one plan: shape known at plan time, data set at plan time (constants,
 * intermediate buffers) or at run time (graph inputs, views) */
typedef struct val {
    int dtype, ndim;
    int64_t dims[MAXD];
    int64_t numel;
    void *data;
    int is_const;   /* known at plan time (weights, folded shape chains) */
    int defined;
} val;

typedef struct step {
    const node *nd;
    int is_view;    /* output 0 aliases input 0 (Reshape, Flatten, ...) */
    int act; float p0, p1;
    conv_params cp;
    pool_params pp;
    int64_t i[12];  /* op-specific integers */
    float f[4];     /* op-specific floats */
    int64_t perm[MAXD];
    const float *w, *bias;   /* weights arranged at plan time */
    float *scratch;
    uint32_t weight_mask;    /* which inputs count as weights */
    uint64_t macs, wbytes, wtotal, aread, awritten, outputs;
    void *aip;               /* AipFC: its layer (ops.c) */
    int counted;             /* the last run counted its work (AIP): cnt replaces the cost */
    aip_fc_counts cnt;
    const char *role;        /* AIP role name, for the stats */
    /* DrowsyNet (Conv with a drop rate > 0): knobs, scratch, the last run's counts */
    int drowsy;              /* 1: this conv runs masked */
    double drowsy_rate;
    drowsy_knobs dk;
    void *dscratch;
    int dwt_ready;
    drowsy_counts dcnt;
} step;

typedef struct plan {
    arena mem;
    struct plan *next;
    uint32_t nin;
    int64_t key[16 * (MAXD + 1)];
    uint32_t keylen;
    val *vals;
    step *steps;
    uint32_t nsteps;
    const aipn_config *cfg;  /* the session's knobs */
    int threads;             /* of the session's pool (per-thread scratch) */
    uint64_t image_offset;   /* DrowsyNet image id of the batch's first image (this run) */
} plan;

typedef struct op_def {
    const char *name;
    aipn_status (*prep)(plan *pl, const aipn_model *m, step *st);
    aipn_status (*run)(pool *p, plan *pl, step *st);
} op_def;

extern const op_def OPS[];
extern const int NOPS;
int op_lookup(const char *name);

#endif
