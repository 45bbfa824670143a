/*
 * milter-load: the MTA side of the milter protocol (version 6), as a load
 * generator.  It keeps N sessions going over TCP; each session is
 *   option negotiation, connect-stage macros (j, {daemon_name},
 *   {daemon_addr}, v, _, {client_addr}, {client_name}), connect (IPv4),
 *   HELO, k unknown commands (verbs taken in turn from -v), quit,
 * and ends when the milter closes the connection after the quit.  It
 * honours the protocol flags the milter returns (skipped steps, steps
 * without a reply), as Postfix does.
 *
 * Run mode prints one line: sessions completed per second within the
 * measuring window, and the 50th/99th percentile of the time from sending
 * an unknown command to reading its complete reply.
 *
 * Hold mode (-H) opens N sessions, takes each up to its last unknown
 * command, prints "held" (after at most -T seconds), waits for a line on
 * standard input, then quits them all (those still opening as soon as
 * they are through) and prints "closed" once the milter closed each one.
 *
 * One thread, epoll, non-blocking sockets: the client spends as little of
 * the machine as it can, and the same for every milter it drives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

/* Protocol constants (libmilter/mfdef.h); written out so the client needs no libmilter. */
#define MILTER_VERSION 6
#define ACTIONS_OFFERED 0x1ffu          /* every action a v6 MTA knows */
#define STEPS_OFFERED 0x1fffffu         /* every protocol flag up to SMFIP_HDR_LEADSPC */
#define P_NOCONNECT 0x1u
#define P_NOHELO 0x2u
#define P_NOUNKNOWN 0x100u
#define P_NR_CONN 0x1000u
#define P_NR_HELO 0x2000u
#define P_NR_UNKN 0x20000u

#define MAX_VERBS 16
#define RBUF 4096
#define WBUF 1024

enum step { ST_CONNECTING, ST_OPTNEG, ST_CONNECT, ST_HELO, ST_UNKNOWN, ST_HELD, ST_QUIT };

struct conn {
	int fd;
	enum step step;
	bool waiting;          /* a reply to the last command is due */
	unsigned unknown_done; /* unknown commands answered (or sent, without replies) */
	uint32_t pflags;       /* protocol flags the milter returned */
	uint64_t sent_at;      /* when the pending unknown command was sent */
	long held_slot;        /* index in held_conns[] while held, else -1 */
	unsigned char rbuf[RBUF];
	size_t rlen;
	unsigned char wbuf[WBUF];
	size_t wlen, woff;
};

static struct {
	const char *host;
	int port;
	unsigned conc, k, nverbs;
	double seconds, warmup;
	bool hold;
	double settle;         /* hold mode: seconds to wait for every session to open */
	const char *client_addr;
	const char *verbs[MAX_VERBS];
} opt = {
	.host = "127.0.0.1", .conc = 1, .k = 6, .seconds = 3, .warmup = 0.5, .settle = 120,
	.client_addr = "198.51.100.25",
};

static struct {
	uint64_t window_start, window_end;
	bool measuring, stopping, releasing;
	unsigned long sessions, commands, refused, tempfailed, passed, other, errors;
	unsigned long held, held_failed, open;
	struct samples lat;
} run;

static int epfd;

/* Hold mode: the sessions waiting for the driver's go. */
static struct conn **held_conns;
static size_t nheld;

static void usage(void)
{
	fprintf(stderr,
		"usage: milter-load -p PORT [-h HOST] [-c SESSIONS] [-k UNKNOWN] [-v VERB,...]\n"
		"                   [-a CLIENT_ADDR] [-d SECONDS] [-w WARMUP] [-H [-T SETTLE]]\n");
	exit(64);
}

static void error(struct conn *c, const char *what)
{
	if (run.errors < 5)
		fprintf(stderr, "milter-load: session in step %d: %s\n", c ? (int)c->step : -1, what);
	run.errors++;
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

/* Queues one packet: 4-byte length, command byte, data. */
static void queue_packet(struct conn *c, char cmd, const void *data, size_t len)
{
	if (c->wlen + 5 + len > sizeof c->wbuf) {
		error(c, "packet too large for the write buffer");
		return;
	}
	put32(c->wbuf + c->wlen, (uint32_t)len + 1);
	c->wbuf[c->wlen + 4] = (unsigned char)cmd;
	memcpy(c->wbuf + c->wlen + 5, data, len);
	c->wlen += 5 + len;
}

/* Appends "s\0" to buf at *n. */
static void add_str(char *buf, size_t *n, const char *s)
{
	size_t l = strlen(s) + 1;
	memcpy(buf + *n, s, l);
	*n += l;
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

static void queue_optneg(struct conn *c)
{
	unsigned char body[12];
	put32(body, MILTER_VERSION);
	put32(body + 4, ACTIONS_OFFERED);
	put32(body + 8, STEPS_OFFERED);
	queue_packet(c, 'O', body, sizeof body);
}

/* Connect-stage macros, then the connect itself, as Postfix sends them. */
static void queue_connect(struct conn *c)
{
	char buf[512], host_line[96];
	size_t n = 0;
	snprintf(host_line, sizeof host_line, "unknown [%s]", opt.client_addr);
	buf[n++] = 'C';
	add_str(buf, &n, "j");
	add_str(buf, &n, "mx.bench.example");
	add_str(buf, &n, "{daemon_name}");
	add_str(buf, &n, "smtpd");
	add_str(buf, &n, "{daemon_addr}");
	add_str(buf, &n, "127.0.0.1");
	add_str(buf, &n, "v");
	add_str(buf, &n, "Postfix 3.7.11");
	add_str(buf, &n, "_");
	add_str(buf, &n, host_line);
	add_str(buf, &n, "{client_addr}");
	add_str(buf, &n, opt.client_addr);
	add_str(buf, &n, "{client_name}");
	add_str(buf, &n, "unknown");
	queue_packet(c, 'D', buf, n);

	if (c->pflags & P_NOCONNECT)
		return;
	n = 0;
	add_str(buf, &n, "unknown");
	buf[n++] = '4';
	uint16_t port = htons(40000);
	memcpy(buf + n, &port, 2);
	n += 2;
	add_str(buf, &n, opt.client_addr);
	queue_packet(c, 'C', buf, n);
}

static void session_end(struct conn *c, bool completed)
{
	if (c->held_slot >= 0)
		held_conns[c->held_slot] = NULL;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	run.open--;
	if (completed && run.measuring && !opt.hold)
		run.sessions++;
	free(c);
}

/*
 * Sends commands until one needs a reply (or the session is held or
 * quit).  Returns -1 when the session failed.
 */
static int send_next(struct conn *c)
{
	for (;;) {
		switch (c->step) {
		case ST_CONNECTING:
			c->step = ST_OPTNEG;
			queue_optneg(c);
			c->waiting = true;
			return flush(c);
		case ST_OPTNEG:
			c->step = ST_CONNECT;
			queue_connect(c);
			if (!(c->pflags & (P_NOCONNECT | P_NR_CONN))) {
				c->waiting = true;
				return flush(c);
			}
			continue;
		case ST_CONNECT:
			c->step = ST_HELO;
			if (!(c->pflags & P_NOHELO)) {
				queue_packet(c, 'H', "client.bench.example", sizeof "client.bench.example");
				if (!(c->pflags & P_NR_HELO)) {
					c->waiting = true;
					return flush(c);
				}
			}
			continue;
		case ST_HELO:
		case ST_UNKNOWN:
			if (c->unknown_done < opt.k && !(c->pflags & P_NOUNKNOWN)) {
				c->step = ST_UNKNOWN;
				const char *verb = opt.verbs[c->unknown_done % opt.nverbs];
				queue_packet(c, 'U', verb, strlen(verb) + 1);
				if (!(c->pflags & P_NR_UNKN)) {
					c->waiting = true;
					c->sent_at = now_ns();
					return flush(c);
				}
				c->unknown_done++;
				continue;
			}
			if (opt.hold && !run.releasing) {
				c->step = ST_HELD;
				c->held_slot = (long)nheld;
				held_conns[nheld++] = c;
				run.held++;
				return flush(c);
			}
			/* fall through */
		case ST_HELD:
			if (c->held_slot >= 0)
				held_conns[c->held_slot] = NULL;
			c->held_slot = -1;
			c->step = ST_QUIT;
			queue_packet(c, 'Q', "", 0);
			c->waiting = false;
			return flush(c);
		case ST_QUIT:
			return 0;
		}
	}
}

/* Handles one complete reply packet. */
static int on_reply(struct conn *c, char cmd, const unsigned char *data, size_t len)
{
	if (!c->waiting) {
		error(c, "reply without a pending command");
		return -1;
	}
	c->waiting = false;
	if (c->step == ST_OPTNEG) {
		if (cmd != 'O' || len < 12) {
			error(c, "bad option negotiation reply");
			return -1;
		}
		if (get32(data) < 2) {
			error(c, "milter protocol version too old");
			return -1;
		}
		c->pflags = get32(data + 8);
		return send_next(c);
	}
	if (c->step == ST_UNKNOWN) {
		uint64_t t = now_ns();
		if (run.measuring && t <= run.window_end) {
			samples_add(&run.lat, t - c->sent_at);
			run.commands++;
			if (cmd == 'y' && len > 0 && data[0] == '5')
				run.refused++;
			else if ((cmd == 'y' && len > 0 && data[0] == '4') || cmd == 't')
				run.tempfailed++;
			else if (cmd == 'c')
				run.passed++;
			else
				run.other++;
		}
		c->unknown_done++;
		if (cmd == 'y' && len >= 3 && memcmp(data, "421", 3) == 0)
			c->unknown_done = opt.k; /* the MTA closes the session after a 421 */
		return send_next(c);
	}
	if (cmd != 'c') {
		error(c, "connect or HELO not answered with continue");
		return -1;
	}
	return send_next(c);
}

static int on_readable(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0 && errno == ECONNRESET && c->step == ST_QUIT)
			n = 0;
		if (n <= 0) {
			if (n == 0 && c->step == ST_QUIT && c->rlen == 0)
				return 1; /* the milter closed after the quit: done */
			error(c, n == 0 ? "connection closed by the milter" : strerror(errno));
			return -1;
		}
		c->rlen += (size_t)n;
		size_t used = 0;
		while (c->rlen - used >= 5) {
			uint32_t plen = get32(c->rbuf + used);
			if (plen == 0 || plen > sizeof c->rbuf - 4) {
				error(c, "bad packet length");
				return -1;
			}
			if (c->rlen - used < 4 + plen)
				break;
			int rc = on_reply(c, (char)c->rbuf[used + 4], c->rbuf + used + 5, plen - 1);
			used += 4 + plen;
			if (rc < 0)
				return -1;
		}
		memmove(c->rbuf, c->rbuf + used, c->rlen - used);
		c->rlen -= used;
	}
}

static struct sockaddr_in target;

static int session_start(void)
{
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return -1;
	c->held_slot = -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		error(NULL, strerror(errno));
		free(c);
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	run.open++;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	if (connect(c->fd, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) {
		error(c, strerror(errno));
		session_end(c, false);
		return -1;
	}
	c->step = ST_CONNECTING;
	return 0;
}

static void on_event(struct conn *c, uint32_t events)
{
	int rc = 0;
	if (c->step == ST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			error(c, strerror(err));
			rc = -1;
		} else {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
			epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			rc = send_next(c);
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
	if (rc != 0) {
		if (rc < 0 && opt.hold && c->step != ST_QUIT && c->step != ST_HELD)
			run.held_failed++;
		session_end(c, rc > 0);
	}
}

/* Runs the event loop until done() is true or the deadline passes; -1 on timeout. */
static int loop_until(bool (*done)(void), uint64_t deadline, void (*tick)(uint64_t now))
{
	struct epoll_event events[256];
	while (!done()) {
		uint64_t t = now_ns();
		if (t > deadline)
			return -1;
		if (tick)
			tick(t);
		int n = epoll_wait(epfd, events, 256, 50);
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL)
				continue; /* standard input, see hold mode */
			on_event(events[i].data.ptr, events[i].events);
		}
	}
	return 0;
}

/* ---- run mode ------------------------------------------------------------ */

static bool run_done(void)
{
	return run.stopping && run.open == 0;
}

static void run_tick(uint64_t t)
{
	if (!run.measuring && !run.stopping && t >= run.window_start)
		run.measuring = true;
	if (!run.stopping && t >= run.window_end)
		run.stopping = true;
	while (!run.stopping && run.open < opt.conc)
		if (session_start() < 0)
			break;
}

static int run_mode(void)
{
	uint64_t start = now_ns();
	run.window_start = start + (uint64_t)(opt.warmup * 1e9);
	run.window_end = run.window_start + (uint64_t)(opt.seconds * 1e9);
	/* Sessions still open after the window get 30 s to finish. */
	int rc = loop_until(run_done, run.window_end + 30000000000u, run_tick);
	double secs = (double)(run.window_end - run.window_start) / 1e9;
	printf("result mode=run conc=%u k=%u seconds=%.3f sessions=%lu sessions_per_s=%.1f "
	       "commands=%lu p50_us=%.1f p99_us=%.1f refused=%lu tempfailed=%lu passed=%lu "
	       "other=%lu errors=%lu unfinished=%lu\n",
	       opt.conc, opt.k, secs, run.sessions, run.sessions / secs, run.commands,
	       samples_percentile_us(&run.lat, 50), samples_percentile_us(&run.lat, 99),
	       run.refused, run.tempfailed, run.passed, run.other, run.errors,
	       rc < 0 ? run.open : 0);
	return rc < 0 || run.errors > 0 ? 1 : 0;
}

/* ---- hold mode ----------------------------------------------------------- */

static bool all_settled(void)
{
	return run.held + run.held_failed >= opt.conc;
}

/* Keeps at most 64 sessions in their opening exchange: no burst on the listen queue. */
static unsigned long started;
static void hold_tick(uint64_t t)
{
	(void)t;
	while (started < opt.conc && started - run.held - run.held_failed < 64) {
		started++;
		if (session_start() < 0)
			run.held_failed++;
	}
}

static bool all_closed(void)
{
	return run.open == 0;
}

static int hold_mode(void)
{
	uint64_t t0 = now_ns();
	int rc = loop_until(all_settled, t0 + (uint64_t)(opt.settle * 1e9), hold_tick);
	printf("held=%lu failed=%lu opening=%lu seconds=%.3f\n", run.held, run.held_failed,
	       started - run.held - run.held_failed, (double)(now_ns() - t0) / 1e9);
	fflush(stdout);

	/* Wait for the driver's go (a line, or end of input). */
	char line[64];
	if (fgets(line, sizeof line, stdin) == NULL && ferror(stdin))
		return 1;

	/* Sessions still opening quit as soon as they are through. */
	run.releasing = true;
	unsigned long quitting = 0;
	for (size_t i = 0; i < nheld; i++) {
		struct conn *c = held_conns[i];
		if (c == NULL)
			continue; /* closed by the milter meanwhile: counted as an error */
		if (send_next(c) < 0) {
			error(c, "cannot send the quit");
			session_end(c, false);
			continue;
		}
		quitting++;
	}
	uint64_t t1 = now_ns();
	rc = loop_until(all_closed, t1 + 60000000000u, NULL);
	printf("closed=%lu errors=%lu unfinished=%lu seconds=%.3f\n", quitting, run.errors,
	       run.open, (double)(now_ns() - t1) / 1e9);
	return rc < 0 || run.errors > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *verbs = "EXPN,XFOO,TURN,XFOO";
	int ch;
	while ((ch = getopt(argc, argv, "p:h:c:k:v:a:d:w:HT:")) != -1) {
		switch (ch) {
		case 'p': opt.port = (int)parse_number(optarg, 'p'); break;
		case 'h': opt.host = optarg; break;
		case 'c': opt.conc = (unsigned)parse_number(optarg, 'c'); break;
		case 'k': opt.k = (unsigned)atoi(optarg); break;
		case 'v': verbs = optarg; break;
		case 'a': opt.client_addr = optarg; break;
		case 'd': opt.seconds = parse_number(optarg, 'd'); break;
		case 'w': opt.warmup = atof(optarg); break;
		case 'H': opt.hold = true; break;
		case 'T': opt.settle = parse_number(optarg, 'T'); break;
		default: usage();
		}
	}
	if (opt.port <= 0 || optind != argc)
		usage();
	static char verb_buf[256];
	snprintf(verb_buf, sizeof verb_buf, "%s", verbs);
	for (char *v = strtok(verb_buf, ","); v && opt.nverbs < MAX_VERBS; v = strtok(NULL, ","))
		opt.verbs[opt.nverbs++] = v;
	struct in_addr probe;
	if (opt.nverbs == 0 || inet_pton(AF_INET, opt.client_addr, &probe) != 1)
		usage();

	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &target.sin_addr) != 1)
		usage();
	if (raise_nofile(opt.conc + 64) != 0) {
		perror("milter-load: RLIMIT_NOFILE");
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	held_conns = calloc(opt.conc, sizeof *held_conns);
	if (epfd < 0 || held_conns == NULL)
		return 1;
	return opt.hold ? hold_mode() : run_mode();
}
