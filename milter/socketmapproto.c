#include "socketmapproto.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

ssize_t netstring_parse(const char *in, size_t len, const char **data, size_t *data_len,
			const char **why)
{
	size_t n = 0, i = 0;
	for (; i < len && in[i] >= '0' && in[i] <= '9'; i++) {
		if (i == 5 || (i == 1 && in[0] == '0')) {
			*why = "bad netstring length";
			return -1;
		}
		n = n * 10 + (size_t)(in[i] - '0');
	}
	if (i == len)
		return 0;
	if (i == 0 || in[i] != ':') {
		*why = "not a netstring";
		return -1;
	}
	if (n > SOCKETMAP_REQUEST_MAX) {
		*why = "request longer than 4096 bytes";
		return -1;
	}
	size_t total = i + 1 + n + 1;
	if (len < total)
		return 0;
	if (in[total - 1] != ',') {
		*why = "netstring does not end with ','";
		return -1;
	}
	*data = in + i + 1;
	*data_len = n;
	return (ssize_t)total;
}

int netstring_write(char *out, size_t size, const char *s, size_t n)
{
	int head = snprintf(out, size, "%zu:", n);
	if (head < 0 || (size_t)head + n + 1 >= size)
		return -1;
	memcpy(out + head, s, n);
	out[head + (int)n] = ',';
	out[head + (int)n + 1] = '\0';
	return head + (int)n + 1;
}

int socketmap_quote(const char *s, char *out, size_t size)
{
	size_t n = 0;
	if (size < 3)
		return -1;
	out[n++] = '"';
	for (; *s != '\0'; s++) {
		bool escape = *s == '"' || *s == '\\';
		if (n + escape + 1 + 2 > size) /* this byte, closing '"' and NUL */
			return -1;
		if (escape)
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n++] = '"';
	out[n] = '\0';
	return (int)n;
}

int socketmap_query_parse(const char *data, size_t len, struct socketmap_query *q,
			  const char **why)
{
	const size_t name_len = sizeof SOCKETMAP_NAME - 1;
	if (len <= name_len || memcmp(data, SOCKETMAP_NAME, name_len) != 0 || data[name_len] != ' ') {
		*why = "unknown map name (expected \"" SOCKETMAP_NAME " KEY\")";
		return -1;
	}
	const char *key = data + name_len + 1, *end = data + len;
	const char *slash1 = memchr(key, '/', (size_t)(end - key));
	const char *slash2 = slash1 ? memchr(slash1 + 1, '/', (size_t)(end - slash1 - 1)) : NULL;
	if (slash2 == NULL || slash1 == key) {
		*why = "key is not verb/client/argument";
		return -1;
	}
	if (memchr(data, '\0', len) != NULL) {
		*why = "NUL byte in key";
		return -1;
	}
	q->verb = key;
	q->verb_len = (size_t)(slash1 - key);
	q->client = slash1 + 1;
	q->client_len = (size_t)(slash2 - slash1 - 1);
	q->arg = slash2 + 1;
	q->arg_len = (size_t)(end - slash2 - 1);
	return 0;
}
