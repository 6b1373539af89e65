/* http.c: request-line and header parsing, percent-decoding, queries. */
#include "http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

static enum http_method method_of(const char *m, size_t n)
{
    if (n == 3 && memcmp(m, "GET", 3) == 0)
        return HTTP_GET;
    if (n == 4 && memcmp(m, "HEAD", 4) == 0)
        return HTTP_HEAD;
    if (n == 4 && memcmp(m, "POST", 4) == 0)
        return HTTP_POST;
    return HTTP_OTHER;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int http_url_decode(const char *in, size_t in_len, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < in_len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= in_len)
                return -1; /* truncated escape */
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0)
            return -1; /* no NULs in decoded text */
        if (o + 1 >= out_size)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

static enum http_parse_result parse_target(const char *t, size_t n, struct http_request *req)
{
    if (n == 0 || t[0] != '/')
        return HTTP_BAD_REQUEST;
    const char *q = memchr(t, '?', n);
    size_t path_len = q ? (size_t)(q - t) : n;
    if (path_len >= HTTP_MAX_PATH)
        return HTTP_URI_TOO_LONG;
    if (http_url_decode(t, path_len, req->path, sizeof req->path) < 0)
        return HTTP_BAD_REQUEST;
    if (strstr(req->path, "/../") || strcmp(req->path, "/..") == 0)
        return HTTP_BAD_REQUEST;
    req->query[0] = '\0';
    if (q) {
        size_t qn = n - path_len - 1;
        if (qn >= HTTP_MAX_QUERY)
            return HTTP_URI_TOO_LONG;
        memcpy(req->query, q + 1, qn);
        req->query[qn] = '\0';
    }
    return HTTP_OK;
}

static enum http_parse_result parse_request_line(const char *p, const char *eol, struct http_request *req)
{
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p)
        return HTTP_BAD_REQUEST;
    size_t mlen = (size_t)(sp1 - p);
    if (mlen >= sizeof req->method_text)
        return HTTP_BAD_REQUEST;
    for (size_t i = 0; i < mlen; i++)
        if (!isupper((unsigned char)p[i]))
            return HTTP_BAD_REQUEST;
    memcpy(req->method_text, p, mlen);
    req->method_text[mlen] = '\0';
    req->method = method_of(p, mlen);

    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (!sp2)
        return HTTP_BAD_REQUEST;
    enum http_parse_result r = parse_target(target, (size_t)(sp2 - target), req);
    if (r != HTTP_OK)
        return r;

    const char *version = sp2 + 1;
    size_t vlen = (size_t)(eol - version);
    if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0)
        return HTTP_BAD_VERSION;
    if (version[7] == '0')
        req->version_minor = 0;
    else if (version[7] == '1')
        req->version_minor = 1;
    else
        return HTTP_BAD_VERSION;
    return HTTP_OK;
}

static int token_char(int c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static enum http_parse_result parse_header(const char *p, const char *eol, struct http_request *req)
{
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p)
        return HTTP_BAD_REQUEST;
    for (const char *c = p; c < colon; c++)
        if (!token_char((unsigned char)*c))
            return HTTP_BAD_REQUEST;
    if (req->header_count == HTTP_MAX_HEADERS)
        return HTTP_TOO_MANY_HEADERS;
    const char *v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t'))
        v++;
    const char *vend = eol;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    struct http_header *h = &req->headers[req->header_count++];
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->value = v;
    h->value_len = (size_t)(vend - v);
    return HTTP_OK;
}

const struct http_header *http_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name_len == n && strncasecmp(req->headers[i].name, name, n) == 0)
            return &req->headers[i];
    return NULL;
}

static enum http_parse_result finish(struct http_request *req)
{
    const struct http_header *cl = http_header(req, "Content-Length");
    req->content_length = -1;
    if (cl) {
        char num[24];
        if (cl->value_len == 0 || cl->value_len >= sizeof num)
            return HTTP_BAD_LENGTH;
        memcpy(num, cl->value, cl->value_len);
        num[cl->value_len] = '\0';
        char *end;
        long v = strtol(num, &end, 10);
        if (*end != '\0' || v < 0 || v > 1 << 20)
            return HTTP_BAD_LENGTH;
        req->content_length = v;
    }
    const struct http_header *conn = http_header(req, "Connection");
    req->keep_alive = req->version_minor == 1;
    if (conn && conn->value_len == 5 && strncasecmp(conn->value, "close", 5) == 0)
        req->keep_alive = 0;
    else if (conn && conn->value_len == 10 && strncasecmp(conn->value, "keep-alive", 10) == 0)
        req->keep_alive = 1;
    if (req->version_minor == 1 && !http_header(req, "Host"))
        return HTTP_BAD_REQUEST;
    return HTTP_OK;
}

enum http_parse_result http_parse(const char *buf, size_t len, struct http_request *req)
{
    const char *end = buf + len;
    const char *eol = find_crlf(buf, end);
    if (!eol)
        return len > 8192 ? HTTP_BAD_REQUEST : HTTP_INCOMPLETE;
    memset(req, 0, sizeof *req);
    enum http_parse_result r = parse_request_line(buf, eol, req);
    if (r != HTTP_OK)
        return r;
    const char *p = eol + 2;
    for (;;) {
        eol = find_crlf(p, end);
        if (!eol)
            return HTTP_INCOMPLETE;
        if (eol == p) {
            req->head_len = (size_t)(eol + 2 - buf);
            return finish(req);
        }
        r = parse_header(p, eol, req);
        if (r != HTTP_OK)
            return r;
        p = eol + 2;
    }
}

int http_query_param(const char *query, const char *name, char *out, size_t out_size)
{
    size_t n = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=')
            return http_url_decode(p + n + 1, len - n - 1, out, out_size);
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

const char *http_parse_result_text(enum http_parse_result r)
{
    switch (r) {
    case HTTP_OK:
        return "ok";
    case HTTP_INCOMPLETE:
        return "incomplete request";
    case HTTP_BAD_REQUEST:
        return "malformed request";
    case HTTP_URI_TOO_LONG:
        return "URI too long";
    case HTTP_BAD_VERSION:
        return "unsupported HTTP version";
    case HTTP_TOO_MANY_HEADERS:
        return "too many headers";
    case HTTP_BAD_LENGTH:
        return "bad Content-Length";
    }
    return "unknown";
}
