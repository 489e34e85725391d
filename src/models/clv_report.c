/*
 * clv_report.c -- `patron clv validate --html`: the calibration/holdout result as one
 * self-contained HTML page (inline SVG, no script, nothing fetched), see clv_report.h.
 */
#include "models/clv_report.h"

#include "base/err.h"
#include "base/time.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { W = 720, H = 340, ML = 64, MR = 16, MT = 16, MB = 44 };

/* A "nice" step (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to hi. */
static double nice_step(double hi, int ticks)
{
    if (!(hi > 0))
        return 1;
    double raw = hi / ticks, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

typedef struct frame {
    double x0, x1, y1; /* data ranges (y from 0) */
} frame;

static double px(const frame *f, double x)
{
    return ML + (x - f->x0) / (f->x1 > f->x0 ? f->x1 - f->x0 : 1) * (W - ML - MR);
}

static double py(const frame *f, double y)
{
    return H - MB - y / (f->y1 > 0 ? f->y1 : 1) * (H - MT - MB);
}

static void axes(FILE *o, const frame *f, const char *xlabel, const char *ylabel, double xstep)
{
    fprintf(o, "<g class=\"axis\">\n");
    double ys = nice_step(f->y1, 5);
    for (double y = 0; y <= f->y1 * (1 + 1e-9); y += ys)
        fprintf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                ML, W - MR, py(f, y), py(f, y), ML - 6, py(f, y) + 4, y);
    for (double x = f->x0; x <= f->x1 * (1 + 1e-9); x += xstep)
        fprintf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px(f, x),
                H - MB + 16, x);
    fprintf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>"
               "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n",
            ML, W - MR, H - MB, H - MB, ML, ML, MT, H - MB);
    fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", (ML + W - MR) / 2,
            H - 8, xlabel);
    fprintf(o, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            (MT + H - MB) / 2, ylabel);
    fprintf(o, "</g>\n");
}

static void legend(FILE *o)
{
    fprintf(o, "<g class=\"legend\"><line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" class=\"actual\"/>"
               "<text x=\"%d\" y=\"%d\">actual</text>"
               "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" class=\"expected\"/>"
               "<text x=\"%d\" y=\"%d\">BG/NBD expected</text></g>\n",
            ML + 12, ML + 40, MT + 10, MT + 10, ML + 46, MT + 14, ML + 12, ML + 40, MT + 30,
            MT + 30, ML + 46, MT + 34);
}

static void polyline(FILE *o, const frame *f, const double *xs, const double *ys, size_t n,
                     const char *cls)
{
    fprintf(o, "<polyline class=\"%s\" points=\"", cls);
    for (size_t i = 0; i < n; i++)
        fprintf(o, "%s%.1f,%.1f", i ? " " : "", px(f, xs[i]), py(f, ys[i]));
    fprintf(o, "\"/>\n");
}

int clv_validation_html(const clv_validation *v, int64_t split, const char *unit,
                        const char *path, patron_error *err)
{
    FILE *o = fopen(path, "w");
    if (!o)
        return err_set(err, PATRON_EIO, "%s: %s", path, strerror(errno));
    const bgnbd_params *p = &v->model.bg;
    char s0[TIME_FMT_LEN], s1[TIME_FMT_LEN];
    time_format(v->start, s0);
    time_format(split, s1);
    fprintf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<title>Patron: CLV calibration / holdout</title>\n<style>\n"
               "body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:760px;color:#222}\n"
               "svg{background:#fff;border:1px solid #ddd}\n"
               "svg text{font-size:11px;fill:#444}\n"
               ".axis line{stroke:#888}.axis line.grid{stroke:#eee}\n"
               "polyline{fill:none;stroke-width:2}\n"
               ".actual{stroke:#1f5fa8;stroke-width:2}.expected{stroke:#d2691e;stroke-width:2;"
               "stroke-dasharray:6 4}\n.split{stroke:#999;stroke-dasharray:2 3}\n"
               "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;"
               "border-bottom:1px solid #eee}\n</style></head><body>\n");
    fprintf(o, "<h1>CLV: calibration / holdout</h1>\n<p>BG/NBD fitted on %zu customers whose "
               "first purchase is before the split (%s), unit %s: r = %.6f, &alpha; = %.6f, "
               "a = %.6f, b = %.6f, log-likelihood %.4f.</p>\n",
            v->model.n, s1, unit, p->r, p->alpha, p->a, p->b, v->model.ll);
    fprintf(o, "<p>Holdout of %.4f %ss: repeat purchases actual %.0f, expected %.2f; mean "
               "absolute error per customer %.4f.</p>\n",
            v->holdout, unit, v->actual_total, v->expected_total, v->mae);

    /* Tracking curve. */
    fprintf(o, "<h2>Cumulative repeat purchases</h2>\n<p>By %s since %s; the dotted line is "
               "the split.</p>\n<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "role=\"img\" aria-label=\"tracking curve\">\n",
            unit, s0, W, H, W, H);
    double ymax = 0;
    for (size_t i = 0; i < v->periods; i++) {
        ymax = fmax(ymax, v->cum_actual[i]);
        ymax = fmax(ymax, v->cum_expected[i]);
    }
    double ystep = nice_step(ymax, 5);
    frame f = {0, (double)v->periods, ceil(ymax / ystep) * ystep};
    double xstep = nice_step(f.x1, 8);
    axes(o, &f, unit, "cumulative repeat purchases", xstep);
    double us = (double)(strcmp(unit, "week") == 0 ? 7 * TIME_DAY : TIME_DAY);
    double xs = (double)(split - v->start) / us;
    if (xs > 0 && xs < f.x1)
        fprintf(o, "<line class=\"split\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>\n",
                px(&f, xs), px(&f, xs), MT, H - MB);
    /* period i at x = i, from (0, 0) */
    fprintf(o, "<polyline class=\"actual\" points=\"%.1f,%.1f", px(&f, 0), py(&f, 0));
    for (size_t i = 0; i < v->periods; i++)
        fprintf(o, " %.1f,%.1f", px(&f, (double)(i + 1)), py(&f, v->cum_actual[i]));
    fprintf(o, "\"/>\n<polyline class=\"expected\" points=\"%.1f,%.1f", px(&f, 0), py(&f, 0));
    for (size_t i = 0; i < v->periods; i++)
        fprintf(o, " %.1f,%.1f", px(&f, (double)(i + 1)), py(&f, v->cum_expected[i]));
    fprintf(o, "\"/>\n");
    legend(o);
    fprintf(o, "</svg>\n");

    /* Conditional expectations by calibration frequency. */
    fprintf(o, "<h2>Holdout purchases by calibration frequency</h2>\n<p>Mean repeat "
               "purchases per customer in the holdout, grouped by repeat purchases in the "
               "calibration period.</p>\n<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "role=\"img\" aria-label=\"conditional expectations\">\n",
            W, H, W, H);
    double bx[CLV_VALIDATE_BINS], ba[CLV_VALIDATE_BINS], be[CLV_VALIDATE_BINS];
    size_t nb = 0;
    ymax = 0;
    for (int b = 0; b < CLV_VALIDATE_BINS; b++) {
        if (!v->bin_n[b])
            continue;
        bx[nb] = b, ba[nb] = v->bin_actual[b], be[nb] = v->bin_expected[b];
        ymax = fmax(ymax, fmax(ba[nb], be[nb]));
        nb++;
    }
    ystep = nice_step(ymax, 5);
    frame g = {0, CLV_VALIDATE_BINS - 1, ceil(ymax / ystep) * ystep};
    axes(o, &g, "repeat purchases in calibration (7 = 7+)", "mean holdout purchases", 1);
    polyline(o, &g, bx, ba, nb, "actual");
    polyline(o, &g, bx, be, nb, "expected");
    legend(o);
    fprintf(o, "</svg>\n<table><tr><th>x</th><th>customers</th><th>actual</th>"
               "<th>expected</th></tr>\n");
    for (int b = 0; b < CLV_VALIDATE_BINS; b++)
        fprintf(o, "<tr><td>%d%s</td><td>%zu</td><td>%.4f</td><td>%.4f</td></tr>\n", b,
                b == CLV_VALIDATE_BINS - 1 ? "+" : "", v->bin_n[b], v->bin_actual[b],
                v->bin_expected[b]);
    fprintf(o, "</table>\n</body></html>\n");
    if (ferror(o) | fclose(o))
        return err_set(err, PATRON_EIO, "%s: write failed", path);
    return PATRON_OK;
}
