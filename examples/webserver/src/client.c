/* client.c: exercises the example server over the network.
 *
 * usage: client HOST PORT              run the whole scenario, exit 0 if all pass
 *        client HOST PORT get PATH     print the body of GET PATH
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct reply {
    int status;
    char body[8192];
    size_t body_len;
};

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        fprintf(stderr, "client: cannot resolve %s: %s\n", host, gai_strerror(err));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "client: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response; returns 0 on success. */
static int read_reply(int fd, struct reply *r)
{
    static char buf[16384];
    size_t len = 0;
    char *head_end = NULL;
    while (!head_end) {
        if (len == sizeof buf - 1)
            return -1;
        ssize_t got = read(fd, buf + len, sizeof buf - 1 - len);
        if (got <= 0)
            return -1;
        len += (size_t)got;
        buf[len] = '\0';
        head_end = strstr(buf, "\r\n\r\n");
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    size_t want = 0;
    const char *cl = strstr(buf, "Content-Length: ");
    if (cl && cl < head_end)
        want = (size_t)strtoul(cl + 16, NULL, 10);
    if (want >= sizeof r->body)
        return -1;
    size_t have = len - (size_t)(head_end + 4 - buf);
    memcpy(r->body, head_end + 4, have < want ? have : want);
    while (have < want) {
        ssize_t got = read(fd, r->body + have, want - have);
        if (got <= 0)
            return -1;
        have += (size_t)got;
    }
    r->body_len = want;
    r->body[want] = '\0';
    return 0;
}

static int request(const char *host, const char *port, const char *raw, size_t raw_len, struct reply *r)
{
    int fd = connect_to(host, port);
    if (fd < 0)
        return -1;
    int rc = send_all(fd, raw, raw_len) == 0 ? read_reply(fd, r) : -1;
    close(fd);
    return rc;
}

static int failures;

static void check(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok)
        failures++;
}

static void expect(const char *host, const char *port, const char *what, const char *raw,
                   int status, const char *body_part)
{
    struct reply r;
    memset(&r, 0, sizeof r);
    int rc = request(host, port, raw, strlen(raw), &r);
    int ok = rc == 0 && r.status == status && (!body_part || strstr(r.body, body_part));
    if (!ok && rc == 0)
        fprintf(stderr, "client: %s: got %d '%s'\n", what, r.status, r.body);
    check(what, ok);
}

static void keep_alive(const char *host, const char *port)
{
    int fd = connect_to(host, port);
    struct reply a, b;
    const char *first = "GET /hello?name=one HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *second = "GET /hello?name=two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int ok = fd >= 0 && send_all(fd, first, strlen(first)) == 0 && read_reply(fd, &a) == 0 &&
             send_all(fd, second, strlen(second)) == 0 && read_reply(fd, &b) == 0 &&
             strstr(a.body, "one") && strstr(b.body, "two");
    if (fd >= 0)
        close(fd);
    check("two requests on one keep-alive connection", ok);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: client HOST PORT [get PATH]\n");
        return 2;
    }
    const char *host = argv[1], *port = argv[2];
    if (argc == 5 && strcmp(argv[3], "get") == 0) {
        char raw[512];
        struct reply r;
        snprintf(raw, sizeof raw, "GET %s HTTP/1.0\r\n\r\n", argv[4]);
        if (request(host, port, raw, strlen(raw), &r) != 0)
            return 1;
        fwrite(r.body, 1, r.body_len, stdout);
        return r.status == 200 ? 0 : 1;
    }

    expect(host, port, "index page", "GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n", 200,
           "covnet demo server");
    expect(host, port, "hello with a percent-encoded name",
           "GET /hello?name=covnet%20net HTTP/1.0\r\n\r\n", 200, "Hello, covnet net!");
    expect(host, port, "hello without a name", "GET /hello HTTP/1.0\r\n\r\n", 200, "Hello, world!");
    expect(host, port, "echo a body",
           "POST /echo HTTP/1.0\r\nContent-Length: 11\r\n\r\nhello there", 200, "hello there");
    expect(host, port, "fib(20)", "GET /fib?n=20 HTTP/1.0\r\n\r\n", 200, "fib(20) = 6765");
    expect(host, port, "fib rejects junk", "GET /fib?n=abc HTTP/1.0\r\n\r\n", 400, "integer");
    expect(host, port, "unknown page", "GET /nope HTTP/1.0\r\n\r\n", 404, "/nope");
    expect(host, port, "wrong method", "DELETE / HTTP/1.0\r\n\r\n", 405, "DELETE");
    expect(host, port, "echo needs POST", "GET /echo HTTP/1.0\r\n\r\n", 405, NULL);
    expect(host, port, "malformed request", "GARBAGE\r\n\r\n", 400, "malformed");
    expect(host, port, "HTTP/2 refused", "GET / HTTP/2.0\r\n\r\n", 505, NULL);
    expect(host, port, "HTTP/1.1 needs Host", "GET / HTTP/1.1\r\n\r\n", 400, NULL);
    keep_alive(host, port);
    expect(host, port, "status counts requests", "GET /status HTTP/1.0\r\n\r\n", 200, "\"requests\"");

    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
