#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static bool to_syslog;
static bool copy_to_stderr;

void log_open(int facility, bool also_stderr)
{
	if (to_syslog)
		closelog();
	copy_to_stderr = also_stderr;
	openlog("milter-cmdgate", LOG_PID | LOG_NDELAY | (also_stderr ? LOG_PERROR : 0), facility);
	to_syslog = true;
}

void log_set_facility(int facility)
{
	log_open(facility, copy_to_stderr);
}

void log_close(void)
{
	if (to_syslog)
		closelog();
	to_syslog = false;
}

void log_msg(int priority, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (to_syslog) {
		vsyslog(priority, fmt, ap);
	} else {
		fputs("milter-cmdgate: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}
