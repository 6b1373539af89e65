/* server.c: a small sequential HTTP/1.1 server for covnet's example.
 *
 * usage: server [PORT]   (default 8080)
 * SIGTERM or SIGINT stop it cleanly, so its gcov data is written. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "routes.h"

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_response(int fd, const struct http_request *req, const struct response *res, int keep_alive)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%sConnection: %s\r\n\r\n",
                     res->status, status_text(res->status), res->content_type, res->body_len,
                     res->allow ? "Allow: " : "", res->allow ? res->allow : "", res->allow ? "\r\n" : "",
                     keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    if (write_all(fd, head, (size_t)n) < 0)
        return -1;
    if (req && req->method == HTTP_HEAD)
        return 0;
    return write_all(fd, res->body, res->body_len);
}

static int status_for(enum http_parse_result r)
{
    switch (r) {
    case HTTP_URI_TOO_LONG:
        return 414;
    case HTTP_BAD_VERSION:
        return 505;
    default:
        return 400;
    }
}

/* Serves one connection: possibly several keep-alive requests. */
static void serve(int fd, struct server_stats *stats)
{
    char buf[16384];
    size_t len = 0;
    for (;;) {
        struct http_request req;
        struct response res;
        enum http_parse_result r;
        while ((r = http_parse(buf, len, &req)) == HTTP_INCOMPLETE) {
            if (len == sizeof buf) {
                r = HTTP_BAD_REQUEST;
                break;
            }
            ssize_t got = read(fd, buf + len, sizeof buf - len);
            if (got < 0 && errno == EINTR && !stopping)
                continue;
            if (got <= 0)
                return; /* peer closed, or we are stopping */
            len += (size_t)got;
            stats->bytes_in += (unsigned long)got;
        }
        stats->requests++;
        if (r != HTTP_OK) {
            stats->errors++;
            error_response(status_for(r), http_parse_result_text(r), &res);
            send_response(fd, NULL, &res, 0);
            return;
        }
        size_t body_len = req.content_length > 0 ? (size_t)req.content_length : 0;
        if (req.head_len + body_len > sizeof buf) {
            stats->errors++;
            error_response(413, "request too large", &res);
            send_response(fd, &req, &res, 0);
            return;
        }
        while (len < req.head_len + body_len) {
            ssize_t got = read(fd, buf + len, req.head_len + body_len - len);
            if (got < 0 && errno == EINTR && !stopping)
                continue;
            if (got <= 0)
                return;
            len += (size_t)got;
            stats->bytes_in += (unsigned long)got;
        }
        route(&req, buf + req.head_len, body_len, stats, &res);
        if (res.status >= 400)
            stats->errors++;
        if (send_response(fd, &req, &res, req.keep_alive) < 0 || !req.keep_alive)
            return;
        size_t used = req.head_len + body_len;
        memmove(buf, buf + used, len - used);
        len -= used;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "server: bad port '%s'\n", argv[1]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) {
        perror("server: socket");
        return 1;
    }
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 16) < 0) {
        perror("server: bind/listen");
        return 1;
    }
    fprintf(stderr, "server: listening on port %d\n", port);

    struct server_stats stats = {0, 0, 0};
    while (!stopping) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            perror("server: accept");
            break;
        }
        serve(fd, &stats);
        close(fd);
    }
    close(ls);
    fprintf(stderr, "server: stopped after %lu requests (%lu errors)\n", stats.requests, stats.errors);
    return 0;
}
