#include "sockspec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *parse_port(const char *text, size_t len, in_port_t *port)
{
	if (len == 0 || len > 5)
		return "bad port";
	unsigned long n = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return "bad port";
		n = n * 10 + (unsigned long)(text[i] - '0');
	}
	if (n == 0 || n > 65535)
		return "bad port";
	*port = htons((in_port_t)n);
	return NULL;
}

static const char *parse_inet(const char *rest, int family, struct sockspec *out)
{
	const char *at = strchr(rest, '@');
	if (at == NULL)
		return "give the address to listen on, e.g. inet:10031@127.0.0.1";
	in_port_t port;
	const char *why = parse_port(rest, (size_t)(at - rest), &port);
	if (why != NULL)
		return why;
	char host[INET6_ADDRSTRLEN + 2];
	const char *h = at + 1;
	size_t len = strlen(h);
	if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
		h++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof host)
		return "bad address";
	memcpy(host, h, len);
	host[len] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, family == AF_INET ? "127.0.0.1" : "::1");

	memset(out, 0, sizeof *out);
	out->family = family;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return "not a numeric IPv4 address";
		out->addrlen = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return "not a numeric IPv6 address";
		out->addrlen = sizeof *sin6;
	}
	return NULL;
}

const char *sockspec_parse(const char *spec, struct sockspec *out)
{
	const char *path = NULL;
	if (strncmp(spec, "inet:", 5) == 0)
		return parse_inet(spec + 5, AF_INET, out);
	if (strncmp(spec, "inet6:", 6) == 0)
		return parse_inet(spec + 6, AF_INET6, out);
	if (strncmp(spec, "unix:", 5) == 0)
		path = spec + 5;
	else if (strncmp(spec, "local:", 6) == 0)
		path = spec + 6;
	else
		return "expected unix:/path, local:/path, inet:PORT@ADDR or inet6:PORT@[ADDR]";
	if (path[0] != '/')
		return "a unix socket path must be absolute";
	memset(out, 0, sizeof *out);
	if (strlen(path) >= sizeof out->path)
		return "unix socket path too long";
	out->family = AF_UNIX;
	strcpy(out->path, path);
	struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr;
	sun->sun_family = AF_UNIX;
	strcpy(sun->sun_path, path);
	out->addrlen = sizeof *sun;
	return NULL;
}

const char *door_socket_problem(const char *spec)
{
	struct sockspec s;
	return sockspec_parse(spec, &s);
}

int sockspec_listen(const struct sockspec *s, unsigned mode, uid_t uid, gid_t gid)
{
	int fd = socket(s->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int on = 1;
	if (s->family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (s->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	mode_t old = 0;
	if (s->family == AF_UNIX) {
		struct stat st;
		if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(s->path); /* stale from a previous run */
		old = umask(0777 & ~mode);
	}
	int rc = bind(fd, (const struct sockaddr *)&s->addr, s->addrlen);
	if (s->family == AF_UNIX)
		umask(old);
	if (rc == 0 && s->family == AF_UNIX)
		rc = chmod(s->path, mode);
	if (rc == 0 && s->family == AF_UNIX && uid != (uid_t)-1)
		rc = chown(s->path, uid, gid);
	if (rc == 0)
		rc = listen(fd, 128);
	if (rc != 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}
