/* Hardware performance counters through perf_event_open(2), around whatever the caller
 * runs between aipn_perf_start and aipn_perf_stop (typically one aipn_session_run).
 *
 * Four events, counted in user space only (exclude_kernel, exclude_hv), for every thread
 * of the process that exists when aipn_perf_open is called (the session's pool workers
 * included: open after aipn_session_new) and, through `inherit`, threads they create:
 *   x86-64 and others: PERF_TYPE_HARDWARE cycles and instructions, and the generic
 *     PERF_TYPE_HW_CACHE last-level-cache read accesses and read misses;
 *   AArch64 (armv8_pmuv3): cycles and instructions, and the raw PMUv3 common events
 *     BUS_ACCESS (0x19) and L2D_CACHE_REFILL (0x17).
 * An event the machine cannot count keeps its errno (per event, from the first thread);
 * nothing is ever estimated in its place. When the kernel multiplexes an event,
 * time_running < time_enabled and the value is the raw count over time_running (the
 * caller decides; we do not scale).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef __linux__
#include <dirent.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

enum { MAX_TASKS = 256 };

struct aipn_perf {
    int n_tasks;
    int fd[MAX_TASKS][AIPN_PERF_EVENTS];
    int32_t error[AIPN_PERF_EVENTS];
    int started;
    int software;
};

#if defined(__aarch64__)
static const char *const NAMES[AIPN_PERF_EVENTS] = {"cycles", "instructions", "bus_access", "l2d_cache_refill"};
#else
static const char *const NAMES[AIPN_PERF_EVENTS] = {"cycles", "instructions", "llc_loads", "llc_misses"};
#endif

/* AIPN_PERF_SOFTWARE: kernel software events in the same four slots, to check the
 * plumbing on machines without a PMU; never reported as hardware counts */
static const char *const SW_NAMES[AIPN_PERF_EVENTS] = {"task_clock_ns", "context_switches", "page_faults",
                                                       "cpu_migrations"};

const char *aipn_perf_event_name(int32_t index) {
    return index >= 0 && index < AIPN_PERF_EVENTS ? NAMES[index] : NULL;
}

#ifdef __linux__
static void event_attr(int i, int software, struct perf_event_attr *a) {
    memset(a, 0, sizeof *a);
    a->size = sizeof *a;
    a->disabled = 1;
    a->inherit = 1;
    a->exclude_kernel = 1;
    a->exclude_hv = 1;
    a->read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    if (software) {
        static const uint64_t SW[AIPN_PERF_EVENTS] = {PERF_COUNT_SW_TASK_CLOCK, PERF_COUNT_SW_CONTEXT_SWITCHES,
                                                      PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_CPU_MIGRATIONS};
        a->type = PERF_TYPE_SOFTWARE;
        a->config = SW[i];
        return;
    }
    switch (i) {
    case 0: a->type = PERF_TYPE_HARDWARE; a->config = PERF_COUNT_HW_CPU_CYCLES; break;
    case 1: a->type = PERF_TYPE_HARDWARE; a->config = PERF_COUNT_HW_INSTRUCTIONS; break;
#if defined(__aarch64__)
    case 2: a->type = PERF_TYPE_RAW; a->config = 0x19; break; /* BUS_ACCESS */
    case 3: a->type = PERF_TYPE_RAW; a->config = 0x17; break; /* L2D_CACHE_REFILL */
#else
    case 2:
        a->type = PERF_TYPE_HW_CACHE;
        a->config = PERF_COUNT_HW_CACHE_LL | (PERF_COUNT_HW_CACHE_OP_READ << 8) | (PERF_COUNT_HW_CACHE_RESULT_ACCESS << 16);
        break;
    case 3:
        a->type = PERF_TYPE_HW_CACHE;
        a->config = PERF_COUNT_HW_CACHE_LL | (PERF_COUNT_HW_CACHE_OP_READ << 8) | (PERF_COUNT_HW_CACHE_RESULT_MISS << 16);
        break;
#endif
    }
}

static int list_tasks(int *tids, int cap) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) { tids[0] = 0; return 1; } /* 0 = the calling thread */
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        tids[n++] = atoi(e->d_name);
    }
    closedir(d);
    if (!n) tids[n++] = 0;
    return n;
}
#endif

aipn_status aipn_perf_open(uint32_t flags, aipn_perf **out) {
    if (!out) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_perf_open: out is NULL");
    *out = NULL;
    if (flags & ~(uint32_t)AIPN_PERF_SOFTWARE) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_perf_open: unknown flags %#x", flags);
    aipn_perf *p = calloc(1, sizeof *p);
    if (!p) return aipn_fail(AIPN_ERR_MEMORY, "out of memory");
    p->software = (flags & AIPN_PERF_SOFTWARE) != 0;
    for (int t = 0; t < MAX_TASKS; t++)
        for (int i = 0; i < AIPN_PERF_EVENTS; i++) p->fd[t][i] = -1;
#ifdef __linux__
    int tids[MAX_TASKS];
    p->n_tasks = list_tasks(tids, MAX_TASKS);
    for (int i = 0; i < AIPN_PERF_EVENTS; i++) {
        struct perf_event_attr a;
        event_attr(i, p->software, &a);
        for (int t = 0; t < p->n_tasks; t++) {
            long fd = syscall(SYS_perf_event_open, &a, tids[t], -1, -1, 0);
            if (fd < 0) {
                if (t == 0) { p->error[i] = errno; break; }
                if (errno == ESRCH) continue; /* the thread has exited since we listed it */
                p->error[i] = errno;
                for (int u = 0; u < t; u++) { if (p->fd[u][i] >= 0) close(p->fd[u][i]); p->fd[u][i] = -1; }
                break;
            }
            p->fd[t][i] = (int)fd;
        }
    }
#else
    p->n_tasks = 0;
    for (int i = 0; i < AIPN_PERF_EVENTS; i++) p->error[i] = ENOSYS;
#endif
    *out = p;
    return AIPN_OK;
}

void aipn_perf_close(aipn_perf *p) {
    if (!p) return;
#ifdef __linux__
    for (int t = 0; t < p->n_tasks; t++)
        for (int i = 0; i < AIPN_PERF_EVENTS; i++)
            if (p->fd[t][i] >= 0) close(p->fd[t][i]);
#endif
    free(p);
}

aipn_status aipn_perf_start(aipn_perf *p) {
    if (!p) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_perf_start: perf is NULL");
#ifdef __linux__
    for (int t = 0; t < p->n_tasks; t++)
        for (int i = 0; i < AIPN_PERF_EVENTS; i++)
            if (p->fd[t][i] >= 0) {
                ioctl(p->fd[t][i], PERF_EVENT_IOC_RESET, 0);
                ioctl(p->fd[t][i], PERF_EVENT_IOC_ENABLE, 0);
            }
#endif
    p->started = 1;
    return AIPN_OK;
}

aipn_status aipn_perf_stop(aipn_perf *p, aipn_perf_counts *counts) {
    if (!p || !counts) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_perf_stop: a pointer is NULL");
    if (!p->started) return aipn_fail(AIPN_ERR_ARGUMENT, "aipn_perf_stop: aipn_perf_start was not called");
    memset(counts, 0, sizeof *counts);
    counts->threads = (uint32_t)p->n_tasks;
    for (int i = 0; i < AIPN_PERF_EVENTS; i++) {
        counts->name[i] = p->software ? SW_NAMES[i] : NAMES[i];
        counts->error[i] = p->error[i];
    }
#ifdef __linux__
    for (int t = 0; t < p->n_tasks; t++)
        for (int i = 0; i < AIPN_PERF_EVENTS; i++)
            if (p->fd[t][i] >= 0) ioctl(p->fd[t][i], PERF_EVENT_IOC_DISABLE, 0);
    for (int t = 0; t < p->n_tasks; t++)
        for (int i = 0; i < AIPN_PERF_EVENTS; i++) {
            if (p->fd[t][i] < 0) continue;
            uint64_t v[3];
            if (read(p->fd[t][i], v, sizeof v) != (ssize_t)sizeof v) {
                if (!counts->error[i]) counts->error[i] = errno ? errno : EIO;
                continue;
            }
            counts->value[i] += v[0];
            counts->time_enabled_ns[i] += v[1];
            counts->time_running_ns[i] += v[2];
        }
#endif
    p->started = 0;
    return AIPN_OK;
}
