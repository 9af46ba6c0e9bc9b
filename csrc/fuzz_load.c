/* libFuzzer target for aipn_model_load_memory (make fuzz; CI runs it for a bounded
 * time). Checksums are skipped so that the fuzzer gets past the CRCs into the parser;
 * a loaded model is queried and freed. */
#include <stddef.h>
#include <stdint.h>

#include "aipnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    aipn_model *m = NULL;
    if (aipn_model_load_memory(data, size, AIPN_LOAD_COPY | AIPN_LOAD_SKIP_CHECKSUMS, &m) == AIPN_OK) {
        uint32_t n = 0;
        aipn_model_num_inputs(m, &n);
        for (uint32_t i = 0; i < n; i++) {
            const char *name;
            int32_t nd;
            int64_t dims[8];
            aipn_model_input(m, i, &name, &nd, dims);
        }
        aipn_model_free(m);
    }
    if (size > 0) { /* the same bytes with checksums on must not crash either */
        m = NULL;
        if (aipn_model_load_memory(data, size, AIPN_LOAD_COPY, &m) == AIPN_OK) aipn_model_free(m);
    }
    return 0;
}
