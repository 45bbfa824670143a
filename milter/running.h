/*
 * running: holds the policy in force and replaces it on SIGUSR1.  Sessions
 * take a reference when they start and keep that policy to their end; a
 * reload that fails leaves the running policy untouched.
 */
#ifndef CMDGATE_RUNNING_H
#define CMDGATE_RUNNING_H

#include "policy.h"
#include "probes.h"

/* Installs the first policy (already loaded and checked). */
void running_install(struct policy *p);

/* The policy in force, with a reference the caller must release. */
struct policy *running_acquire(void);
void running_release(struct policy *p);

/* Re-reads the policy file and logs the outcome; returns 0 if it replaced the policy. */
int running_reload(void);

/*
 * Blocks SIGUSR1, SIGHUP, SIGTERM and SIGINT in the calling thread (so in
 * every thread it creates later) and starts a thread that reloads on each
 * SIGUSR1; libmilter's signal thread takes the other three.  Call before
 * smfi_main().
 */
int running_start_reload_thread(void);

/* The probe counts shared by every door (see probes.h); never NULL once installed. */
struct probe_table *running_probe_table(void);

/* Drops the running policy at exit. */
void running_clear(void);

#endif
