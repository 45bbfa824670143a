#include "running.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct policy *current;
static struct probe_table *probe_table;

struct probe_table *running_probe_table(void)
{
	return probe_table;
}

void running_install(struct policy *p)
{
	if (probe_table == NULL)
		probe_table = probe_table_new(); /* NULL on ENOMEM: counting stays per session */
	p->refs = 1;
	pthread_mutex_lock(&lock);
	struct policy *old = current;
	current = p;
	pthread_mutex_unlock(&lock);
	if (old != NULL)
		running_release(old);
}

struct policy *running_acquire(void)
{
	pthread_mutex_lock(&lock);
	struct policy *p = current;
	if (p != NULL)
		p->refs++;
	pthread_mutex_unlock(&lock);
	return p;
}

void running_release(struct policy *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&lock);
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&lock);
	if (last)
		policy_free(p);
}

/* Sockets are opened once, as root: a new one needs a restart. */
static void warn_if_changed(const char *name, const char *was, const char *now, const char *file)
{
	was = was ? was : "none";
	now = now ? now : "none";
	if (strcmp(was, now) != 0)
		log_msg(LOG_WARNING, "%s changed to %s in %s: takes effect at restart", name, now, file);
}

int running_reload(void)
{
	struct policy *old = running_acquire();
	if (old == NULL)
		return -1;
	struct config_error err;
	struct policy *fresh = config_load(old->file, &err);
	if (fresh == NULL) {
		char text[1024];
		config_error_format(&err, text, sizeof text);
		log_msg(LOG_ERR, "%s; keeping previous configuration", text);
		running_release(old);
		return -1;
	}
	warn_if_changed("socket", old->socket, fresh->socket, fresh->file);
	warn_if_changed("policy_socket", old->policy_socket, fresh->policy_socket, fresh->file);
	warn_if_changed("socketmap_socket", old->socketmap_socket, fresh->socketmap_socket, fresh->file);
	if (fresh->syslog_facility != old->syslog_facility)
		log_set_facility(fresh->syslog_facility);
	running_install(fresh);
	log_msg(LOG_INFO, "configuration reloaded from %s", fresh->file);
	running_release(old);
	return 0;
}

static void *reload_thread(void *arg)
{
	sigset_t *set = arg;
	for (;;) {
		int sig;
		if (sigwait(set, &sig) == 0 && sig == SIGUSR1)
			running_reload();
	}
	return NULL;
}

int running_start_reload_thread(void)
{
	static sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	/*
	 * The reload thread must not take SIGHUP, SIGTERM or SIGINT either:
	 * libmilter's own signal thread waits for those to stop smfi_main()
	 * cleanly, and a thread that left them unblocked would die of them.
	 */
	sigset_t all = set;
	sigaddset(&all, SIGHUP);
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &all, NULL) != 0)
		return -1;
	pthread_t tid;
	if (pthread_create(&tid, NULL, reload_thread, &set) != 0)
		return -1;
	return pthread_detach(tid) == 0 ? 0 : -1;
}

void running_clear(void)
{
	pthread_mutex_lock(&lock);
	struct policy *old = current;
	current = NULL;
	pthread_mutex_unlock(&lock);
	running_release(old);
}
