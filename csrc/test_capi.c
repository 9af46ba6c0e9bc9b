/* C API tests, run under AddressSanitizer + UndefinedBehaviorSanitizer by `make check`:
 *   test_capi_san MODEL.aipn     (a small model, e.g. tests/small_cnn.aipn: input N x 3 x 16 x 16)
 * Null pointers, wrong counts and buffer sizes get error statuses; a model truncated at
 * every offset and with every header/table byte flipped gets an error, never a crash;
 * runs at batch 1 and 3 give finite softmax rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aipnet.h"

static int failures, checks;
#define EXPECT(cond, ...) do { checks++; if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (%s)\n", aipn_last_error()); } } while (0)

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void run_batch(aipn_session *s, int64_t batch) {
    size_t nin = (size_t)batch * 3 * 16 * 16;
    float *x = malloc(nin * sizeof(float)), *y = malloc((size_t)batch * 10 * sizeof(float));
    for (size_t i = 0; i < nin; i++) x[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
    aipn_tensor in = {4, {batch, 3, 16, 16}, x, nin}, out = {0};
    out.data = y;
    out.len = (size_t)batch * 10;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_OK, "run batch %lld", (long long)batch);
    EXPECT(out.ndim == 2 && out.dims[0] == batch && out.dims[1] == 10, "output shape");
    for (int64_t b = 0; b < batch; b++) {
        float sum = 0;
        for (int k = 0; k < 10; k++) sum += y[b * 10 + k];
        EXPECT(isfinite(sum) && fabsf(sum - 1.0f) < 1e-4f, "softmax row %lld sums to %g", (long long)b, sum);
    }
    /* wrong sizes */
    in.len = nin - 1;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_ERR_SIZE, "short input len");
    in.len = nin;
    out.len = (size_t)batch * 10 - 1;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_ERR_SIZE, "short output len");
    out.len = (size_t)batch * 10;
    in.dims[2] = 15;
    in.len = (size_t)batch * 3 * 15 * 16;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_ERR_SHAPE, "wrong input dim");
    in.dims[2] = 16;
    in.len = nin;
    in.ndim = 3;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_ERR_SHAPE, "wrong input rank");
    in.ndim = 4;
    in.data = NULL;
    EXPECT(aipn_session_run(s, &in, 1, &out, 1) == AIPN_ERR_ARGUMENT, "NULL input data");
    in.data = x;
    EXPECT(aipn_session_run(s, &in, 2, &out, 1) == AIPN_ERR_ARGUMENT, "wrong input count");
    EXPECT(aipn_session_run(s, NULL, 1, &out, 1) == AIPN_ERR_ARGUMENT, "NULL inputs");
    EXPECT(aipn_session_run(s, &in, 1, NULL, 1) == AIPN_ERR_ARGUMENT, "NULL outputs");
    EXPECT(aipn_session_run(s, &in, 1, &out, 0) == AIPN_ERR_ARGUMENT, "wrong output count");
    free(x);
    free(y);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_capi MODEL.aipn\n"); return 2; }
    size_t size;
    unsigned char *buf = read_file(argv[1], &size);
    if (!buf) { fprintf(stderr, "cannot read %s\n", argv[1]); return 2; }
    aipn_model *m = NULL;
    aipn_session *s = NULL;

    /* null pointers and bad arguments */
    EXPECT(aipn_model_load_file(NULL, 0, &m) == AIPN_ERR_ARGUMENT, "NULL path");
    EXPECT(aipn_model_load_file(argv[1], 0, NULL) == AIPN_ERR_ARGUMENT, "NULL out");
    EXPECT(aipn_model_load_file("/nonexistent/x.aipn", 0, &m) == AIPN_ERR_IO && m == NULL, "missing file");
    EXPECT(aipn_model_load_file("/", 0, &m) == AIPN_ERR_IO, "a directory");
    EXPECT(aipn_model_load_memory(NULL, 10, 0, &m) == AIPN_ERR_ARGUMENT, "NULL data");
    EXPECT(aipn_model_load_memory(buf, size, 0, NULL) == AIPN_ERR_ARGUMENT, "NULL out (memory)");
    EXPECT(aipn_session_new(NULL, NULL, &s) == AIPN_ERR_ARGUMENT, "NULL model");
    EXPECT(aipn_session_run(NULL, NULL, 0, NULL, 0) == AIPN_ERR_ARGUMENT, "NULL session");
    EXPECT(aipn_session_stats(NULL, NULL, NULL, NULL) == AIPN_ERR_ARGUMENT, "NULL stats");
    EXPECT(aipn_model_num_inputs(NULL, NULL) == AIPN_ERR_ARGUMENT, "NULL num_inputs");
    aipn_model_free(NULL);
    aipn_session_free(NULL);

    /* a good model, from the file and from (unaligned) memory */
    EXPECT(aipn_model_load_file(argv[1], 0, &m) == AIPN_OK, "load file");
    if (!m) return 1;
    const char *v;
    EXPECT(aipn_model_meta(m, "producer", &v) == AIPN_OK && v && !strcmp(v, "aipnet"), "metadata");
    aipn_config cfg;
    aipn_config_default(&cfg);
    cfg.threads = -1;
    EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_ERR_ARGUMENT, "negative threads");
    cfg.threads = 2;
    cfg.struct_size = 4;
    EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_ERR_ARGUMENT, "bad struct_size");
    aipn_config_default(&cfg);
    cfg.drowsy = 1.0;
    EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_ERR_ARGUMENT, "drowsy rate 1");
    aipn_config_default(&cfg);
    cfg.drowsy_granularity = 4;
    EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_ERR_ARGUMENT, "drowsy granularity 4");
    /* DrowsyNet: every granularity, batches 1 and 3, under the sanitizers */
    for (int g = 0; g < 4; g++) {
        aipn_config_default(&cfg);
        cfg.threads = 2;
        cfg.drowsy = 0.5;
        cfg.drowsy_granularity = g;
        cfg.seed = 7;
        EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_OK, "drowsy session, granularity %d", g);
        EXPECT(aipn_session_set_image_offset(s, 5) == AIPN_OK, "image offset");
        run_batch(s, 1);
        run_batch(s, 3);
        aipn_session_free(s);
    }
    aipn_config_default(&cfg);
    cfg.threads = 2;
    EXPECT(aipn_session_new(m, &cfg, &s) == AIPN_OK, "session");
    run_batch(s, 1);
    run_batch(s, 3);
    run_batch(s, 1);
    const aipn_layer_stats *layers;
    uint32_t nl;
    const char *src;
    EXPECT(aipn_session_stats(s, &layers, &nl, &src) == AIPN_OK && nl > 0 && !strcmp(src, "analytic"), "stats");
    aipn_session_free(s);
    aipn_model_free(m);
    unsigned char *odd = malloc(size + 1);
    memcpy(odd + 1, buf, size);
    EXPECT(aipn_model_load_memory(odd + 1, size, 0, &m) == AIPN_OK, "unaligned memory");
    aipn_model_free(m);
    free(odd);

    /* truncated at every offset: each a fresh heap block of exactly n bytes (ASan sees overreads) */
    for (size_t n = 0; n < size; n++) {
        unsigned char *t = malloc(n ? n : 1);
        memcpy(t, buf, n);
        m = NULL;
        EXPECT(aipn_model_load_memory(t, n, AIPN_LOAD_COPY, &m) != AIPN_OK && !m, "truncated at %zu loads", n);
        aipn_model_free(m);
        free(t);
    }
    /* every header and table byte flipped: an error with checksums, no crash without */
    uint64_t tsize;
    memcpy(&tsize, buf + 32, 8);
    unsigned char *c = malloc(size);
    for (size_t i = 0; i < 64 + tsize && i < size; i++) {
        memcpy(c, buf, size);
        c[i] ^= 0xFF;
        m = NULL;
        EXPECT(aipn_model_load_memory(c, size, AIPN_LOAD_COPY, &m) != AIPN_OK, "flipped byte %zu loads", i);
        aipn_model_free(m);
        m = NULL;
        if (aipn_model_load_memory(c, size, AIPN_LOAD_COPY | AIPN_LOAD_SKIP_CHECKSUMS, &m) == AIPN_OK) {
            /* a corrupt model that still parses must fail cleanly (or run) in a session too */
            aipn_session *cs = NULL;
            if (aipn_session_new(m, NULL, &cs) == AIPN_OK) {
                static float x[3 * 16 * 16], y[64];
                aipn_tensor in = {4, {1, 3, 16, 16}, x, 3 * 16 * 16}, out[4];
                memset(out, 0, sizeof out);
                for (int o = 0; o < 4; o++) { out[o].data = y; out[o].len = 64; }
                uint32_t nin = 0, nout = 0;
                aipn_model_num_inputs(m, &nin);
                aipn_model_num_outputs(m, &nout);
                if (nin == 1 && nout <= 4) aipn_session_run(cs, &in, 1, out, nout);
                aipn_session_free(cs);
            }
            aipn_model_free(m);
        }
    }
    /* newer major version */
    memcpy(c, buf, size);
    c[8] = 2;
    EXPECT(aipn_model_load_memory(c, size, AIPN_LOAD_COPY, &m) == AIPN_ERR_VERSION && strstr(aipn_last_error(), "newer"),
           "newer version refused");
    free(c);
    free(buf);
    printf("test_capi: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
