/*
 * trace.h -- step timings for finding where a long operation spends its time.
 *
 * With PATRON_TRACE set in the environment, trace_step("what", t0) prints
 * "trace: what  N.NNN s" (the seconds since t0, a trace_now() reading) on stderr;
 * without it nothing is printed and trace_now() is one cached test.  Safe from any
 * thread (each line is one fprintf).
 */
#ifndef PATRON_BASE_TRACE_H
#define PATRON_BASE_TRACE_H

int trace_on(void);
/* Monotonic seconds (0 when tracing is off). */
double trace_now(void);
/* Prints the seconds since t0 under the name step; returns trace_now(). */
double trace_step(const char *step, double t0);
/* Prints secs under the name what (a sum the caller kept). */
void trace_secs(const char *what, double secs);

#endif
