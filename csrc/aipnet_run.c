/* aipnet-run MODEL.aipn IN OUT [--threads N] [--no-verify] [--repeat N]
 *            [--aip] [--aip-threshold T] [--aip-refine N] [--aip-mode refine|approx]
 *            [--no-aip-skip-zeros] [--drowsy P] [--drowsy-granularity neuron|pixel|channel|tile]
 *            [--drowsy-rescale|--no-drowsy-rescale] [--drowsy-fixed-mask] [--seed S]
 *            [--image-offset N]
 *
 * Runs a one-input model on IN and writes its first output to OUT, with no Python.
 * IN and OUT are .npy files (float32, C order) when their names end in .npy, raw
 * little-endian float32 otherwise; a raw input's shape is the model's declared input
 * shape with the batch (and any other unknown dim) inferred from the file size.
 * --repeat N runs the session N times on IN (same output each time; for cachegrind's
 * steady-state traffic: misses of N runs minus those of one). The AIP and DrowsyNet
 * knobs are the aipn_config fields (aipnet.h), spelled like the `aipnet` CLI flags;
 * --image-offset N: the DrowsyNet image id of the input's first image (default 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aipnet.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int die(const char *what) {
    fprintf(stderr, "aipnet-run: error: %s\n", what);
    return 2;
}

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        unsigned char *nb = realloc(buf, cap *= 2);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    fclose(f);
    *size = n;
    return buf;
}

/* minimal .npy reader: version 1/2/3, '<f4', C order */
static int parse_npy(unsigned char *buf, size_t size, aipn_tensor *t) {
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6)) return 0;
    size_t hl, off;
    if (buf[6] == 1) { hl = buf[8] | (size_t)buf[9] << 8; off = 10; }
    else { if (size < 12) return 0; hl = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24; off = 12; }
    if (hl > size - off) return 0;
    char *h = malloc(hl + 1);
    if (!h) return 0;
    memcpy(h, buf + off, hl);
    h[hl] = 0;
    int ok = strstr(h, "'<f4'") && strstr(h, "'fortran_order': False");
    char *sh = strstr(h, "'shape': (");
    t->ndim = 0;
    size_t numel = 1;
    if (ok && sh) {
        sh += 10;
        while (*sh && *sh != ')' && t->ndim < 8) {
            char *end;
            long long v = strtoll(sh, &end, 10);
            if (end == sh) break;
            t->dims[t->ndim++] = v;
            numel *= (size_t)v;
            sh = end;
            while (*sh == ',' || *sh == ' ') sh++;
        }
    } else {
        ok = 0;
    }
    free(h);
    off += hl;
    if (!ok || (size - off) / 4 < numel) return 0;
    t->data = (float *)(void *)(buf + off);
    t->len = numel;
    return 1;
}

static int write_npy(const char *path, const aipn_tensor *t, size_t numel) {
    char shape[256] = "";
    size_t p = 0;
    for (int i = 0; i < t->ndim; i++)
        p += (size_t)snprintf(shape + p, sizeof shape - p, "%lld,%s", (long long)t->dims[i], i + 1 < t->ndim ? " " : "");
    if (t->ndim > 1) shape[p - 1] = 0;
    char head[512];
    int n = snprintf(head, sizeof head, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shape);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((n + 1 + pad) & 0xFF),
                             (unsigned char)((n + 1 + pad) >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(head, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t w = fwrite(t->data, 4, numel, f);
    return fclose(f) == 0 && w == numel;
}

int main(int argc, char **argv) {
    const char *paths[3] = {0};
    int np = 0, threads = 0, repeat = 1, bad = 0;
    uint32_t flags = 0;
    unsigned long long image_offset = 0;
    aipn_config cfg;
    aipn_config_default(&cfg);
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--aip")) { cfg.aip = 1; continue; }
        if (!strcmp(argv[i], "--no-aip")) { cfg.aip = 0; continue; }
        if (!strcmp(argv[i], "--aip-skip-zeros")) { cfg.aip_skip_zeros = 1; continue; }
        if (!strcmp(argv[i], "--no-aip-skip-zeros")) { cfg.aip_skip_zeros = 0; continue; }
        if (!strcmp(argv[i], "--aip-threshold") && i + 1 < argc) {
            cfg.aip_threshold = strtof(argv[++i], &end);
            cfg.aip_threshold_set = 1;
            bad |= *end != 0 || end == argv[i];
            continue;
        }
        if (!strcmp(argv[i], "--aip-refine") && i + 1 < argc) {
            cfg.aip_refine = (int32_t)strtol(argv[++i], &end, 10);
            bad |= *end != 0 || end == argv[i] || cfg.aip_refine < 1;
            continue;
        }
        if (!strcmp(argv[i], "--aip-mode") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "refine")) cfg.aip_mode = 0;
            else if (!strcmp(argv[i], "approx")) cfg.aip_mode = 1;
            else bad = 1;
            continue;
        }
        if (!strcmp(argv[i], "--drowsy") && i + 1 < argc) {
            cfg.drowsy = strtod(argv[++i], &end);
            bad |= *end != 0 || end == argv[i];
            continue;
        }
        if (!strcmp(argv[i], "--drowsy-granularity") && i + 1 < argc) {
            static const char *names[] = {"neuron", "pixel", "channel", "tile"};
            int g = -1;
            i++;
            for (int k = 0; k < 4; k++) if (!strcmp(argv[i], names[k])) g = k;
            bad |= g < 0;
            cfg.drowsy_granularity = g < 0 ? 0 : g;
            continue;
        }
        if (!strcmp(argv[i], "--drowsy-rescale")) { cfg.drowsy_rescale = 1; continue; }
        if (!strcmp(argv[i], "--no-drowsy-rescale")) { cfg.drowsy_rescale = 0; continue; }
        if (!strcmp(argv[i], "--drowsy-fixed-mask")) { cfg.drowsy_fixed_mask = 1; continue; }
        if (!strcmp(argv[i], "--no-drowsy-fixed-mask")) { cfg.drowsy_fixed_mask = 0; continue; }
        if ((!strcmp(argv[i], "--seed") || !strcmp(argv[i], "--image-offset")) && i + 1 < argc) {
            int seed = !strcmp(argv[i], "--seed");
            unsigned long long v = strtoull(argv[++i], &end, 10);
            bad |= *end != 0 || end == argv[i] || argv[i][0] == '-';
            if (seed) cfg.seed = v;
            else image_offset = v;
            continue;
        }
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-verify")) flags |= AIPN_LOAD_SKIP_CHECKSUMS;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (np < 3) paths[np++] = argv[i];
        else np = 4;
    }
    if (np != 3 || repeat < 1 || bad) {
        fprintf(stderr, "usage: aipnet-run MODEL.aipn IN(.npy|raw f32) OUT(.npy|raw f32) [--threads N] [--no-verify] "
                        "[--repeat N] [--aip] [--aip-threshold T] [--aip-refine N] [--aip-mode refine|approx] "
                        "[--aip-skip-zeros|--no-aip-skip-zeros] [--drowsy P] "
                        "[--drowsy-granularity neuron|pixel|channel|tile] [--drowsy-rescale|--no-drowsy-rescale] "
                        "[--drowsy-fixed-mask|--no-drowsy-fixed-mask] [--seed S] [--image-offset N]\n");
        return 2;
    }
    aipn_model *m;
    if (aipn_model_load_file(paths[0], flags, &m) != AIPN_OK) return die(aipn_last_error());
    uint32_t nin, nout;
    aipn_model_num_inputs(m, &nin);
    aipn_model_num_outputs(m, &nout);
    if (nin != 1 || nout < 1) return die("aipnet-run takes models with one input");
    size_t size;
    unsigned char *buf = read_all(paths[1], &size);
    if (!buf) return die("cannot read the input file");
    aipn_tensor in = {0};
    if (ends_with(paths[1], ".npy")) {
        if (!parse_npy(buf, size, &in)) return die("the input is not a float32, C-order .npy file");
    } else {
        const char *name;
        int32_t nd;
        int64_t dims[8];
        aipn_model_input(m, 0, &name, &nd, dims);
        if (nd < 1) return die("the model's input rank is unknown: give a .npy input");
        size_t known = 1;
        int unknown = -1;
        for (int i = 0; i < nd; i++) {
            if (dims[i] < 0) { if (unknown >= 0) dims[i] = 1; else unknown = i; }
            else known *= (size_t)dims[i];
        }
        size_t numel = size / 4;
        if (size % 4 || !known || numel % known) return die("the raw input size does not fit the model's input shape");
        if (unknown >= 0) dims[unknown] = (int64_t)(numel / known);
        else if (numel != known) return die("the raw input size does not match the model's input shape");
        in.ndim = nd;
        memcpy(in.dims, dims, sizeof dims);
        in.data = (float *)(void *)buf;
        in.len = numel;
    }
    cfg.threads = threads;
    aipn_session *s;
    if (aipn_session_new(m, &cfg, &s) != AIPN_OK) return die(aipn_last_error());
    aipn_session_set_image_offset(s, image_offset);
    aipn_tensor *outs = calloc(nout, sizeof *outs);
    if (!outs || aipn_session_plan(s, &in, 1, outs, nout) != AIPN_OK) return die(aipn_last_error());
    for (uint32_t o = 0; o < nout; o++) {
        size_t numel = 1;
        for (int i = 0; i < outs[o].ndim; i++) numel *= (size_t)outs[o].dims[i];
        outs[o].data = malloc(numel * 4 + 4);
        outs[o].len = numel;
        if (!outs[o].data) return die("out of memory");
    }
    for (int r = 0; r < repeat; r++)
        if (aipn_session_run(s, &in, 1, outs, nout) != AIPN_OK) return die(aipn_last_error());
    int ok;
    if (ends_with(paths[2], ".npy")) {
        ok = write_npy(paths[2], &outs[0], outs[0].len);
    } else {
        FILE *f = fopen(paths[2], "wb");
        ok = f && fwrite(outs[0].data, 4, outs[0].len, f) == outs[0].len;
        if (f && fclose(f) != 0) ok = 0;
    }
    if (!ok) return die("cannot write the output file");
    for (uint32_t o = 0; o < nout; o++) free(outs[o].data);
    free(outs);
    free(buf);
    aipn_session_free(s);
    aipn_model_free(m);
    return 0;
}
