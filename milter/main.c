/*
 * milter-cmdgate: refuses VRFY, EXPN, TURN and other probing commands by
 * policy and keeps an audit trail.  main() reads like the start-up
 * sequence: options, policy, socket, privileges, callbacks, run.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <syslog.h>
#include <unistd.h>

#include "callbacks.h"
#include "capacity.h"
#include "config.h"
#include "doorserver.h"
#include "explain.h"
#include "log.h"
#include "policydoor.h"
#include "socketmapdoor.h"
#include "running.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/milter-cmdgate.conf"

struct options {
	const char *config;
	const char *socket;   /* -p, overrides the policy file */
	const char *user;     /* -u USER[:GROUP] */
	const char *pidfile;
	bool foreground;
	bool check_only;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: milter-cmdgate [-f] [-n] [-c FILE] [-p SOCKET] [-u USER[:GROUP]] [-P PIDFILE]\n"
		"       milter-cmdgate -V\n"
		"       milter-cmdgate explain CODE...\n"
		"  -c FILE    policy file (default %s)\n"
		"  -p SOCKET  milter socket: unix:/path, local:/path, inet:port@host, inet6:port@[addr]\n"
		"  -f         stay in the foreground\n"
		"  -n         check the policy file and exit (0 fine, 78 broken)\n"
		"  -u USER[:GROUP]  open the socket as root, then run as USER\n"
		"  -P PIDFILE write the daemon's process id to PIDFILE\n"
		"  -V         print the version and exit\n"
		"  explain CODE...  what SMTP reply codes (550) or enhanced status codes (5.5.1) mean\n",
		DEFAULT_CONFIG);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .config = DEFAULT_CONFIG };
	int c;
	while ((c = getopt(argc, argv, "c:p:u:P:fnVh")) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 'p': o->socket = optarg; break;
		case 'u': o->user = optarg; break;
		case 'P': o->pidfile = optarg; break;
		case 'f': o->foreground = true; break;
		case 'n': o->check_only = true; break;
		case 'V':
			printf("milter-cmdgate %s\n", PACKAGE_VERSION);
			exit(EX_OK);
		case 'h':
			usage(stdout);
			exit(EX_OK);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "milter-cmdgate: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	return 0;
}

/* The file system path of a unix-domain socket spec, or NULL for inet. */
static const char *socket_path(const char *spec)
{
	if (strncmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "local:", 6) == 0)
		return spec + 6;
	if (spec[0] == '/')
		return spec;
	return NULL;
}

struct identity {
	uid_t uid;
	gid_t gid;
	const char *name;
};

static int lookup_user(const char *spec, struct identity *id)
{
	static char name[256];
	snprintf(name, sizeof name, "%s", spec);
	char *group = strchr(name, ':');
	if (group != NULL)
		*group++ = '\0';
	struct passwd *pw = getpwnam(name);
	if (pw == NULL) {
		fprintf(stderr, "milter-cmdgate: -u %s: no such user\n", spec);
		return -1;
	}
	id->uid = pw->pw_uid;
	id->gid = pw->pw_gid;
	id->name = name;
	if (group != NULL) {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			fprintf(stderr, "milter-cmdgate: -u %s: no such group\n", spec);
			return -1;
		}
		id->gid = gr->gr_gid;
	}
	return 0;
}

/*
 * True when a process accepts connections on the unix socket at path.
 * libmilter removes whatever socket is there before it binds: that is
 * right for one a crashed daemon left, wrong for one still in use.
 */
static bool socket_in_use(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path)
		return false;
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	close(fd);
	return live;
}

static int open_socket(const char *spec, unsigned mode, const struct identity *owner)
{
	if (smfi_setconn((char *)spec) != MI_SUCCESS) {
		fprintf(stderr, "milter-cmdgate: bad socket specification \"%s\"\n", spec);
		return -1;
	}
	const char *path = socket_path(spec);
	if (path != NULL && socket_in_use(path)) {
		fprintf(stderr, "milter-cmdgate: cannot open socket %s: another process is listening on it\n",
			spec);
		return -1;
	}
	/* The socket is born with the tight mode, never wider for a moment. */
	mode_t old = umask(0777 & ~mode);
	int rc = smfi_opensocket(true); /* true: remove a stale unix socket first */
	umask(old);
	if (rc != MI_SUCCESS) {
		fprintf(stderr, "milter-cmdgate: cannot open socket %s (in use, or its directory missing or not writable?)\n",
			spec);
		return -1;
	}
	if (path == NULL)
		return 0;
	if (chmod(path, mode) != 0 ||
	    (owner != NULL && chown(path, owner->uid, owner->gid) != 0)) {
		fprintf(stderr, "milter-cmdgate: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int drop_privileges(const struct identity *id)
{
	if (initgroups(id->name, id->gid) != 0 || setgid(id->gid) != 0 || setuid(id->uid) != 0) {
		fprintf(stderr, "milter-cmdgate: cannot become %s: %s\n", id->name, strerror(errno));
		return -1;
	}
	if (id->uid != 0 && setuid(0) == 0) {
		fprintf(stderr, "milter-cmdgate: could regain root after dropping privileges\n");
		return -1;
	}
	return 0;
}

static int daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(EX_OK);
	if (setsid() < 0 || chdir("/") != 0)
		return -1;
	int null = open("/dev/null", O_RDWR);
	if (null < 0)
		return -1;
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
	return 0;
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%ld\n", (long)getpid());
	return fclose(f);
}

static void log_start(int argc, char **argv)
{
	char args[1024] = "";
	size_t n = 0;
	for (int i = 1; i < argc && n < sizeof args; i++)
		n += (size_t)snprintf(args + n, sizeof args - n, "%s%s", i > 1 ? " " : "", argv[i]);
	log_msg(LOG_INFO, "milter-cmdgate %s starting (arguments: %s)", PACKAGE_VERSION, args);
}

/* A start-up failure after the policy was loaded: free what was allocated,
 * so that leak checkers (make check under ASan) see the exit status. */
static int give_up(struct policy *policy, char *spec, int status)
{
	free(spec);
	policy_free(policy);
	return status;
}

int main(int argc, char **argv)
{
	/* A subcommand for the administrator, not the daemon: see explain.c. */
	if (argc >= 2 && strcmp(argv[1], "explain") == 0)
		return explain_main(argc - 2, argv + 2, stdout, stderr);

	struct options opt;
	if (parse_options(argc, argv, &opt) < 0)
		return EX_USAGE;

	struct config_error err;
	struct policy *policy = config_load(opt.config, &err);
	if (policy == NULL) {
		char text[1024];
		config_error_format(&err, text, sizeof text);
		fprintf(stderr, "%s\n", text);
		return EX_CONFIG;
	}
	if (opt.check_only) {
		printf("%s: configuration OK\n", opt.config);
		policy_free(policy);
		return EX_OK;
	}

	struct identity id;
	if (opt.user != NULL && lookup_user(opt.user, &id) < 0)
		return give_up(policy, NULL, EX_USAGE);
	/* A reload frees the first policy: the socket's name must outlive it. */
	char *spec = strdup(opt.socket ? opt.socket : policy->socket);
	if (spec == NULL) {
		fprintf(stderr, "milter-cmdgate: out of memory\n");
		return give_up(policy, NULL, EX_OSERR);
	}
	if (callbacks_register() < 0) {
		fprintf(stderr, "milter-cmdgate: smfi_register failed\n");
		return give_up(policy, spec, EX_SOFTWARE);
	}
	if (open_socket(spec, policy->socket_mode, opt.user ? &id : NULL) < 0)
		return give_up(policy, spec, EX_OSERR);
	uid_t uid = opt.user ? id.uid : (uid_t)-1;
	gid_t gid = opt.user ? id.gid : (gid_t)-1;
	if ((policy->policy_socket != NULL &&
	     doorserver_listen(policy->policy_socket, &policy_door, policy->socket_mode, uid, gid) < 0) ||
	    (policy->socketmap_socket != NULL &&
	     doorserver_listen(policy->socketmap_socket, &socketmap_door, policy->socket_mode, uid, gid) < 0))
		return give_up(policy, spec, EX_OSERR);
	if (!opt.foreground && daemonize() < 0) {
		fprintf(stderr, "milter-cmdgate: cannot become a daemon: %s\n", strerror(errno));
		return give_up(policy, spec, EX_OSERR);
	}
	if (opt.pidfile != NULL && write_pidfile(opt.pidfile) < 0) {
		fprintf(stderr, "milter-cmdgate: %s: %s\n", opt.pidfile, strerror(errno));
		return give_up(policy, spec, EX_CANTCREAT);
	}
	if (opt.user != NULL && drop_privileges(&id) < 0)
		return give_up(policy, spec, EX_OSERR);

	log_open(policy->syslog_facility, opt.foreground && isatty(STDERR_FILENO));
	log_start(argc, argv);
	capacity_init();
	running_install(policy);
	if (running_start_reload_thread() < 0) {
		log_msg(LOG_ERR, "cannot start the reload thread");
		running_clear();
		free(spec);
		return EX_OSERR;
	}
	if (doorserver_start() < 0) {
		log_msg(LOG_ERR, "cannot start the door server thread");
		running_clear();
		free(spec);
		return EX_OSERR;
	}
	log_msg(LOG_INFO, "listening on %s with policy %s", spec, opt.config);
	if (policy->policy_socket != NULL)
		log_msg(LOG_INFO, "policy door listening on %s", policy->policy_socket);
	if (policy->socketmap_socket != NULL)
		log_msg(LOG_INFO, "socketmap door listening on %s", policy->socketmap_socket);

	int rc = smfi_main();
	const char *path = socket_path(spec);
	if (path != NULL)
		unlink(path);
	if (opt.pidfile != NULL)
		unlink(opt.pidfile);
	free(spec);
	running_clear();
	log_msg(rc == MI_SUCCESS ? LOG_INFO : LOG_ERR, "milter-cmdgate exiting with status %d",
		rc == MI_SUCCESS ? EX_OK : EX_SOFTWARE);
	log_close();
	return rc == MI_SUCCESS ? EX_OK : EX_SOFTWARE;
}
