/*
 * clv_report.h -- the calibration/holdout validation of `patron clv validate` as a
 * self-contained HTML page: parameters, the cumulative tracking curve (actual against
 * BG/NBD expected, the split marked) and the conditional expectations by calibration
 * frequency, as inline SVG charts with their table.  Nothing is fetched when it is opened.
 */
#ifndef PATRON_MODELS_CLV_REPORT_H
#define PATRON_MODELS_CLV_REPORT_H

#include "models/clv.h"

/* Writes the page to path; unit is "day" or "week". 0 or a patron status. */
int clv_validation_html(const clv_validation *v, int64_t split, const char *unit,
                        const char *path, patron_error *err);

#endif
