/*
 * covnet_flush.c: write a long-running program's gcov data on a signal.
 *
 * gcov writes .gcda files only when a process exits. Link this file into a
 * service built with `gcc --coverage` and `kill -USR2 <pid>` makes it write
 * its counts *without stopping*:
 *
 *     gcc --coverage -pthread -o server server.c /path/to/covnet_flush.c
 *
 * How: a constructor blocks the signal (threads created later inherit the
 * mask) and starts a thread that waits for it with sigwait(), so the dump
 * runs in a normal thread, never inside a signal handler. After each dump
 * the counters are reset, so the exit-time dump adds only what ran after the
 * last flush and nothing is counted twice. Each completed dump is
 * acknowledged in "$GCOV_PREFIX/.covnet-flush-<pid>" (or /tmp when
 * GCOV_PREFIX is unset): the file holds the number of dumps done so far,
 * which is what `covnet` waits for.
 *
 * Use another signal with -DCOVNET_FLUSH_SIGNAL=SIGRTMIN+3 (or any other)
 * if the program already uses SIGUSR2.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef COVNET_FLUSH_SIGNAL
#define COVNET_FLUSH_SIGNAL SIGUSR2
#endif

extern void __gcov_dump(void);
extern void __gcov_reset(void);

static sigset_t covnet_flush_set;

static void covnet_flush_ack(unsigned long dumps)
{
    const char *dir = getenv("GCOV_PREFIX");
    char path[4096], tmp[4200];
    FILE *f;

    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
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
        __gcov_dump();
        __gcov_reset();
        covnet_flush_ack(++dumps);
    }
    return NULL;
}

__attribute__((constructor)) static void covnet_flush_init(void)
{
    pthread_t thread;

    sigemptyset(&covnet_flush_set);
    sigaddset(&covnet_flush_set, COVNET_FLUSH_SIGNAL);
    if (pthread_sigmask(SIG_BLOCK, &covnet_flush_set, NULL) != 0)
        return;
    if (pthread_create(&thread, NULL, covnet_flush_thread, NULL) == 0)
        pthread_detach(thread);
}
