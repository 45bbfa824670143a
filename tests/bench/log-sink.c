/*
 * log-sink: a datagram socket that takes syslog messages and throws them
 * away.  The driver bind-mounts it over /dev/log in a private mount
 * namespace of one milter, so that milter's syslog() costs its own
 * sendto() but no work in rsyslogd: the difference to the run with
 * rsyslogd is what writing the audit trail costs the machine.
 *
 * usage: log-sink PATH   (prints "messages=N bytes=N" on SIGTERM)
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (argc != 2 || strlen(argv[1]) >= sizeof sun.sun_path) {
		fprintf(stderr, "usage: log-sink PATH\n");
		return 64;
	}
	strcpy(sun.sun_path, argv[1]);
	unlink(argv[1]);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int big = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		perror("log-sink");
		return 71;
	}
	struct sigaction sa = { .sa_handler = on_term }; /* no SA_RESTART: recv returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	unsigned long messages = 0, bytes = 0;
	char buf[8192];
	while (!stop) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n > 0) {
			messages++;
			bytes += (unsigned long)n;
		}
	}
	unlink(argv[1]);
	printf("messages=%lu bytes=%lu\n", messages, bytes);
	return 0;
}
