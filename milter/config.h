/*
 * config: reads the libconfig policy file into a struct policy, checking
 * every setting.  Errors name the file, the line and the setting.
 */
#ifndef CMDGATE_CONFIG_H
#define CMDGATE_CONFIG_H

#include "policy.h"

struct config_error {
	char file[256];
	int line;          /* 0 when no line applies */
	char message[512]; /* names the setting, e.g. "mode: unknown mode \"x\"" */
};

/* Returns the loaded policy, or NULL with *err filled in. */
struct policy *config_load(const char *file, struct config_error *err);

/* "FILE:LINE: message" (or "FILE: message") into buf. */
void config_error_format(const struct config_error *err, char *buf, size_t size);

/* Every setting name the loader knows, dotted ("reply.code"), NULL-terminated. */
extern const char *const config_known_settings[];

#endif
