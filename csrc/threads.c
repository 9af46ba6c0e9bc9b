/* A small persistent pthread pool: pool_for splits [0, n) into chunks that the caller
 * and the workers take from an atomic counter (dynamic scheduling), then waits.
 *
 * Waiting: a worker that has finished a job spins a while (SPIN_NS) on the job counter
 * before it sleeps on the condition variable, and so does the caller waiting for the
 * workers to finish; a network's ops follow each other within microseconds, and a futex
 * wake-up of a sleeping worker costs tens of microseconds, a large part of a small layer. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

enum { SPIN_NS = 200000 };

struct pool {
    int nthreads;                 /* including the caller */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    uint64_t generation;          /* written under mu, read by spinning workers atomically */
    int stop, busy;               /* busy: workers still inside the current job (atomic) */
    task_fn fn;
    void *ctx;
    int64_t n, chunk, next;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int still(const pool *p, uint64_t seen) {
    return seen != UINT64_MAX ? __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE) == seen
                              : __atomic_load_n(&p->busy, __ATOMIC_ACQUIRE) != 0;
}
/* spin while nothing changed: seen = the last generation (a worker waiting for a job), or
 * UINT64_MAX (the caller waiting for busy to reach 0); 0 when it changed, 1 after SPIN_NS
 * (the clock read every 64 spins) */
static int spin(const pool *p, uint64_t seen) {
    int64_t t0 = now_ns();
    for (int i = 1; still(p, seen); i++) {
        if (i % 64 == 0 && now_ns() - t0 > SPIN_NS) return 1;
        cpu_relax();
    }
    return 0;
}

static void work(pool *p) {
    for (;;) {
        int64_t b = __atomic_fetch_add(&p->next, p->chunk, __ATOMIC_RELAXED);
        if (b >= p->n) return;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e);
    }
}

static void *worker(void *arg) {
    pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        /* pool_free sets stop and bumps the generation, so a spinning worker sees it too */
        if (spin(p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) break;
        seen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
        work(p);
        /* the last one out wakes the caller if it sleeps (it checks busy under mu) */
        if (__atomic_sub_fetch(&p->busy, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

pool *pool_new(int threads) {
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tids = calloc((size_t)p->nthreads, sizeof(pthread_t));
    if (!p->tids) { free(p); return NULL; }
    for (int i = 1; i < p->nthreads; i++)
        if (pthread_create(&p->tids[i], NULL, worker, p) != 0) { p->nthreads = i; break; }
    return p;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->tids);
    free(p);
}

int pool_threads(const pool *p) { return p ? p->nthreads : 1; }

void pool_for(pool *p, int64_t n, int64_t grain, task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->nthreads == 1 || n <= grain) { fn(ctx, 0, n); return; }
    int64_t chunk = (n + 4 * p->nthreads - 1) / (4 * p->nthreads);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    p->next = 0;
    __atomic_store_n(&p->busy, p->nthreads - 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);   /* publishes the job to spinning workers */
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    work(p);
    /* still busy after the spin: sleep until the last worker signals */
    if (spin(p, UINT64_MAX)) {
        pthread_mutex_lock(&p->mu);
        while (__atomic_load_n(&p->busy, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
