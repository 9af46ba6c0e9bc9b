/* A small persistent pthread pool: pool_for splits [0, n) into chunks that the caller
 * and the workers take from an atomic counter (dynamic scheduling), then waits. */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct pool {
    int nthreads;                 /* including the caller */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    uint64_t generation;
    int stop, busy;               /* busy: workers still inside the current job */
    task_fn fn;
    void *ctx;
    int64_t n, chunk, next;
};

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
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->stop = 1;
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
    p->busy = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
