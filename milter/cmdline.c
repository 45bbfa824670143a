#include "cmdline.h"

#include <stdbool.h>

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_end_blank(char c)
{
	return is_blank(c) || c == '\r' || c == '\n';
}

void cmdline_parse(const char *line, struct command_line *out)
{
	const char *p = line ? line : "";
	while (is_blank(*p))
		p++;
	out->verb = p;
	while (*p && !is_end_blank(*p))
		p++;
	out->verb_len = (size_t)(p - out->verb);
	while (is_end_blank(*p))
		p++;
	out->arg = p;
	const char *end = p;
	while (*end)
		end++;
	while (end > p && is_end_blank(end[-1]))
		end--;
	out->arg_len = (size_t)(end - p);
}
