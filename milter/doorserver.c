#include "doorserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "sockspec.h"

#define DOORS_MAX 4
#define READ_CHUNK 16384

struct listener {
	int fd;
	const struct door_protocol *proto;
};

struct conn {
	int fd;
	const struct door_protocol *proto;
	char peer[64];
	char *in;
	size_t in_len, in_cap;
	struct outbuf out;
	size_t out_sent;
	int closing;  /* stop reading; close once out is sent */
	uint32_t events; /* what epoll watches for now */
};

static struct listener listeners[DOORS_MAX];
static size_t nlisteners;
static int epfd = -1;

int outbuf_add(struct outbuf *o, const char *s, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		while (cap < o->len + n)
			cap *= 2;
		char *grown = realloc(o->data, cap);
		if (grown == NULL)
			return -1;
		o->data = grown;
		o->cap = cap;
	}
	memcpy(o->data + o->len, s, n);
	o->len += n;
	return 0;
}

int doorserver_listen(const char *spec, const struct door_protocol *proto,
		      unsigned mode, uid_t uid, gid_t gid)
{
	struct sockspec s;
	const char *why = sockspec_parse(spec, &s);
	if (why != NULL) {
		log_msg(LOG_ERR, "%s door: %s: %s", proto->name, spec, why);
		return -1;
	}
	if (nlisteners == DOORS_MAX)
		return -1;
	int fd = sockspec_listen(&s, mode, uid, gid);
	if (fd < 0) {
		log_msg(LOG_ERR, "%s door: cannot listen on %s: %s", proto->name, spec, strerror(errno));
		return -1;
	}
	listeners[nlisteners++] = (struct listener){ fd, proto };
	return 0;
}

static void conn_close(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->out.data);
	free(c);
}

static void peer_name(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char addr[INET6_ADDRSTRLEN] = "?";
	snprintf(buf, size, "unix");
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof addr);
		snprintf(buf, size, "%s:%u", addr, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof addr);
		snprintf(buf, size, "[%s]:%u", addr, ntohs(sin6->sin6_port));
	}
}

static void accept_all(const struct listener *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				log_msg(LOG_ERR, "%s door: out of file descriptors; new connections wait", l->proto->name);
				usleep(100000); /* level-triggered: the listener reports again */
			}
			return;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->proto = l->proto;
		c->events = EPOLLIN;
		peer_name(fd, c->peer, sizeof c->peer);
		struct epoll_event ev = { .events = c->events, .data.ptr = c };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
		}
	}
}

/* Sends what is queued; returns -1 when the connection is finished. */
static int flush(struct conn *c)
{
	while (c->out_sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return -1;
		c->out_sent += (size_t)n;
	}
	bool pending = c->out_sent < c->out.len;
	if (!pending)
		c->out_sent = c->out.len = 0;
	if (!pending && c->closing)
		return -1;
	/* Most answers go out at once: then the watch is unchanged and costs no call. */
	uint32_t want = (c->closing ? 0 : EPOLLIN) | (pending ? EPOLLOUT : 0);
	if (want != c->events) {
		struct epoll_event ev = { .events = want, .data.ptr = c };
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		c->events = want;
	}
	return 0;
}

/* Reads what arrived and answers every complete request. */
static int readable(struct conn *c)
{
	for (;;) {
		if (c->in_cap - c->in_len < READ_CHUNK) {
			char *grown = realloc(c->in, c->in_cap + READ_CHUNK);
			if (grown == NULL)
				return -1;
			c->in = grown;
			c->in_cap += READ_CHUNK;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (c->in_len > 0)
				log_msg(LOG_WARNING, "%s door: %s: connection closed inside a request (%zu bytes unanswered)",
					c->proto->name, c->peer, c->in_len);
			/* The client has stopped sending: still send what it was answered. */
			c->closing = 1;
			break;
		}
		c->in_len += (size_t)n;

		size_t used = 0;
		while (used < c->in_len && !c->closing) {
			ssize_t took = c->proto->serve(c->in + used, c->in_len - used, &c->out, c->peer);
			if (took < 0)
				c->closing = 1;
			if (took <= 0)
				break;
			used += (size_t)took;
		}
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (!c->closing && c->in_len > c->proto->max_pending) {
			log_msg(LOG_WARNING, "%s door: %s: request larger than %zu bytes; closing",
				c->proto->name, c->peer, c->proto->max_pending);
			c->closing = 1;
		}
		if (c->closing)
			break;
	}
	return flush(c);
}

static void *serve_doors(void *arg)
{
	(void)arg;
	struct epoll_event events[64];
	for (;;) {
		int n = epoll_wait(epfd, events, 64, -1);
		for (int i = 0; i < n; i++) {
			void *p = events[i].data.ptr;
			if (p >= (void *)listeners && p < (void *)(listeners + DOORS_MAX)) {
				accept_all(p);
				continue;
			}
			struct conn *c = p;
			int rc = 0;
			if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				rc = c->closing ? -1 : readable(c);
			else if (events[i].events & EPOLLOUT)
				rc = flush(c);
			if (rc < 0)
				conn_close(c);
		}
	}
	return NULL;
}

int doorserver_start(void)
{
	if (nlisteners == 0)
		return 0;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		return -1;
	for (size_t i = 0; i < nlisteners; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &listeners[i] };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, listeners[i].fd, &ev) != 0)
			return -1;
	}
	pthread_t tid;
	if (pthread_create(&tid, NULL, serve_doors, NULL) != 0)
		return -1;
	return pthread_detach(tid) == 0 ? 0 : -1;
}
