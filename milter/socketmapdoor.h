/*
 * socketmapdoor: the Sendmail door.  Sendmail never shows VRFY or EXPN to a
 * milter, but its check_vrfy and check_expn rulesets can look the command
 * up in a socketmap (conf/sendmail-cmdgate.mc).  This door turns such a
 * lookup into a question for the policy core: a refusal answers
 * OK "<code> <status> <text>", a command let through NOTFOUND.
 */
#ifndef CMDGATE_SOCKETMAPDOOR_H
#define CMDGATE_SOCKETMAPDOOR_H

#include "doorserver.h"
#include "socketmapproto.h"

extern const struct door_protocol socketmap_door;

/* The answer to one query (a netstring) into out; -1 on ENOMEM. */
int socketmap_door_answer(const struct socketmap_query *q, struct outbuf *out);

#endif
