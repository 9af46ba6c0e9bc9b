/* Internals shared by the DrowsyNet kernels: drowsy.c (masks, depthwise, the dispatcher
 * conv2d_drowsy, which runs the tile, pixel and channel granularities on the panel engine of
 * conv_panels.c) and drowsy_neuron.c (the neuron granularity). Not part of the public API. */
#ifndef AIPN_DROWSY_INTERNAL_H
#define AIPN_DROWSY_INTERNAL_H

#include "conv_panels.h"   /* the panel engine, the vector types and the AVX2 dispatch */

/* the work of one image and group, shared by the tasks */
typedef struct djob {
    const conv_params *cp;
    const float *x;          /* this group's input channels (C/group x H x W) */
    const float *bias;
    float *y;                /* this image's output (M x P) */
    const uint8_t *units;    /* this image's unit mask: a byte a unit, or */
    const uint64_t *ubits;   /* neuron: a bit a unit (unit u at bit u % 64 of word u / 64) */
    int act; float p0, p1, scale;
    int64_t K, P, row0, mg;
    /* counts, one slot per task start (summed afterwards) */
    uint64_t *done;
} djob;

/* -- neuron granularity (drowsy_neuron.c) ---------------------------------------------------- */
/* bytes of the neuron kernel's own scratch (padded channels-last image, reordered weights,
 * the work buffers of each of `threads` threads), 64-byte aligned regions */
size_t neuron_scratch_bytes(const conv_params *cp, int threads);
/* the weights reordered into the scratch (once per layer when they are constant) */
void neuron_prepare_weights(pool *p, const conv_params *cp, const float *w, void *scratch);
/* one image and group (j: x, y, units, row0, mg, bias, act, scale, done) on at most the
 * threads the scratch was sized for (pool_threads(p)): every output of
 * rows [row0, row0 + mg) written, kept ones act(acc + bias) * scale, dropped ones 0;
 * outputs computed added to *j->done */
void neuron_conv_group(pool *p, const djob *j, void *scratch);

#endif
