/*
 * doorserver: one thread serving the policy and socketmap doors with epoll.
 * Every connection is non-blocking and buffered, so an idle or slow MTA
 * process never holds up another, and there is no thread per connection.
 * A door supplies only its protocol: a function that answers the complete
 * requests at the start of its input.
 */
#ifndef CMDGATE_DOORSERVER_H
#define CMDGATE_DOORSERVER_H

#include <stddef.h>
#include <sys/types.h>

struct outbuf {
	char *data;
	size_t len, cap;
};

/* Appends n bytes; -1 on ENOMEM. */
int outbuf_add(struct outbuf *o, const char *s, size_t n);

struct door_protocol {
	const char *name;    /* "policy", "socketmap": for log lines */
	size_t max_pending;  /* bytes of one unfinished request before the door gives up */
	/*
	 * Answers the complete requests at the start of in[0..len) into out.
	 * Returns the bytes consumed (0: wait for more), or -1 to close the
	 * connection once out is sent (it logs why itself).
	 */
	ssize_t (*serve)(const char *in, size_t len, struct outbuf *out, const char *peer);
};

/* Opens a door's listening socket (call before dropping privileges). 0 or -1, logged. */
int doorserver_listen(const char *spec, const struct door_protocol *proto,
		      unsigned mode, uid_t uid, gid_t gid);

/* Starts the serving thread if any door is open. 0 or -1. */
int doorserver_start(void);

#endif
