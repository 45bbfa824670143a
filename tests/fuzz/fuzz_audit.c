#include "fuzz_audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

char fuzz_log[2 * AUDIT_LINE_MAX];
int fuzz_lines;

void log_msg(int priority, const char *fmt, ...)
{
	(void)priority;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(fuzz_log, sizeof fuzz_log, fmt, ap);
	va_end(ap);
	fuzz_lines++;
}

void log_set_facility(int facility)
{
	(void)facility;
}

const char *fuzz_audit_field(const char *line, const char *key, size_t *len)
{
	if (strlen(line) >= AUDIT_LINE_MAX)
		abort();
	for (const char *p = line; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();
	const char *p = strchr(line, ':');
	const char *found = NULL;
	if (p == NULL)
		abort();
	for (p++; *p;) {
		if (*p++ != ' ')
			abort();
		const char *k = p;
		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			p++;
		if (p == k || *p != '=')
			abort();
		size_t klen = (size_t)(p - k);
		const char *v = ++p;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p++ != '"')
				abort();
		} else {
			while (*p && *p != ' ')
				p++;
			if (p == v)
				abort();
		}
		if (found == NULL && klen == strlen(key) && memcmp(k, key, klen) == 0) {
			found = v;
			*len = (size_t)(p - v);
		}
	}
	return found;
}

struct policy *fuzz_load_policy(const char *text)
{
	int fd = memfd_create("policy", 0);
	size_t n = strlen(text);
	if (fd < 0 || write(fd, text, n) != (ssize_t)n)
		abort();
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct config_error err;
	struct policy *p = config_load(path, &err);
	if (p == NULL) {
		fprintf(stderr, "fuzz policy: %s:%d: %s\n", err.file, err.line, err.message);
		abort();
	}
	close(fd);
	return p;
}
