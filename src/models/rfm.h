/*
 * rfm.h -- RFM scores and segments exactly as SPEC §4.1.
 *
 * Over the eligible members (at least one order at now and profiling consent; the caller
 * says which through a mask), each of recency (smaller is better), frequency and
 * monetary (larger is better) gets the score 1 + floor(5 * w / n), capped at 5, where w
 * is the number of eligible members strictly worse and n the number eligible: equal
 * values always get equal scores.  The segment comes from the R and F scores through
 * the grid of SPEC §4.1.  A pure function of its arrays, O(n) after an O(n) radix sort.
 */
#ifndef PATRON_MODELS_RFM_H
#define PATRON_MODELS_RFM_H

#include <stddef.h>
#include <stdint.h>

/* Segment names, in index order (X(index, name)). */
#define RFM_SEGMENTS(X)                                                                            \
    X(0, "Champions")                                                                              \
    X(1, "Loyal Customers")                                                                        \
    X(2, "Potential Loyalists")                                                                    \
    X(3, "New Customers")                                                                          \
    X(4, "Promising")                                                                              \
    X(5, "Need Attention")                                                                         \
    X(6, "About to Sleep")                                                                         \
    X(7, "At Risk")                                                                                \
    X(8, "Can't Lose")                                                                             \
    X(9, "Hibernating")
enum { RFM_NSEGMENTS = 10 };

/* Name of segment index 0..9 (NULL out of range). */
const char *rfm_segment_name(int idx);
/* Segment index 0..9 of an (R, F) pair of scores 1..5. */
int rfm_segment_of(int r, int f);

/* Scores every i with eligible[i] != 0 (eligible NULL = all; NaN values make a member
 * ineligible): r, f, m in 1..5, score = 100 r + 10 f + m, segment = 1 + index.  Members
 * not eligible get 0 everywhere.  Output arrays are caller-allocated with n slots.
 * Returns 0, or -1 when out of memory (outputs then undefined). */
int rfm_compute(const double *recency, const double *frequency, const double *monetary,
                const uint8_t *eligible, size_t n, uint8_t *r, uint8_t *f, uint8_t *m,
                int16_t *score, uint8_t *segment);

#endif
