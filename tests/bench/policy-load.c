/*
 * policy-load: Postfix's side of the SMTPD policy delegation protocol, as
 * a load generator.  N connections stay open (Postfix keeps its policy
 * connections), each sends one request at a time and waits for the
 * answer (a line "action=..." and an empty line).  Requests carry the
 * attributes Postfix 3.7 sends; their protocol_state is taken in turn
 * from -v (default VRFY,RCPT: a VRFY the policy refuses and a recipient
 * check it must leave alone, as a door on smtpd_recipient_restrictions
 * sees them).
 *
 * Prints one line: requests answered per second within the measuring
 * window, the 50th/99th percentile latency, and how many answers were
 * DUNNO and how many a refusal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

#define MAX_STATES 8

struct conn {
	int fd;
	bool connected;
	unsigned sent;        /* requests sent on this connection */
	uint64_t sent_at;
	char rbuf[2048];
	size_t rlen;
	char wbuf[2048];
	size_t wlen, woff;
};

static struct {
	int port;
	unsigned conc, nstates;
	double seconds, warmup;
	const char *client_addr;
	const char *states[MAX_STATES];
} opt = { .conc = 1, .seconds = 3, .warmup = 0.5, .client_addr = "198.51.100.25" };

static struct {
	uint64_t window_start, window_end;
	bool measuring, stopping;
	unsigned long requests, dunno, refused, errors, open;
	struct samples lat;
} run;

static int epfd;
static struct sockaddr_in target;

static void error(const char *what)
{
	if (run.errors < 5)
		fprintf(stderr, "policy-load: %s\n", what);
	run.errors++;
}

static int flush(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
			epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			return 0;
		}
		if (n <= 0)
			return -1;
		c->woff += (size_t)n;
	}
	c->woff = c->wlen = 0;
	return 0;
}

static int send_request(struct conn *c)
{
	const char *state = opt.states[c->sent % opt.nstates];
	bool rcpt = strcmp(state, "RCPT") == 0;
	int n = snprintf(c->wbuf, sizeof c->wbuf,
		"request=smtpd_access_policy\n"
		"protocol_state=%s\n"
		"protocol_name=ESMTP\n"
		"client_address=%s\n"
		"client_name=unknown\n"
		"client_port=40000\n"
		"reverse_client_name=unknown\n"
		"server_address=127.0.0.1\n"
		"server_port=25\n"
		"helo_name=client.bench.example\n"
		"sender=%s\n"
		"recipient=%s\n"
		"recipient_count=0\n"
		"queue_id=\n"
		"instance=%x.%x\n"
		"size=0\n"
		"etrn_domain=\n"
		"stress=\n"
		"sasl_method=\n"
		"sasl_username=\n"
		"sasl_sender=\n"
		"ccert_subject=\n"
		"ccert_issuer=\n"
		"ccert_fingerprint=\n"
		"ccert_pubkey_fingerprint=\n"
		"encryption_protocol=\n"
		"encryption_cipher=\n"
		"encryption_keysize=0\n"
		"policy_context=\n"
		"compatibility_level=3.6\n"
		"mail_version=3.7.11\n"
		"\n",
		state, opt.client_addr, rcpt ? "someone@sender.example" : "",
		rcpt ? "user@mx.bench.example" : "root", (unsigned)c->fd, c->sent);
	c->wlen = (size_t)n;
	c->woff = 0;
	c->sent++;
	c->sent_at = now_ns();
	return flush(c);
}

static void conn_end(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
	run.open--;
}

static int on_readable(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - 1 - c->rlen, 0);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			error(n == 0 ? "connection closed by the server" : strerror(errno));
			return -1;
		}
		c->rlen += (size_t)n;
		c->rbuf[c->rlen] = '\0';
		char *end = strstr(c->rbuf, "\n\n");
		if (end == NULL) {
			if (c->rlen >= sizeof c->rbuf - 1) {
				error("answer too long");
				return -1;
			}
			continue;
		}
		uint64_t t = now_ns();
		if (run.measuring && t <= run.window_end) {
			samples_add(&run.lat, t - c->sent_at);
			run.requests++;
			if (strncmp(c->rbuf, "action=DUNNO\n", 13) == 0)
				run.dunno++;
			else if (strncmp(c->rbuf, "action=", 7) == 0 && c->rbuf[7] >= '4' && c->rbuf[7] <= '5')
				run.refused++;
			else
				error("unexpected answer");
		}
		size_t used = (size_t)(end + 2 - c->rbuf);
		if (used != c->rlen) {
			error("answer to a request not sent");
			return -1;
		}
		c->rlen = 0;
		if (run.stopping)
			return 1; /* the window is over: close */
		return send_request(c);
	}
}

static int conn_start(void)
{
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		free(c);
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	run.open++;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	if (connect(c->fd, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) {
		error(strerror(errno));
		conn_end(c);
		return -1;
	}
	return 0;
}

static void on_event(struct conn *c, uint32_t events)
{
	int rc = 0;
	if (!c->connected) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			error(strerror(err));
			rc = -1;
		} else {
			c->connected = true;
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
			epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			rc = send_request(c);
		}
	} else {
		if ((events & EPOLLOUT) && c->wlen > 0) {
			rc = flush(c);
			if (rc == 0 && c->wlen == 0) {
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
				epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			}
		}
		if (rc == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			rc = on_readable(c);
	}
	if (rc != 0)
		conn_end(c);
}

int main(int argc, char **argv)
{
	const char *states = "VRFY,RCPT";
	int ch;
	while ((ch = getopt(argc, argv, "p:c:v:a:d:w:")) != -1) {
		switch (ch) {
		case 'p': opt.port = (int)parse_number(optarg, 'p'); break;
		case 'c': opt.conc = (unsigned)parse_number(optarg, 'c'); break;
		case 'v': states = optarg; break;
		case 'a': opt.client_addr = optarg; break;
		case 'd': opt.seconds = parse_number(optarg, 'd'); break;
		case 'w': opt.warmup = atof(optarg); break;
		default:
			fprintf(stderr, "usage: policy-load -p PORT [-c CONNECTIONS] [-v STATE,...] [-a CLIENT_ADDR] [-d SECONDS] [-w WARMUP]\n");
			return 64;
		}
	}
	static char state_buf[128];
	snprintf(state_buf, sizeof state_buf, "%s", states);
	for (char *s = strtok(state_buf, ","); s && opt.nstates < MAX_STATES; s = strtok(NULL, ","))
		opt.states[opt.nstates++] = s;
	if (opt.port <= 0 || opt.nstates == 0) {
		fprintf(stderr, "policy-load: -p PORT is required\n");
		return 64;
	}
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)opt.port);
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (raise_nofile(opt.conc + 64) != 0 || (epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		perror("policy-load");
		return 1;
	}

	uint64_t start = now_ns();
	run.window_start = start + (uint64_t)(opt.warmup * 1e9);
	run.window_end = run.window_start + (uint64_t)(opt.seconds * 1e9);
	for (unsigned i = 0; i < opt.conc; i++)
		conn_start();
	struct epoll_event events[256];
	uint64_t deadline = run.window_end + 30000000000u;
	while (run.open > 0 && now_ns() < deadline) {
		uint64_t t = now_ns();
		if (!run.measuring && t >= run.window_start)
			run.measuring = true;
		if (t >= run.window_end)
			run.stopping = true;
		int n = epoll_wait(epfd, events, 256, 50);
		for (int i = 0; i < n; i++)
			on_event(events[i].data.ptr, events[i].events);
	}
	double secs = (double)(run.window_end - run.window_start) / 1e9;
	printf("result mode=policy conc=%u seconds=%.3f requests=%lu requests_per_s=%.1f "
	       "p50_us=%.1f p99_us=%.1f dunno=%lu refused=%lu errors=%lu unfinished=%lu\n",
	       opt.conc, secs, run.requests, run.requests / secs,
	       samples_percentile_us(&run.lat, 50), samples_percentile_us(&run.lat, 99),
	       run.dunno, run.refused, run.errors, run.open);
	return run.errors > 0 || run.open > 0 ? 1 : 0;
}
