/*
 * log: the one place messages leave the daemon.  Before log_open they go to
 * stderr (start-up errors); after it to syslog, and to stderr as well when
 * that is a terminal.  Callers pass client text only as a "%s" argument.
 */
#ifndef CMDGATE_LOG_H
#define CMDGATE_LOG_H

#include <stdbool.h>

void log_open(int facility, bool also_stderr);
/* Re-opens syslog with another facility (a reload changed it). */
void log_set_facility(int facility);
void log_close(void);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
