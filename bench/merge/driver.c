/*
 * Merge-benchmark workload driver for the zstd library (bundled in the
 * zstd-sys crate). `driver N` runs scenario N (0..49): each scenario picks a
 * data shape, a compression level and an API family from N, compresses,
 * decompresses and checks the round trip, so the 50 captures cover
 * different (overlapping) parts of the library. Exit status 0 on success,
 * 1 with a message on stderr on any mismatch or library error.
 */
#define ZSTD_STATIC_LINKING_ONLY
#define ZDICT_STATIC_LINKING_ONLY
#define ZBUFF_DISABLE_DEPRECATE_WARNINGS
#define ZSTD_DISABLE_DEPRECATE_WARNINGS
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zbuff.h"
#include "zdict.h"
#include "zstd.h"
#include "zstd_errors.h"
#include "zstd_seekable.h"

static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static void fail(const char *what, size_t code)
{
    fprintf(stderr, "driver: %s: %s\n", what,
            ZSTD_isError(code) ? ZSTD_getErrorName(code) : "mismatch");
    exit(1);
}

static size_t check(const char *what, size_t code)
{
    if (ZSTD_isError(code))
        fail(what, code);
    return code;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "driver: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static const char *const words[] = {
    "coverage", "merge", "gcov", "counter", "arc", "block", "function",
    "line", "branch", "capture", "machine", "guest", "kernel", "trace",
    "the", "of", "and", "a", "to", "in", "is", "that", "for", "it",
};

/* Fills buf with one of five data shapes. */
static void generate(unsigned char *buf, size_t size, unsigned kind)
{
    size_t i = 0;
    switch (kind) {
    case 0: /* English-like text */
        while (i < size) {
            const char *w = words[rng() % (sizeof words / sizeof *words)];
            size_t len = strlen(w);
            for (size_t j = 0; j < len && i < size; j++)
                buf[i++] = (unsigned char)w[j];
            if (i < size)
                buf[i++] = (rng() % 11 == 0) ? '\n' : ' ';
        }
        break;
    case 1: /* incompressible */
        for (; i < size; i++)
            buf[i] = (unsigned char)rng();
        break;
    case 2: /* long repeats with rare edits (LDM, long matches) */
        for (; i < size && i < 4096; i++)
            buf[i] = (unsigned char)rng();
        for (; i < size; i++)
            buf[i] = (rng() % 997 == 0) ? (unsigned char)rng() : buf[i - 4096];
        break;
    case 3: /* JSON-ish records */
        while (i < size) {
            char rec[128];
            int n = snprintf(rec, sizeof rec,
                             "{\"id\":%u,\"name\":\"%s\",\"hits\":%u,\"ok\":%s}\n",
                             rng() % 100000,
                             words[rng() % (sizeof words / sizeof *words)],
                             rng() % 1000, (rng() & 1) ? "true" : "false");
            for (int j = 0; j < n && i < size; j++)
                buf[i++] = (unsigned char)rec[j];
        }
        break;
    default: /* sparse: mostly zeros, short random runs */
        memset(buf, 0, size);
        while (i < size) {
            i += rng() % 512;
            for (unsigned r = rng() % 16; r > 0 && i < size; r--)
                buf[i++] = (unsigned char)rng();
        }
        break;
    }
}

static void expect_equal(const void *a, const void *b, size_t na, size_t nb)
{
    if (na != nb || memcmp(a, b, na) != 0)
        fail("round trip", 0);
}

/* Mode 0: one-shot simple API. */
static void mode_simple(const unsigned char *src, size_t size, int level)
{
    size_t cap = ZSTD_compressBound(size);
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size);
    size_t c = check("ZSTD_compress", ZSTD_compress(dst, cap, src, size, level));
    unsigned long long fcs = ZSTD_getFrameContentSize(dst, c);
    if (fcs != size)
        fail("ZSTD_getFrameContentSize", 0);
    size_t d = check("ZSTD_decompress", ZSTD_decompress(out, size, dst, c));
    expect_equal(src, out, size, d);
    free(dst);
    free(out);
}

/* Mode 1: advanced parameters through a reusable context. */
static void mode_advanced(const unsigned char *src, size_t size, int level, unsigned n)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t cap = ZSTD_compressBound(size);
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size);
    check("level", ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level));
    check("checksum", ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1));
    check("strategy",
          ZSTD_CCtx_setParameter(cctx, ZSTD_c_strategy, (int)(1 + n % 9)));
    check("windowLog", ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 17 + (int)(n % 4)));
    if (n & 1)
        check("splitAfterSequences",
              ZSTD_CCtx_setParameter(cctx, ZSTD_c_splitAfterSequences, ZSTD_ps_enable));
    if (n & 2)
        check("targetCBlockSize", ZSTD_CCtx_setParameter(cctx, ZSTD_c_targetCBlockSize, 1340));
    size_t c = check("ZSTD_compress2", ZSTD_compress2(cctx, dst, cap, src, size));
    size_t d = check("ZSTD_decompressDCtx", ZSTD_decompressDCtx(dctx, out, size, dst, c));
    expect_equal(src, out, size, d);
    free(dst);
    free(out);
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
}

/* Mode 2: streaming with small, odd-sized buffers. */
static void mode_stream(const unsigned char *src, size_t size, int level, unsigned n)
{
    ZSTD_CStream *cs = ZSTD_createCStream();
    ZSTD_DStream *ds = ZSTD_createDStream();
    size_t cap = ZSTD_compressBound(size) + 1024;
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size + 1);
    size_t chunk = 777 + (n % 5) * 1000;
    ZSTD_outBuffer ob = {dst, 0, 0};
    ZSTD_inBuffer ib = {src, 0, 0};

    check("level", ZSTD_CCtx_setParameter(cs, ZSTD_c_compressionLevel, level));
    check("pledged", ZSTD_CCtx_setPledgedSrcSize(cs, size));
    while (ib.pos < size) {
        ib.size = ib.pos + chunk < size ? ib.pos + chunk : size;
        ob.size = ob.pos + chunk < cap ? ob.pos + chunk : cap;
        ZSTD_EndDirective mode = (n & 1) && ib.pos % 3 == 0 ? ZSTD_e_flush : ZSTD_e_continue;
        check("compressStream2", ZSTD_compressStream2(cs, &ob, &ib, mode));
    }
    size_t left;
    do {
        ob.size = ob.pos + chunk < cap ? ob.pos + chunk : cap;
        left = check("end", ZSTD_compressStream2(cs, &ob, &ib, ZSTD_e_end));
    } while (left != 0);

    ZSTD_inBuffer di = {dst, 0, 0};
    ZSTD_outBuffer dout = {out, 0, 0};
    while (di.pos < ob.pos) {
        di.size = di.pos + chunk < ob.pos ? di.pos + chunk : ob.pos;
        dout.size = dout.pos + chunk < size + 1 ? dout.pos + chunk : size + 1;
        check("decompressStream", ZSTD_decompressStream(ds, &dout, &di));
    }
    expect_equal(src, out, size, dout.pos);
    free(dst);
    free(out);
    ZSTD_freeCStream(cs);
    ZSTD_freeDStream(ds);
}

/* Mode 3: dictionary training (three trainers) and dictionary compression. */
static void mode_dict(const unsigned char *src, size_t size, int level, unsigned n)
{
    size_t nsamples = 0, sample_sizes[512], total = 0;
    while (nsamples < 512 && total < size) {
        size_t s = 256 + rng() % 768;
        if (total + s > size)
            s = size - total;
        sample_sizes[nsamples++] = s;
        total += s;
    }
    size_t dict_cap = 4096 << (n % 3);
    unsigned char *dict = xmalloc(dict_cap);
    size_t dict_size;
    if (n % 3 == 0) {
        dict_size = ZDICT_trainFromBuffer(dict, dict_cap, src, sample_sizes, (unsigned)nsamples);
    } else if (n % 3 == 1) {
        ZDICT_cover_params_t p;
        memset(&p, 0, sizeof p);
        p.k = 200;
        p.d = 8;
        p.zParams.compressionLevel = level;
        dict_size = ZDICT_trainFromBuffer_cover(dict, dict_cap, src, sample_sizes,
                                                (unsigned)nsamples, p);
    } else {
        ZDICT_fastCover_params_t p;
        memset(&p, 0, sizeof p);
        p.d = 8;
        p.steps = 4;
        p.nbThreads = 1;
        dict_size = ZDICT_optimizeTrainFromBuffer_fastCover(dict, dict_cap, src, sample_sizes,
                                                            (unsigned)nsamples, &p);
    }
    if (ZDICT_isError(dict_size)) {
        /* incompressible data legitimately fails to train: use raw content */
        dict_size = dict_cap < size ? dict_cap : size;
        memcpy(dict, src, dict_size);
    } else if (ZDICT_getDictID(dict, dict_size) == 0) {
        fail("ZDICT_getDictID", 0);
    }

    ZSTD_CDict *cd = ZSTD_createCDict(dict, dict_size, level);
    ZSTD_DDict *dd = ZSTD_createDDict(dict, dict_size);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t cap = ZSTD_compressBound(1024);
    unsigned char *dst = xmalloc(cap), *out = xmalloc(1024);
    const unsigned char *p = src;
    for (size_t i = 0; i < nsamples; i++) {
        size_t c = check("compress_usingCDict",
                         ZSTD_compress_usingCDict(cctx, dst, cap, p, sample_sizes[i], cd));
        size_t d = check("decompress_usingDDict",
                         ZSTD_decompress_usingDDict(dctx, out, 1024, dst, c, dd));
        expect_equal(p, out, sample_sizes[i], d);
        p += sample_sizes[i];
    }
    free(dict);
    free(dst);
    free(out);
    ZSTD_freeCDict(cd);
    ZSTD_freeDDict(dd);
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
}

/* Mode 4: multithreaded compression with long-distance matching. */
static void mode_mt(const unsigned char *src, size_t size, int level, unsigned n)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(size);
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size);
    check("level", ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level));
    check("workers", ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, 2));
    check("jobSize", ZSTD_CCtx_setParameter(cctx, ZSTD_c_jobSize, 512 * 1024));
    check("ldm", ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching,
                                        (n & 1) ? ZSTD_ps_enable : ZSTD_ps_disable));
    if (n & 2)
        check("rsyncable", ZSTD_CCtx_setParameter(cctx, ZSTD_c_rsyncable, 1));
    size_t c = check("ZSTD_compress2 mt", ZSTD_compress2(cctx, dst, cap, src, size));
    size_t d = check("ZSTD_decompress", ZSTD_decompress(out, size, dst, c));
    expect_equal(src, out, size, d);
    free(dst);
    free(out);
    ZSTD_freeCCtx(cctx);
}

/* Mode 5: seekable format, then random-access reads. */
static void mode_seekable(const unsigned char *src, size_t size, int level, unsigned n)
{
    unsigned frame = 4096u << (n % 3);
    ZSTD_seekable_CStream *zcs = ZSTD_seekable_createCStream();
    check("seekable init", ZSTD_seekable_initCStream(zcs, level, (int)(n & 1), frame));
    size_t cap = ZSTD_compressBound(size) + 65536;
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size);
    ZSTD_outBuffer ob = {dst, cap, 0};
    ZSTD_inBuffer ib = {src, size, 0};
    while (ib.pos < ib.size)
        check("seekable compress", ZSTD_seekable_compressStream(zcs, &ob, &ib));
    size_t left;
    while ((left = check("seekable end", ZSTD_seekable_endStream(zcs, &ob))) != 0) {
    }
    ZSTD_seekable_freeCStream(zcs);

    ZSTD_seekable *zs = ZSTD_seekable_create();
    check("seekable initBuff", ZSTD_seekable_initBuff(zs, dst, ob.pos));
    unsigned frames = ZSTD_seekable_getNumFrames(zs);
    if (frames == 0)
        fail("seekable frames", 0);
    for (int i = 0; i < 16; i++) {
        size_t off = rng() % size, len = 1 + rng() % 9000;
        if (off + len > size)
            len = size - off;
        size_t got = check("seekable decompress",
                           ZSTD_seekable_decompress(zs, out, len, off));
        expect_equal(src + off, out, len, got);
    }
    ZSTD_seekable_free(zs);
    free(dst);
    free(out);
}

/* Mode 6: deprecated buffered API, block API, frame inspection, error paths. */
static void mode_misc(const unsigned char *src, size_t size, int level, unsigned n)
{
    size_t cap = ZSTD_compressBound(size) + 1024;
    unsigned char *dst = xmalloc(cap), *out = xmalloc(size);

    ZBUFF_CCtx *zc = ZBUFF_createCCtx();
    check("ZBUFF init", ZBUFF_compressInit(zc, level));
    size_t w = cap, r = size;
    check("ZBUFF continue", ZBUFF_compressContinue(zc, dst, &w, src, &r));
    size_t w2 = cap - w;
    check("ZBUFF end", ZBUFF_compressEnd(zc, dst + w, &w2));
    ZBUFF_freeCCtx(zc);
    size_t clen = w + w2;
    ZBUFF_DCtx *zd = ZBUFF_createDCtx();
    check("ZBUFF dinit", ZBUFF_decompressInit(zd));
    size_t ow = size, ir = clen;
    check("ZBUFF decompress", ZBUFF_decompressContinue(zd, out, &ow, dst, &ir));
    expect_equal(src, out, size, ow);
    ZBUFF_freeDCtx(zd);

    if (ZSTD_findFrameCompressedSize(dst, clen) != clen)
        fail("findFrameCompressedSize", 0);
    ZSTD_frameHeader fh;
    check("getFrameHeader", ZSTD_getFrameHeader(&fh, dst, clen));

    /* corrupt one byte past the header: must be detected or round-trip differently */
    if (clen > 32) {
        dst[16 + n % (clen - 24)] ^= 0x5a;
        size_t d = ZSTD_decompress(out, size, dst, clen);
        if (ZSTD_isError(d) && ZSTD_getErrorCode(d) == ZSTD_error_no_error)
            fail("error code", 0);
        (void)ZSTD_getErrorString(ZSTD_getErrorCode(d));
    }
    /* truncated frame must fail */
    size_t t = ZSTD_decompress(out, size, dst, clen / 2);
    if (!ZSTD_isError(t))
        fail("truncated frame accepted", 0);

    /* raw block API */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t blk = size < 65536 ? size : 65536;
    check("compressBegin", ZSTD_compressBegin(cctx, level > 0 ? level : 1));
    size_t cb = check("compressBlock", ZSTD_compressBlock(cctx, dst, cap, src, blk));
    if (cb != 0) {
        check("decompressBegin", ZSTD_decompressBegin(dctx));
        size_t db = check("decompressBlock", ZSTD_decompressBlock(dctx, out, size, dst, cb));
        expect_equal(src, out, blk, db);
    }
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
    free(dst);
    free(out);
}

int main(int argc, char **argv)
{
    static const int levels[] = {-5, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 19};
    if (argc != 2) {
        fprintf(stderr, "usage: driver N   (scenario 0..49)\n");
        return 2;
    }
    unsigned n = (unsigned)strtoul(argv[1], NULL, 10);
    rng_state = 0x9e3779b97f4a7c15ULL ^ n;
    unsigned kind = n % 5, mode = n % 7;
    int level = levels[(n * 7) % (sizeof levels / sizeof *levels)];
    size_t size = (size_t)32768 << (n % 3);
    if (level >= 16 && size > 65536)
        size = 65536; /* keep the slow strategies quick at -O0 */
    unsigned char *src = xmalloc(size);
    generate(src, size, kind);

    switch (mode) {
    case 0: mode_simple(src, size, level); break;
    case 1: mode_advanced(src, size, level, n); break;
    case 2: mode_stream(src, size, level, n); break;
    case 3: mode_dict(src, size, level, n); break;
    case 4: mode_mt(src, size, level, n); break;
    case 5: mode_seekable(src, size, level, n); break;
    default: mode_misc(src, size, level, n); break;
    }
    free(src);
    printf("scenario %u: kind %u mode %u level %d size %zu ok\n", n, kind, mode, level, size);
    return 0;
}
