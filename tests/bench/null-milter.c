/*
 * null-milter: the baseline the milter door is measured against.  The
 * same libmilter, the same registered callbacks and the same negotiation
 * as milter/callbacks.c (steps skipped, connect-stage macro list), but
 * every callback returns at once (CONTINUE; no reply to HELO, as the
 * daemon negotiates): what is left is the cost of libmilter, its worker
 * threads and the protocol itself.
 *
 * usage: null-milter -p inet:PORT@127.0.0.1
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Keep equal to CONNECT_MACROS in milter/callbacks.c (the banner adds none: "$j ESMTP $v"). */
#define CONNECT_MACROS "j v _ {client_addr} {client_name} {daemon_name}"

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			     unsigned long f2, unsigned long f3, unsigned long *pf0,
			     unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	(void)f0;
	(void)f2;
	(void)f3;
	unsigned long skip = SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS |
			     SMFIP_NOEOH | SMFIP_NODATA;
	*pf0 = 0;
	*pf1 = (skip | SMFIP_NR_HELO) & f1;
	*pf2 = 0;
	*pf3 = 0;
	smfi_setsymlist(ctx, SMFIM_CONNECT, CONNECT_MACROS);
	return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	(void)ctx;
	(void)hostname;
	(void)hostaddr;
	return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *name)
{
	(void)ctx;
	(void)name;
	return SMFIS_NOREPLY; /* as callbacks.c: SMFIP_NR_HELO */
}

static sfsistat on_unknown(SMFICTX *ctx, const char *line)
{
	(void)ctx;
	(void)line;
	return SMFIS_CONTINUE;
}

static sfsistat on_other(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
	.xxfi_name = "null-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,
	.xxfi_connect = on_connect,
	.xxfi_helo = on_helo,
	.xxfi_close = on_other,
	.xxfi_eom = on_other,
	.xxfi_abort = on_other,
	.xxfi_unknown = on_unknown,
	.xxfi_negotiate = on_negotiate,
};

int main(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "-p") != 0) {
		fprintf(stderr, "usage: null-milter -p inet:PORT@127.0.0.1\n");
		return 64;
	}
	if (smfi_register(filter) != MI_SUCCESS || smfi_setconn(argv[2]) != MI_SUCCESS ||
	    smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, "null-milter: cannot listen on %s\n", argv[2]);
		return 71;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 70;
}
