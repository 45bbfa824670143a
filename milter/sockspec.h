/*
 * sockspec: the listening sockets of the policy and socketmap doors, named
 * the way libmilter names the milter socket: unix:/path, local:/path,
 * inet:PORT@ADDR, inet6:PORT@[ADDR].  Addresses are numeric (no DNS at
 * start-up); a door never listens on every interface by accident.
 */
#ifndef CMDGATE_SOCKSPEC_H
#define CMDGATE_SOCKSPEC_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

struct sockspec {
	int family; /* AF_UNIX, AF_INET, AF_INET6 */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* NULL when spec is well formed (and fills *out), else a static reason. */
const char *sockspec_parse(const char *spec, struct sockspec *out);

/* sockspec_parse without the result: for the policy-file checks. */
const char *door_socket_problem(const char *spec);

/*
 * Binds and listens (non-blocking, close-on-exec).  A stale unix socket is
 * removed first; it gets `mode` and, when uid != -1, that owner.
 * Returns the fd, or -1 with errno set.
 */
int sockspec_listen(const struct sockspec *s, unsigned mode, uid_t uid, gid_t gid);

#endif
