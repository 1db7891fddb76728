/* engine_pread.c - the thread-pool backend: worker threads doing one pread per
 * read attempt on the (O_DIRECT) descriptors, for kernels that refuse io_uring.
 *
 * queue() links a chunk on a private list (only the driving thread touches it);
 * submit() moves the whole list onto the shared work queue under the lock and
 * wakes the workers; each worker pops one chunk, preads it outside the lock and
 * pushes it on the done queue; reap() takes finished chunks, waiting on a
 * condition variable when asked to. The workers block every signal so signal
 * handlers keep running on the application's threads. The driver has already
 * reaped everything in flight before exit(), so exit only stops and joins. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_engine.h"

typedef struct pread_priv {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    ms_io_chunk *local_head, *local_tail; /* queued, not submitted (driver thread only) */
    ms_io_chunk *work_head, *work_tail;   /* submitted, waiting for a worker */
    ms_io_chunk *done_head, *done_tail;   /* finished */
    unsigned in_engine;                   /* submitted and not yet reaped */
    bool stop;
    pthread_t *threads;
    int n_threads;
} pread_priv;

static void push(ms_io_chunk **head, ms_io_chunk **tail, ms_io_chunk *c)
{
    c->elink = NULL;
    if (*tail) (*tail)->elink = c;
    else *head = c;
    *tail = c;
}

static void *worker(void *arg)
{
    pread_priv *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->work_head) pthread_cond_wait(&p->work_cv, &p->mu);
        if (!p->work_head) break; /* stop, nothing left */
        ms_io_chunk *c = p->work_head;
        p->work_head = c->elink;
        if (!p->work_head) p->work_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        ssize_t r = pread(c->fd, c->buf, c->len, (off_t)c->off);
        c->res = r < 0 ? -(int64_t)errno : (int64_t)r;
        pthread_mutex_lock(&p->mu);
        push(&p->done_head, &p->done_tail, c);
        pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pr_stop(pread_priv *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

static void pr_free(pread_priv *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p);
}

static int pr_init(ms_io_engine *e, const ms_io_engine_args *a, ms_err *err)
{
    pread_priv *p = calloc(1, sizeof *p);
    int want = a->n_threads ? (int)a->n_threads : 1;
    if (!p || !(p->threads = calloc((size_t)want, sizeof *p->threads))) {
        free(p);
        return ms_errf(err, ENOMEM, "io pread: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int i = 0; i < want; i++) {
        rc = pthread_create(&p->threads[i], NULL, worker, p);
        if (rc) break;
        p->n_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pr_stop(p);
        pr_free(p);
        return ms_errf(err, rc, "io pread: cannot start worker threads: %s", strerror(rc));
    }
    e->priv = p;
    return 0;
}

static void pr_queue(ms_io_engine *e, ms_io_chunk *c)
{
    pread_priv *p = e->priv;
    push(&p->local_head, &p->local_tail, c);
}

static int pr_submit(ms_io_engine *e, ms_err *err)
{
    (void)err;
    pread_priv *p = e->priv;
    if (!p->local_head) return 0;
    unsigned n = 0;
    for (ms_io_chunk *c = p->local_head; c; c = c->elink) n++;
    pthread_mutex_lock(&p->mu);
    if (p->work_tail) p->work_tail->elink = p->local_head;
    else p->work_head = p->local_head;
    p->work_tail = p->local_tail;
    p->in_engine += n;
    if (n == 1) pthread_cond_signal(&p->work_cv);
    else pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    p->local_head = p->local_tail = NULL;
    return 0;
}

static int pr_reap(ms_io_engine *e, ms_io_chunk **out, int max, bool wait, ms_err *err)
{
    (void)err;
    pread_priv *p = e->priv;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    if (wait)
        while (!p->done_head && p->in_engine > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    while (n < max && p->done_head) {
        ms_io_chunk *c = p->done_head;
        p->done_head = c->elink;
        if (!p->done_head) p->done_tail = NULL;
        out[n++] = c;
    }
    p->in_engine -= (unsigned)n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

static void pr_exit(ms_io_engine *e)
{
    pread_priv *p = e->priv;
    if (!p) return;
    pr_stop(p);
    pr_free(p);
    e->priv = NULL;
}

const ms_io_engine_ops ms_io_engine_pread = {
    .version = MS_IO_OPS_VERSION,
    .name = "pread",
    .caps = MS_IO_CAP_DIRECT,
    .init = pr_init,
    .queue = pr_queue,
    .submit = pr_submit,
    .reap = pr_reap,
    .exit = pr_exit,
};
