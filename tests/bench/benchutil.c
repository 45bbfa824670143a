#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		uint32_t *grown = realloc(s->v, cap * sizeof *grown);
		if (grown == NULL) {
			fprintf(stderr, "bench: out of memory for latency samples\n");
			exit(1);
		}
		s->v = grown;
		s->cap = cap;
	}
	s->v[s->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

double samples_percentile_us(struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof *s->v, cmp_u32);
	size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	return s->v[i] / 1000.0;
}

void samples_free(struct samples *s)
{
	free(s->v);
	*s = (struct samples){ 0 };
}

int raise_nofile(unsigned long want)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) != 0)
		return -1;
	if (r.rlim_cur >= want)
		return 0;
	r.rlim_cur = want < r.rlim_max ? want : r.rlim_max;
	return setrlimit(RLIMIT_NOFILE, &r);
}

double parse_number(const char *text, char option)
{
	char *end;
	double v = strtod(text, &end);
	if (*text == '\0' || *end != '\0' || !(v > 0)) {
		fprintf(stderr, "bench: -%c wants a positive number, not \"%s\"\n", option, text);
		exit(64);
	}
	return v;
}
