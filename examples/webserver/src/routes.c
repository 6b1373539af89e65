/* routes.c: the server's pages: /, /hello, /echo, /fib, /status. */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

static void body_printf(struct response *res, const char *fmt, const char *a, const char *b)
{
    int n = snprintf(res->body, sizeof res->body, fmt, a, b);
    res->body_len = n < 0 ? 0 : (size_t)n >= sizeof res->body ? sizeof res->body - 1 : (size_t)n;
}

void error_response(int status, const char *detail, struct response *res)
{
    res->status = status;
    res->content_type = "text/plain";
    body_printf(res, "%s: %s\n", status_text(status), detail);
}

static void page_index(struct response *res)
{
    res->status = 200;
    res->content_type = "text/html";
    body_printf(res, "%s%s",
                "<!doctype html><title>covnet demo</title>\n<h1>covnet demo server</h1>\n",
                "<ul><li><a href=\"/hello?name=you\">/hello</a><li>/echo (POST)<li>/fib?n=10<li>/status</ul>\n");
}

static void page_hello(const struct http_request *req, struct response *res)
{
    char name[64];
    if (http_query_param(req->query, "name", name, sizeof name) < 0) {
        strcpy(name, "world");
    } else {
        for (char *c = name; *c; c++)
            if (*c == '<' || *c == '>' || *c == '&')
                *c = '_'; /* keep the page well-formed */
    }
    res->status = 200;
    res->content_type = "text/plain";
    body_printf(res, "Hello, %s!%s", name, "\n");
}

static unsigned long long fib(unsigned n)
{
    unsigned long long a = 0, b = 1;
    while (n-- > 0) {
        unsigned long long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

static void page_fib(const struct http_request *req, struct response *res)
{
    char num[16];
    char *end;
    if (http_query_param(req->query, "n", num, sizeof num) < 0) {
        error_response(400, "missing parameter n", res);
        return;
    }
    long n = strtol(num, &end, 10);
    if (*end != '\0' || n < 0 || n > 90) {
        error_response(400, "n must be an integer in 0..90", res);
        return;
    }
    char value[32];
    snprintf(value, sizeof value, "%llu", fib((unsigned)n));
    res->status = 200;
    res->content_type = "text/plain";
    body_printf(res, "fib(%s) = %s\n", num, value);
}

static void page_echo(const char *body, size_t body_len, struct response *res)
{
    if (body_len >= sizeof res->body) {
        error_response(413, "body larger than 4095 bytes", res);
        return;
    }
    res->status = 200;
    res->content_type = "application/octet-stream";
    memcpy(res->body, body, body_len);
    res->body_len = body_len;
}

static void page_status(const struct server_stats *stats, struct response *res)
{
    int n = snprintf(res->body, sizeof res->body,
                     "{\"requests\": %lu, \"errors\": %lu, \"bytes_in\": %lu}\n",
                     stats->requests, stats->errors, stats->bytes_in);
    res->status = 200;
    res->content_type = "application/json";
    res->body_len = n < 0 ? 0 : (size_t)n;
}

void route(const struct http_request *req, const char *body, size_t body_len,
           struct server_stats *stats, struct response *res)
{
    const char *p = req->path;
    int is_get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    res->allow = NULL;

    if (strcmp(p, "/echo") == 0) {
        if (req->method != HTTP_POST) {
            res->allow = "POST";
            error_response(405, "use POST", res);
            return;
        }
        if (req->content_length < 0) {
            error_response(411, "Content-Length required", res);
            return;
        }
        page_echo(body, body_len, res);
        return;
    }
    if (!is_get) {
        res->allow = "GET, HEAD";
        error_response(405, req->method_text, res);
        return;
    }
    if (strcmp(p, "/") == 0 || strcmp(p, "/index.html") == 0)
        page_index(res);
    else if (strcmp(p, "/hello") == 0)
        page_hello(req, res);
    else if (strcmp(p, "/fib") == 0)
        page_fib(req, res);
    else if (strcmp(p, "/status") == 0)
        page_status(stats, res);
    else
        error_response(404, p, res);
}
