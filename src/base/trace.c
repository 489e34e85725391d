/*
 * trace.c -- step timings on stderr when PATRON_TRACE is set (trace.h).
 */
#include "base/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int trace_on(void)
{
    static int on = -1; /* a benign race: every thread computes the same value */
    if (on < 0)
        on = getenv("PATRON_TRACE") != NULL;
    return on;
}

double trace_now(void)
{
    if (!trace_on())
        return 0;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The process's resident size in MiB (0 when unknown): what a step leaves behind. */
static long rss_mib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident / 256; /* 4 KiB pages */
}

void trace_secs(const char *what, double secs)
{
    if (trace_on())
        fprintf(stderr, "trace: %-28s %8.3f s  rss %5ld MiB\n", what, secs, rss_mib());
}

double trace_step(const char *step, double t0)
{
    if (!trace_on())
        return 0;
    double now = trace_now();
    trace_secs(step, now - t0);
    return now;
}
