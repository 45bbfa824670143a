/*
 * mta: what the MTA at the other end does with the milter's reply to an
 * unknown command, learned from macro v at connect ("Postfix 3.10.13").
 * Postfix 3.10 and newer send their own "500 5.5.2 Error: command not
 * recognized" in place of any 5xx reply (MTA-FACTS §9); Postfix 3.7 and
 * Sendmail send the milter's.  Pure code.
 */
#ifndef CMDGATE_MTA_H
#define CMDGATE_MTA_H

#define MTA_POSTFIX_UNKNOWN_REPLY "500 5.5.2 Error: command not recognized"

struct mta {
	const char *unknown_5xx_reply; /* NULL: the milter's own 5xx goes through */
};

/* From macro v; NULL or a value not of the form "Postfix X.Y..." says nothing. */
void mta_identify(struct mta *m, const char *v);

/*
 * The reply the client reads in place of the milter's reply CODE to an
 * unknown command, or NULL when it reads the milter's own.
 */
const char *mta_unknown_reply(const struct mta *m, int code);

#endif
