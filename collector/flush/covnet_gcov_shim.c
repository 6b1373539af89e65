/*
 * covnet_gcov_shim.c: the signal-driven flush of covnet_flush.c for
 * programs that were NOT linked with it, loaded with LD_PRELOAD.
 *
 * `covnet run --coverage` builds this file as a shared object and preloads
 * it into every service. libgcov is linked statically into each program
 * and its symbols are hidden, so neither dlsym() nor the dynamic symbol
 * table can find them; and a program that never calls __gcov_dump() or
 * __gcov_reset() does not even contain them (the linker keeps only the
 * archive members it needs). What every `--coverage` program does contain
 * is __gcov_dump_one() (the exit-time dump), its __gcov_root, and one
 * counter array per function and counter kind, `__gcov<kind>.<function>`.
 * covnet reads them from the program's symbol table before the run and
 * writes a table (COVNET_FLUSH_TABLE, default /covnet/flush/programs.tab):
 *
 *     program <file size> <__gcov_dump_one> <__gcov_root> <n> <path>
 *     <offset> <length>          (n lines: the counter arrays to zero)
 *
 * offsets in hex, relative to the program's load base (0 for non-PIE).
 * When the running program (/proc/self/exe, path and size) is in the
 * table, the constructor starts covnet_flush.c's sigwait thread; a flush
 * is then __gcov_dump_one(&__gcov_root), zeroing the counters (what
 * __gcov_reset() does) and clearing the root's "dumped" flag so that the
 * next flush, or the exit, dumps again. Any other program is left alone:
 * no thread, no blocked signal.
 *
 * Only the program's own objects are flushed, not instrumented shared
 * libraries it loads (they still write their counts at exit).
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef COVNET_FLUSH_TABLE
#define COVNET_FLUSH_TABLE "/covnet/flush/programs.tab"
#endif

/* libgcov's struct gcov_root (libgcov.h, unchanged from GCC 5 to 14). */
struct covnet_gcov_root {
    void *list;
    unsigned dumped : 1;
    unsigned run_counted : 1;
    void *next;
    void *prev;
};

struct covnet_range {
    uintptr_t at;
    size_t length;
};

static void (*covnet_dump_one)(struct covnet_gcov_root *);
static struct covnet_gcov_root *covnet_root;
static struct covnet_range *covnet_ranges;
static size_t covnet_nranges;

/* The main program is the first object dl_iterate_phdr reports. */
static int covnet_base_of_main(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(uintptr_t *)data = (uintptr_t)info->dlpi_addr;
    return 1;
}

/* Finds this program in the table; 1 when it can be flushed. */
static int covnet_flush_prepare(void)
{
    const char *table = getenv("COVNET_FLUSH_TABLE");
    char exe[4096];
    struct stat st;
    ssize_t n;
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    uintptr_t base = 0;
    int found = 0;

    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || stat("/proc/self/exe", &st) != 0)
        return 0;
    exe[n] = '\0';
    if (table == NULL || table[0] == '\0')
        table = COVNET_FLUSH_TABLE;
    f = fopen(table, "r");
    if (f == NULL)
        return 0;
    dl_iterate_phdr(covnet_base_of_main, &base);
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned long long size, dump, root;
        size_t count, i;
        int path_at = 0;

        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "program %llu %llx %llx %zu %n", &size, &dump, &root, &count,
                   &path_at) != 4 || path_at == 0)
            continue;
        found = strcmp(line + path_at, exe) == 0 && size == (unsigned long long)st.st_size;
        if (found) {
            covnet_ranges = calloc(count ? count : 1, sizeof *covnet_ranges);
            if (covnet_ranges == NULL) {
                found = 0;
                break;
            }
            covnet_dump_one = (void (*)(struct covnet_gcov_root *))(base + (uintptr_t)dump);
            covnet_root = (struct covnet_gcov_root *)(base + (uintptr_t)root);
        }
        for (i = 0; i < count && getline(&line, &cap, f) > 0; i++) {
            unsigned long long at, length;

            if (!found)
                continue;
            if (sscanf(line, "%llx %llx", &at, &length) != 2) {
                found = 0;
                break;
            }
            covnet_ranges[covnet_nranges].at = base + (uintptr_t)at;
            covnet_ranges[covnet_nranges].length = (size_t)length;
            covnet_nranges++;
        }
        if (found && covnet_nranges != count)
            found = 0; /* a truncated table: never zero half the counters */
    }
    free(line);
    fclose(f);
    return found;
}

/* Writes the counts so far and zeroes them, as __gcov_dump() followed by
 * __gcov_reset() would. */
static void covnet_flush_counts(void)
{
    size_t i;

    covnet_dump_one(covnet_root);
    for (i = 0; i < covnet_nranges; i++)
        memset((void *)covnet_ranges[i].at, 0, covnet_ranges[i].length);
    covnet_root->dumped = 0;
}

#define COVNET_FLUSH_SHIM 1
#include "covnet_flush.c"
