/* The interface of salnet's C kernels: the one declaration of every function Python calls.
 *
 * metrics.c and resize.c include this file, so the C compiler checks each definition against it (a parameter
 * or return type that differs is "conflicting types for 'salnet_...'", a build error). salnet/native.py hands
 * the same text to cffi, which generates the Python bindings from it and checks every call's arguments (count,
 * integer range, pointer type) against it. Lines starting with '#' are for the C compiler only; cffi skips
 * them. Arrays are row-major and contiguous; each definition's comment says what it computes. */
#ifndef SALNET_KERNELS_H
#define SALNET_KERNELS_H
#include <stdint.h>

/* metrics.c: the metrics' per-pixel passes over rows (images) of n pixels */
void salnet_row_stats_f64(const double *x, int64_t rows, int64_t n, double *lo, double *hi, double *sum,
                          double *sumsq);
void salnet_pair_stats_f64(const double *x, const double *y, int64_t rows, int64_t n, int64_t stride, double *out);
void salnet_affine_l1_f64(const double *x, const double *y, int64_t rows, int64_t n, const double *a,
                          const double *b, const double *c, double *out);
int64_t salnet_kld_f64(const double *x, const double *y, int64_t rows, int64_t n, const double *kp,
                       const double *kg, double eps, double *out);
void salnet_threshold_counts_f64(const double *S, int64_t rows, int64_t n, const int64_t *idx, int64_t splits,
                                 int64_t width, const int64_t *use, const double *lo, const double *spread,
                                 const double *T, int64_t nt, int64_t *counts);
int64_t salnet_nonzero_f64(const uint64_t *x, int64_t n, int64_t *out, int64_t capacity);
int32_t salnet_judd_pass_f64(const double *S, int64_t rows, int64_t n, const double *lo, const double *scale,
                             const double *shift, int32_t subtract, const uint8_t *marked, int64_t nbins,
                             int64_t kmax, int64_t *hist, int64_t *close, int64_t *nclose);

/* resize.c: the data loader's INTER_AREA shrink of an (H, W, C) image to float32 (C, h, w) */
int32_t salnet_area_shrink_u8(const uint8_t *in, int64_t H, int64_t W, int64_t C, int64_t bih, int64_t boh,
                              int64_t th, const int32_t *fh, const int32_t *kh, int64_t biw, int64_t bow, int64_t tw,
                              const int32_t *fw, const int32_t *kw, float scale, int32_t flip, float *out);
int32_t salnet_area_shrink_u16(const uint16_t *in, int64_t H, int64_t W, int64_t C, int64_t bih, int64_t boh,
                               int64_t th, const int32_t *fh, const int32_t *kh, int64_t biw, int64_t bow, int64_t tw,
                               const int32_t *fw, const int32_t *kw, float scale, int32_t flip, float *out);

#endif
