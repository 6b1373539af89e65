/* http.h: a small, strict HTTP/1.x request parser. */
#ifndef WEB_HTTP_H
#define WEB_HTTP_H

#include <stddef.h>

#define HTTP_MAX_HEADERS 32
#define HTTP_MAX_PATH 256
#define HTTP_MAX_QUERY 256

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_OTHER };

enum http_parse_result {
    HTTP_OK = 0,
    HTTP_INCOMPLETE,      /* need more bytes */
    HTTP_BAD_REQUEST,     /* malformed request line or header */
    HTTP_URI_TOO_LONG,
    HTTP_BAD_VERSION,
    HTTP_TOO_MANY_HEADERS,
    HTTP_BAD_LENGTH,
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct http_request {
    enum http_method method;
    char method_text[16];
    char path[HTTP_MAX_PATH];      /* percent-decoded */
    char query[HTTP_MAX_QUERY];    /* raw, without '?' */
    int version_minor;             /* HTTP/1.<minor> */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    long content_length;           /* -1 when absent */
    int keep_alive;
    size_t head_len;               /* bytes up to and including the blank line */
};

enum http_parse_result http_parse(const char *buf, size_t len, struct http_request *req);
const struct http_header *http_header(const struct http_request *req, const char *name);
int http_url_decode(const char *in, size_t in_len, char *out, size_t out_size);
int http_query_param(const char *query, const char *name, char *out, size_t out_size);
const char *http_parse_result_text(enum http_parse_result r);

#endif
