/*
 * callbacks: the milter door.  Thin libmilter adapters: each collects the
 * event's facts, asks the policy core, applies the verdict, writes the
 * audit line.
 */
#ifndef CMDGATE_CALLBACKS_H
#define CMDGATE_CALLBACKS_H

/* Registers the callbacks with libmilter; 0 or -1. */
int callbacks_register(void);

#endif
