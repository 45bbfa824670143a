/*
 * benchutil: what the load clients share: a monotonic clock, latency
 * samples with percentiles, the file descriptor limit, and the key=value
 * result line the driver (run-bench.py) parses.
 */
#ifndef CMDGATE_BENCHUTIL_H
#define CMDGATE_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

uint64_t now_ns(void);

/* Latencies in nanoseconds (capped at about 4 s). */
struct samples {
	uint32_t *v;
	size_t n, cap;
};

void samples_add(struct samples *s, uint64_t ns);
/* The p-th percentile (0..100) in microseconds; sorts the samples. 0 when empty. */
double samples_percentile_us(struct samples *s, double p);
void samples_free(struct samples *s);

/* Raises the soft RLIMIT_NOFILE to at least want (up to the hard limit). */
int raise_nofile(unsigned long want);

/* Parses a positive number or exits with a usage message naming the option. */
double parse_number(const char *text, char option);

#endif
