/* Time a model in the C runtime alone, with no Python (used to compare the portable
 * build against -march=native):
 *   make -C csrc && cc -O2 -Icsrc/include bench/c_model_bench.c csrc/libaipnet.a -lm -pthread -o /tmp/cb
 *   /tmp/cb MODEL.aipn [threads] [repeat]
 * Prints the median and minimum time of a batch-1 run on a random input. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "aipnet.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.aipn [threads] [repeat]\n", argv[0]); return 2; }
    int threads = argc > 2 ? atoi(argv[2]) : 1, repeat = argc > 3 ? atoi(argv[3]) : 20;
    aipn_model *m;
    aipn_session *s;
    aipn_config cfg;
    if (aipn_model_load_file(argv[1], AIPN_LOAD_SKIP_CHECKSUMS, &m) != AIPN_OK) { puts(aipn_last_error()); return 1; }
    aipn_config_default(&cfg);
    cfg.threads = threads;
    if (aipn_session_new(m, &cfg, &s) != AIPN_OK) { puts(aipn_last_error()); return 1; }
    aipn_tensor in = {0}, out = {0};
    const char *name;
    aipn_model_input(m, 0, &name, &in.ndim, in.dims);
    in.len = 1;
    for (int i = 0; i < in.ndim; i++) { if (in.dims[i] < 0) in.dims[i] = 1; in.len *= (size_t)in.dims[i]; }
    in.data = malloc(in.len * sizeof(float));
    for (size_t i = 0; i < in.len; i++) in.data[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    if (aipn_session_plan(s, &in, 1, &out, 1) != AIPN_OK) { puts(aipn_last_error()); return 1; }
    out.len = 1;
    for (int i = 0; i < out.ndim; i++) out.len *= (size_t)out.dims[i];
    out.data = malloc(out.len * sizeof(float));
    double *t = malloc(sizeof(double) * (size_t)repeat);
    aipn_session_run(s, &in, 1, &out, 1);
    for (int r = 0; r < repeat; r++) {
        double t0 = now();
        if (aipn_session_run(s, &in, 1, &out, 1) != AIPN_OK) { puts(aipn_last_error()); return 1; }
        t[r] = now() - t0;
    }
    qsort(t, (size_t)repeat, sizeof(double), cmp);
    printf("%s threads %d: median %.2f ms, min %.2f ms (%d runs)\n", argv[1], threads, t[repeat / 2] * 1e3, t[0] * 1e3, repeat);
    aipn_session_free(s);
    aipn_model_free(m);
    return 0;
}
