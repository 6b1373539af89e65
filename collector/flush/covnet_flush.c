/*
 * covnet_flush.c: write a long-running program's gcov data on a signal.
 *
 * gcov writes .gcda files only when a process exits. Link this file into a
 * service built with `gcc --coverage` and `kill -USR2 <pid>` makes it write
 * its counts *without stopping*:
 *
 *     gcc --coverage -pthread -o server server.c /path/to/covnet_flush.c
 *
 * (`covnet run --coverage` does the same for unmodified services by
 * preloading covnet_gcov_shim.c, which is this file in another mode.)
 *
 * How: a constructor blocks the signal (threads created later inherit the
 * mask) and starts a thread that waits for it with sigwait(), so the dump
 * runs in a normal thread, never inside a signal handler. After each dump
 * the counters are reset, so the exit-time dump adds only what ran after the
 * last flush and nothing is counted twice. Each completed dump is
 * acknowledged in "$GCOV_PREFIX/.covnet-flush-<pid>" (or /tmp when
 * GCOV_PREFIX is unset): the file holds the number of dumps done so far,
 * which is what `covnet` waits for. It is written with 0 as soon as the
 * thread runs, so its presence tells `covnet` that the signal is safe to
 * send (to a program without the thread, SIGUSR2 is fatal).
 *
 * Use another signal with -DCOVNET_FLUSH_SIGNAL=SIGRTMIN+3 (or any other)
 * if the program already uses SIGUSR2.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef COVNET_FLUSH_SIGNAL
#define COVNET_FLUSH_SIGNAL SIGUSR2
#endif

#ifndef COVNET_FLUSH_SHIM
/* Linked into the program: libgcov's own entry points are at hand. The
 * shim defines these two functions itself, from the program's symbols. */
extern void __gcov_dump(void);
extern void __gcov_reset(void);

/* Whether this process can flush: always, when linked in. */
static int covnet_flush_prepare(void)
{
    return 1;
}

/* Writes the counts so far and zeroes them. */
static void covnet_flush_counts(void)
{
    __gcov_dump();
    __gcov_reset();
}
#endif

static sigset_t covnet_flush_set;

/* The directory of the acknowledgements: $GCOV_PREFIX, else /tmp. */
static const char *covnet_flush_dir(void)
{
    const char *dir = getenv("GCOV_PREFIX");

    return dir == NULL || dir[0] == '\0' ? "/tmp" : dir;
}

/* mkdir -p: the prefix may not exist before the first dump. */
static void covnet_flush_mkdirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    char *s;

    if (n == 0 || n >= sizeof path)
        return;
    memcpy(path, dir, n + 1);
    for (s = path + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0755);
            *s = '/';
        }
    }
    mkdir(path, 0755);
}

static void covnet_flush_ack(unsigned long dumps)
{
    const char *dir = covnet_flush_dir();
    char path[4096], tmp[4200];
    FILE *f;

    snprintf(path, sizeof path, "%s/.covnet-flush-%ld", dir, (long)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "%lu\n", dumps);
    if (fclose(f) == 0)
        rename(tmp, path); /* atomic: readers never see a half-written count */
}

static void *covnet_flush_thread(void *unused)
{
    unsigned long dumps = 0;
    int sig;

    (void)unused;
    for (;;) {
        if (sigwait(&covnet_flush_set, &sig) != 0)
            continue;
        covnet_flush_counts();
        covnet_flush_ack(++dumps);
    }
    return NULL;
}

__attribute__((constructor)) static void covnet_flush_init(void)
{
    pthread_t thread;

    if (!covnet_flush_prepare())
        return;
    sigemptyset(&covnet_flush_set);
    sigaddset(&covnet_flush_set, COVNET_FLUSH_SIGNAL);
    if (pthread_sigmask(SIG_BLOCK, &covnet_flush_set, NULL) != 0)
        return;
    if (pthread_create(&thread, NULL, covnet_flush_thread, NULL) != 0) {
        pthread_sigmask(SIG_UNBLOCK, &covnet_flush_set, NULL);
        return;
    }
    pthread_detach(thread);
    /* Ready: the signal is now safe to send. */
    covnet_flush_mkdirs(covnet_flush_dir());
    covnet_flush_ack(0);
}
