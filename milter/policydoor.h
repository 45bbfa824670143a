/*
 * policydoor: the Postfix policy-delegation door.  Postfix never shows
 * VRFY (or ETRN) to a milter; it asks a policy server instead
 * (check_policy_service, protocol_state=VRFY).  This door turns such a
 * request into a question for the policy core and the verdict into an
 * action= line.  Every other request gets DUNNO, so the door can sit in
 * smtpd_recipient_restrictions without touching mail.
 */
#ifndef CMDGATE_POLICYDOOR_H
#define CMDGATE_POLICYDOOR_H

#include "doorserver.h"
#include "policyproto.h"

extern const struct door_protocol policy_door;

/* The answer to one parsed request, "action=...\n\n", into out. */
int policy_door_answer(const struct policy_request *r, struct outbuf *out);

#endif
