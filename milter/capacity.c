#include "capacity.h"

#include <dirent.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static unsigned long budget = 1;
static atomic_ulong active;
static atomic_llong last_warning; /* time() of the last "full" warning */

/* Descriptors open now (start-up: listening socket, syslog, stdio). */
static unsigned long open_descriptors(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return 16; /* no /proc: a generous guess */
	unsigned long n = 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the directory itself */
}

void capacity_init(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_msg(LOG_WARNING, "cannot read the file descriptor limit: taking at most %lu sessions",
			budget);
		return;
	}
	rlim_t was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = was;
	}
	unsigned long limit = rl.rlim_cur == RLIM_INFINITY ? 1UL << 20 : (unsigned long)rl.rlim_cur;
	unsigned long used = open_descriptors() + CAPACITY_RESERVE;
	budget = limit > used ? limit - used : 1;
	if (rl.rlim_cur != was)
		log_msg(LOG_INFO, "file descriptor limit raised from %lu to %lu: up to %lu MTA connections at once",
			(unsigned long)was, limit, budget);
	else
		log_msg(LOG_INFO, "file descriptor limit %lu: up to %lu MTA connections at once", limit, budget);
}

bool capacity_enter(void)
{
	unsigned long now = atomic_fetch_add(&active, 1) + 1;
	if (now <= budget)
		return true;
	atomic_fetch_sub(&active, 1);
	long long t = (long long)time(NULL), last = atomic_load(&last_warning);
	if (t - last >= 60 && atomic_compare_exchange_strong(&last_warning, &last, t))
		log_msg(LOG_WARNING,
			"%lu MTA connections open, the most the file descriptor limit allows: refusing new ones with a tempfail (raise LimitNOFILE / ulimit -n)",
			budget);
	return false;
}

void capacity_leave(void)
{
	atomic_fetch_sub(&active, 1);
}
