/*
 * null-policy: the baseline the policy door is measured against.  A
 * Postfix policy server that answers every request "action=DUNNO"
 * without looking at it, built like the daemon's door server (one thread,
 * epoll, non-blocking connections), so what is left is the cost of the
 * protocol and the sockets.
 *
 * usage: null-policy PORT   (listens on 127.0.0.1)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
	int fd;
	char buf[16384 + 2];
	size_t len;
};

static const char ANSWER[] = "action=DUNNO\n\n";

/* Answers every complete request in c->buf; -1 closes the connection. */
static int serve(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		char *start = c->buf, *end;
		while ((end = strstr(start, "\n\n")) != NULL) {
			if (send(c->fd, ANSWER, sizeof ANSWER - 1, MSG_NOSIGNAL) != (ssize_t)sizeof ANSWER - 1)
				return -1; /* a client that does not read its answers is not a benchmark */
			start = end + 2;
		}
		c->len -= (size_t)(start - c->buf);
		memmove(c->buf, start, c->len);
		if (c->len >= sizeof c->buf - 1)
			return -1;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: null-policy PORT\n");
		return 64;
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 4096) != 0) {
		perror("null-policy");
		return 71;
	}
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
	struct epoll_event events[64];
	for (;;) {
		int n = epoll_wait(epfd, events, 64, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (c == NULL) {
				int fd;
				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct conn *nc = calloc(1, sizeof *nc);
					if (nc == NULL) {
						close(fd);
						continue;
					}
					nc->fd = fd;
					struct epoll_event ev = { .events = EPOLLIN, .data.ptr = nc };
					epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (serve(c) < 0) {
				epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				free(c);
			}
		}
	}
}
