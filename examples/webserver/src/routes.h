/* routes.h: what the server answers. */
#ifndef WEB_ROUTES_H
#define WEB_ROUTES_H

#include <stddef.h>

#include "http.h"

struct response {
    int status;
    const char *content_type;
    char body[4096];
    size_t body_len;
    const char *allow; /* for 405 */
};

struct server_stats {
    unsigned long requests;
    unsigned long errors;
    unsigned long bytes_in;
};

void route(const struct http_request *req, const char *body, size_t body_len,
           struct server_stats *stats, struct response *res);
void error_response(int status, const char *detail, struct response *res);
const char *status_text(int status);

#endif
