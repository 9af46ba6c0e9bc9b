/*
 * aipnet.h — the C API of aipnet, a CPU inference engine for CNNs.
 *
 * A C program loads a packed model (.aipn, written by `aipnet convert MODEL.onnx -o
 * MODEL.aipn`), makes a session from it and runs it on its own float32 buffers:
 *
 *     aipn_model *m;  aipn_session *s;  aipn_config cfg;
 *     if (aipn_model_load_file("vggf.aipn", 0, &m) != AIPN_OK) { puts(aipn_last_error()); return 1; }
 *     aipn_config_default(&cfg);  cfg.threads = 2;
 *     aipn_session_new(m, &cfg, &s);
 *     aipn_tensor in = {0}, out = {0};
 *     in.ndim = 4;  in.dims[0] = 1; in.dims[1] = 3; in.dims[2] = 224; in.dims[3] = 224;
 *     in.data = image;  in.len = 3 * 224 * 224;
 *     out.data = probs;  out.len = 1000;          // capacity in elements
 *     if (aipn_session_run(s, &in, 1, &out, 1) != AIPN_OK) puts(aipn_last_error());
 *     aipn_session_free(s);  aipn_model_free(m);
 *
 * Rules of the API: every call returns an aipn_status; on failure aipn_last_error()
 * gives a one-line message for humans (per thread, valid until the next failing call
 * on that thread). Handles are opaque; buffers are the caller's, with explicit lengths.
 * A model may back several sessions; one session runs one call at a time.
 *
 * ------------------------------------------------------------------------------------
 * The .aipn file format, version 1.0 (all integers little-endian)
 * ------------------------------------------------------------------------------------
 * header, 64 bytes:
 *   0  u8[8]  magic "AIPN\0\r\n\x1a"
 *   8  u16    format version major (a reader refuses a newer major; minor adds only
 *             things an older reader of the same major may ignore)
 *  10  u16    format version minor
 *  12  u32    alignment of tensor data (64)
 *  16  u32    flags (0)
 *  20  u32    ONNX opset of the graph
 *  24  u64    table offset (64)
 *  32  u64    table size in bytes
 *  40  u64    data section offset (a multiple of the alignment)
 *  48  u64    data section size
 *  56  u32    CRC-32 (IEEE, as zlib) of header bytes 0..55 followed by the table
 *  60  u32    reserved (0)
 * table (str = u32 byte length + UTF-8 bytes, no terminator):
 *   u32 n_meta;    n_meta x { str key; str value }
 *                  keys written today: producer, producer.version, graph.name, source,
 *                  source.hash ("sha256:..." of the source ONNX file), knobs (JSON of
 *                  the conversion knobs), onnx.* (the ONNX model's metadata_props)
 *   u32 n_tensors; n_tensors x { str name; u32 dtype; u32 layout; u32 ndim (<= 8);
 *                  i64 dims[ndim]; u64 offset (from the data section, aligned);
 *                  u64 nbytes (= product(dims) * element size); u32 CRC-32 of the data }
 *                  dtype: ONNX codes 1 float32, 2 uint8, 3 int8, 6 int32, 7 int64, 9 bool.
 *                  layout: 0 dense row-major; 1 reserved for the AIP blocked FC layout
 *                  (rows interleaved in blocks of 16 floats, added by a later minor).
 *   u32 n_inputs;  n_inputs x { str name; u32 dtype; i32 ndim (-1: unknown rank);
 *                  i64 dims[ndim] (-1: unknown, e.g. the batch) }
 *   u32 n_outputs; n_outputs x { str name }
 *   u32 n_nodes;   n_nodes x { str op (ONNX op type); str name; u32 n_in; str in[n_in]
 *                  ("" = absent optional input); u32 n_out; str out[n_out];
 *                  u32 n_attr; n_attr x attribute }
 *                  nodes are in execution order: every input is a tensor, a graph input
 *                  or an output of an earlier node (so no cycles, no dangling names).
 *   attribute:     str name; u32 type; then by type:
 *                  1 INT i64 | 2 FLOAT f32 | 3 STRING str | 4 INTS u32 n, i64[n] |
 *                  5 FLOATS u32 n, f32[n] | 6 STRINGS u32 n, str[n] |
 *                  7 TENSOR u32 dtype, u32 ndim, i64 dims[ndim], u64 nbytes, bytes
 *                  Engine attributes start with "_": "_act" (STRING relu|clip|leaky) and
 *                  "_act_params" (FLOATS p0, p1) are an activation fused by the
 *                  optimiser into Conv/Gemm/MatMul (clip: min, max; leaky: 0, alpha).
 * data section: the tensors, each at its aligned offset, zero padding between them.
 *
 * The graph is the optimised one (BatchNorm folded, activations fused, no-ops dropped).
 * Shape-computing chains (Shape -> Gather -> Concat -> Reshape) stay in the graph; the
 * runtime evaluates them once per distinct input shape (when it plans), so a file
 * works for any batch size.
 * Loading checks everything: sizes and offsets against the file, overlapping tensors,
 * dimension products that overflow, names, the graph order, ops and the checksums
 * (AIPN_LOAD_SKIP_CHECKSUMS skips the last).
 */
#ifndef AIPNET_H
#define AIPNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi's cdef reads the text between the two marker lines below (preprocessor lines
 * removed), so keep it free of macros. */
/* AIPN_CDEF_BEGIN */

typedef enum aipn_status {
    AIPN_OK = 0,
    AIPN_ERR_ARGUMENT = 1,    /* a null pointer, a wrong count, a bad knob */
    AIPN_ERR_IO = 2,          /* the file cannot be opened or read */
    AIPN_ERR_FORMAT = 3,      /* not an .aipn file, truncated or corrupt */
    AIPN_ERR_VERSION = 4,     /* an .aipn format version this build cannot read */
    AIPN_ERR_CHECKSUM = 5,    /* a checksum does not match */
    AIPN_ERR_MODEL = 6,       /* a well-formed file whose graph is invalid */
    AIPN_ERR_UNSUPPORTED = 7, /* an op or attribute value aipnet does not implement */
    AIPN_ERR_SHAPE = 8,       /* input shapes the model cannot take */
    AIPN_ERR_SIZE = 9,        /* a buffer length that does not match its shape */
    AIPN_ERR_MEMORY = 10,     /* out of memory */
    AIPN_ERR_INTERNAL = 11
} aipn_status;

enum {
    AIPN_MAX_DIMS = 8,
    AIPN_VERSION_MAJOR = 1,
    AIPN_VERSION_MINOR = 0,
    AIPN_LOAD_SKIP_CHECKSUMS = 1, /* load flag: do not verify CRCs */
    AIPN_LOAD_COPY = 2            /* load flag (memory): copy the bytes instead of referencing them */
};

typedef struct aipn_model aipn_model;
typedef struct aipn_session aipn_session;

/* Session knobs: every knob of aipnet.Session, spelled the same. Call
 * aipn_config_default first, then set what you need.
 *
 * AIP (approximate inner products in FC layers; DESIGN.md "AIP"), all off by default:
 *   aip            1: FC layers stored packed (op AipFC, `aipnet convert --aip ...`) run
 *                  the approximate pass and refine only the outputs that matter; 0: they
 *                  are exact (every row refined). Plain Gemm layers are packed for AIP by
 *                  the Python front end (aipnet.Session(..., backend="c", aip=True) packs
 *                  them at session creation with aip_fraction/aip_policy/seed, exactly as
 *                  the Numba backend does); this C runtime runs Gemm layers of an unpacked
 *                  model exactly and reports AIPN_ERR_UNSUPPORTED for aip = 1 on a model
 *                  with no AipFC layer and some Gemm layer, so nothing runs exact by mistake.
 *   aip_threshold_set, aip_threshold
 *                  theta: an output of a ReLU layer whose estimate is <= theta is 0 and
 *                  not refined. aip_threshold_set 0: each layer's stored (calibrated)
 *                  theta; 1: aip_threshold for every layer (any value but NaN; -inf
 *                  refines everything, +inf nothing). Compared in float32.
 *   aip_refine     candidates refined per sample in a final (top-n) layer; 0: the default
 *                  max(2n, 5) = 10; else >= 1.
 *   aip_mode       0 refine, 1 approx (the estimates are the outputs, nothing refined).
 *   aip_skip_zeros 1 (default): skip the weight lines of inputs that are zero in every
 *                  sample of the batch; 0: read them.
 * A layer's role decides what is refined: a fused ReLU -> relu (theta); no activation
 * and the output reaches a graph output directly or through a chain of single-consumer
 * Softmax/LogSoftmax/Flatten/Reshape/Identity -> final (aip_refine); else dense (every
 * row). At batch > 1 the union of what any sample needs is refined for all samples.
 * Bad values get AIPN_ERR_ARGUMENT from aipn_session_new.
 *
 * DrowsyNet (inference-stage dropout of conv outputs; DESIGN.md "DrowsyNet"), off by
 * default; masks bit for bit those of the Numba backend (the generator is documented in
 * kernels/drowsy.py), and the kernels compute the kept outputs only:
 *   drowsy         drop rate p of every Conv layer, 0 <= p < 1 (a double: the threshold
 *                  is floor(p * 2^24) in double precision, as in Python).
 *   drowsy_granularity  what a mask unit drops: 0 neuron, 1 pixel (default), 2 channel,
 *                  3 tile (16 channels x 64 consecutive output pixels).
 *   drowsy_rescale 1 (default): survivors x 1/(1-p); 0: not scaled.
 *   drowsy_fixed_mask  0 (default): image i of a run has image id offset + i (see
 *                  aipn_session_set_image_offset), so a fresh mask per image; 1: every
 *                  image uses id 0.
 *   seed           the seed of the masks (and of the random AIP policy, applied when
 *                  the Python front end packs).
 *   layers, n_layers   per-layer overrides (a config file's `layers`): layers[i].name is
 *                  a Conv node's name; its drowsy (< 0: the session's),
 *                  drowsy_granularity and drowsy_rescale (-1: the session's) replace the
 *                  session's for that layer. Copied by aipn_session_new. A name that is
 *                  not a Conv node of the model is AIPN_ERR_ARGUMENT.
 * A Conv's layer index in the mask formula is its position among the model's Conv
 * nodes (0-based, file order); dropped outputs are 0 after any fused activation. */
typedef struct aipn_layer_knobs {
    const char *name;           /* a Conv node's name */
    double drowsy;              /* < 0: the session's rate */
    int32_t drowsy_granularity; /* -1: the session's */
    int32_t drowsy_rescale;     /* -1: the session's */
} aipn_layer_knobs;

typedef struct aipn_config {
    uint32_t struct_size;   /* sizeof(aipn_config), set by aipn_config_default */
    int32_t threads;        /* worker threads; 0 = all cores */
    int32_t aip;            /* 0 (default) or 1 */
    float aip_threshold;    /* theta, used when aip_threshold_set is 1 */
    double drowsy;          /* 0 (default): exact convolutions */
    int32_t drowsy_granularity; /* 0 neuron, 1 pixel (default), 2 channel, 3 tile */
    uint64_t seed;          /* 0 by default */
    int32_t aip_threshold_set; /* 0 (default): each layer's stored theta; 1: aip_threshold */
    int32_t aip_refine;     /* 0 (default): 10; else >= 1 */
    int32_t aip_mode;       /* 0 refine (default), 1 approx */
    int32_t aip_skip_zeros; /* 1 (default) or 0 */
    int32_t drowsy_rescale; /* 1 (default) or 0 */
    int32_t drowsy_fixed_mask; /* 0 (default) or 1 */
    const aipn_layer_knobs *layers; /* per-layer overrides, or NULL */
    uint32_t n_layers;
    uint32_t reserved[8];
} aipn_config;

/* A float32 tensor on a caller-owned buffer. Inputs: set ndim, dims, data and len
 * (elements, = product of dims). Outputs: set data and len (capacity in elements);
 * a run fills ndim and dims. */
typedef struct aipn_tensor {
    int32_t ndim;
    int64_t dims[8];
    float *data;
    size_t len;
} aipn_tensor;

/* The stats record of one layer of the last run (DESIGN.md, "Stats contract"). */
typedef struct aipn_layer_stats {
    const char *name;
    const char *op;
    const char *activation;        /* fused activation or "" */
    uint64_t macs;
    uint64_t macs_skipped;
    uint64_t weight_bytes_read;
    uint64_t weight_bytes_total;
    uint64_t act_bytes_read;
    uint64_t act_bytes_written;
    uint64_t outputs;
    uint64_t outputs_refined;       /* AIP: refined rows x batch */
    double time_s;
    /* AIP layers run with aip = 1 (else 0 and ""): rows refined (the batch union) and
     * the layer's role, "relu", "final" or "dense". An AIP layer's macs, macs_skipped,
     * weight_bytes_read (64 bytes per approximate-pass line read + 4 (K - k) per refined
     * row + 4 N for the bias) and outputs_refined are counted by the kernel in the run. */
    uint64_t aip_rows_refined;
    const char *aip_role;
    /* Conv layers run with a drop rate > 0 (else 0): the rate and the outputs computed
     * (kept outputs x batch); macs and macs_skipped are then counted by the kernel. */
    double drowsy_rate;
    uint64_t drowsy_outputs_computed;
} aipn_layer_stats;

const char *aipn_last_error(void);
const char *aipn_status_name(aipn_status status);
const char *aipn_version(void);
/* Comma-separated ONNX op types this build implements. */
const char *aipn_supported_ops(void);

/* Models. From a file: memory-mapped, weights used in place. From memory: `data` must
 * stay valid until aipn_model_free unless flags has AIPN_LOAD_COPY (a buffer that is
 * not 64-byte aligned is always copied). */
aipn_status aipn_model_load_file(const char *path, uint32_t flags, aipn_model **out);
aipn_status aipn_model_load_memory(const void *data, size_t size, uint32_t flags, aipn_model **out);
void aipn_model_free(aipn_model *model);
aipn_status aipn_model_num_inputs(const aipn_model *model, uint32_t *count);
aipn_status aipn_model_num_outputs(const aipn_model *model, uint32_t *count);
/* ndim -1: unknown rank; a dim of -1: unknown (e.g. the batch). dims holds 8 values. */
aipn_status aipn_model_input(const aipn_model *model, uint32_t index, const char **name, int32_t *ndim, int64_t *dims);
aipn_status aipn_model_output(const aipn_model *model, uint32_t index, const char **name);
/* Metadata value for a key, or NULL (with AIPN_OK) when absent. */
aipn_status aipn_model_meta(const aipn_model *model, const char *key, const char **value);

void aipn_config_default(aipn_config *config);
/* config may be NULL (defaults). The session keeps a reference to the model. */
aipn_status aipn_session_new(const aipn_model *model, const aipn_config *config, aipn_session **out);
void aipn_session_free(aipn_session *session);
/* Resolve output shapes for these input shapes without running (inputs' data may be
 * NULL here); fills ndim and dims of each output. Plans are cached per input shape. */
aipn_status aipn_session_plan(aipn_session *session, const aipn_tensor *inputs, uint32_t n_inputs,
                              aipn_tensor *outputs, uint32_t n_outputs);
/* Run on the caller's buffers: inputs in the model's order, outputs likewise. An output
 * whose len is smaller than its shape needs gets AIPN_ERR_SIZE and nothing is run. */
aipn_status aipn_session_run(aipn_session *session, const aipn_tensor *inputs, uint32_t n_inputs,
                             aipn_tensor *outputs, uint32_t n_outputs);
/* DrowsyNet: the image id of the first image of the next runs (image i of a batch gets
 * id image_offset + i); 0 when a session starts. Give each batch of a data set its
 * position so that every image gets its own mask (aipnet.Session.run's image_offset). */
aipn_status aipn_session_set_image_offset(aipn_session *session, uint64_t image_offset);
/* Stats of the last run: an array of per-layer records owned by the session (valid
 * until the next run or free) and where the traffic figures come from ("analytic"). */
aipn_status aipn_session_stats(const aipn_session *session, const aipn_layer_stats **layers,
                               uint32_t *n_layers, const char **traffic_source);

/* ------------------------------------------------------------------------------------
 * Hardware performance counters (csrc/perf.c), perf_event_open(2) on Linux.
 * ------------------------------------------------------------------------------------
 * Counts user-space events of every thread of the process between start and stop:
 *     aipn_perf *pc;  aipn_perf_counts c;
 *     aipn_perf_open(0, &pc);         // after aipn_session_new: its workers are counted
 *     aipn_perf_start(pc);  aipn_session_run(s, ...);  aipn_perf_stop(pc, &c);
 *     for (int i = 0; i < AIPN_PERF_EVENTS; i++)
 *         if (c.error[i]) printf("%s: not counted, errno %d\n", c.name[i], c.error[i]);
 *         else printf("%s %llu (hw)\n", c.name[i], (unsigned long long)c.value[i]);
 *     aipn_perf_close(pc);
 * Events: 0 cycles, 1 instructions, 2 and 3 last-level-cache read accesses and misses
 * (x86 and others: generic PERF_TYPE_HW_CACHE events, names "llc_loads", "llc_misses";
 * AArch64: armv8_pmuv3 raw BUS_ACCESS 0x19 and L2D_CACHE_REFILL 0x17, names
 * "bus_access", "l2d_cache_refill"). aipn_perf_open succeeds even when the machine
 * counts nothing (a VM without a virtual PMU): each event then carries the errno of
 * perf_event_open (ENOENT: no such event on this PMU, EACCES/EPERM: perf_event_paranoid,
 * ENOSYS: no perf events in the kernel or not Linux) and value 0, which is not a count.
 * time_running_ns < time_enabled_ns: the kernel multiplexed the event; value is the raw
 * count over the running time, not scaled. Flag AIPN_PERF_SOFTWARE opens the kernel's
 * software events instead ("task_clock_ns", "context_switches", "page_faults",
 * "cpu_migrations"), which count on any Linux: a check of the plumbing, not hardware. */
enum { AIPN_PERF_EVENTS = 4, AIPN_PERF_SOFTWARE = 1 };

typedef struct aipn_perf aipn_perf;

typedef struct aipn_perf_counts {
    const char *name[4];         /* the event names above */
    uint64_t value[4];           /* summed over threads; meaningful only where error is 0 */
    int32_t error[4];            /* 0: counted; else the errno of perf_event_open or read */
    uint64_t time_enabled_ns[4]; /* summed over threads */
    uint64_t time_running_ns[4];
    uint32_t threads;            /* threads the counters were opened on */
} aipn_perf_counts;

aipn_status aipn_perf_open(uint32_t flags, aipn_perf **out);
aipn_status aipn_perf_start(aipn_perf *perf);
aipn_status aipn_perf_stop(aipn_perf *perf, aipn_perf_counts *counts);
void aipn_perf_close(aipn_perf *perf);
/* "cycles", ... for index 0..AIPN_PERF_EVENTS-1, else NULL. */
const char *aipn_perf_event_name(int32_t index);

/* AIPN_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* AIPNET_H */
