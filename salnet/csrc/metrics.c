/* salnet's optional C kernels for the metrics (salnet.metrics): the CPU hot loops that torch's operators can
 * only do in several passes. Compiled on first use by salnet/native.py (system C compiler, -O3 -march=native)
 * with resize.c into one extension module, called through the cffi bindings of kernels.h on contiguous CPU
 * tensors; each kernel takes a range of rows (images) per call, so Python can run ranges in threads (the
 * bindings release the GIL). Every kernel has a torch fallback it is tested against (tests/test_native.py). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h" /* the declarations Python binds to: the compiler checks these definitions against them */

#define LANES 8      /* independent accumulators: vectorisable, and a shorter rounding chain */
#define CHUNK 512    /* elements gathered or binned in one loop before the loop that uses them */
#define FLUSH 1024   /* partial sums are flushed into the row total every FLUSH elements (blocked summation) */

/* Per row of x (rows, n): min, max, sum and sum of squares in one pass. A NaN anywhere makes all four
 * NaN (as torch's amin/amax/sum do); +-inf as in torch. */
void salnet_row_stats_f64(const double *x, int64_t rows, int64_t n, double *lo, double *hi, double *sum,
                          double *sumsq) {
    for (int64_t b = 0; b < rows; b++) {
        const double *r = x + b * n;
        double mn[LANES], mx[LANES], s[LANES], q[LANES], total = 0, squares = 0;
        for (int k = 0; k < LANES; k++) {
            mn[k] = INFINITY;
            mx[k] = -INFINITY;
            s[k] = 0;
            q[k] = 0;
        }
        int64_t i = 0;
        while (i + LANES <= n) {
            int64_t stop = i + FLUSH < n ? i + FLUSH : n;
            for (; i + LANES <= stop; i += LANES) {
                for (int k = 0; k < LANES; k++) {
                    double v = r[i + k];
                    mn[k] = v < mn[k] ? v : mn[k];
                    mx[k] = v > mx[k] ? v : mx[k];
                    s[k] += v;
                    q[k] += v * v;
                }
            }
            for (int k = 0; k < LANES; k++) {
                total += s[k];
                squares += q[k];
                s[k] = 0;
                q[k] = 0;
            }
        }
        for (; i < n; i++) {
            double v = r[i];
            mn[0] = v < mn[0] ? v : mn[0];
            mx[0] = v > mx[0] ? v : mx[0];
            total += v;
            squares += v * v;
        }
        double a = mn[0], z = mx[0];
        for (int k = 1; k < LANES; k++) {
            a = mn[k] < a ? mn[k] : a;
            z = mx[k] > z ? mx[k] : z;
        }
        if (isnan(total)) a = z = total;  /* comparisons skip NaN; the sum does not */
        lo[b] = a;
        hi[b] = z;
        sum[b] = total;
        sumsq[b] = isnan(total) ? total : squares;
    }
}

/* Per row of x and y (rows, n): min, max, sum and sum of squares of each, and their dot product, in one
 * pass over both: out[k * stride + row], k = 0..8: x's four, y's four, dot. NaN as in salnet_row_stats_f64 (the dot is
 * NaN where either row holds one). CC and the statistics SIM and KLD share need both maps of an image. */
void salnet_pair_stats_f64(const double *x, const double *y, int64_t rows, int64_t n, int64_t stride, double *out) {
    for (int64_t b = 0; b < rows; b++) {
        const double *r = x + b * n, *t = y + b * n;
        double mn[LANES], mx[LANES], s[LANES], q[LANES], mn2[LANES], mx2[LANES], s2[LANES], q2[LANES], d[LANES];
        double acc[5] = {0, 0, 0, 0, 0};  /* x sum, x squares, y sum, y squares, dot */
        for (int k = 0; k < LANES; k++) {
            mn[k] = mn2[k] = INFINITY;
            mx[k] = mx2[k] = -INFINITY;
            s[k] = q[k] = s2[k] = q2[k] = d[k] = 0;
        }
        int64_t i = 0;
        while (i + LANES <= n) {
            int64_t stop = i + FLUSH < n ? i + FLUSH : n;
            for (; i + LANES <= stop; i += LANES) {
                for (int k = 0; k < LANES; k++) {
                    double u = r[i + k], v = t[i + k];
                    mn[k] = u < mn[k] ? u : mn[k];
                    mx[k] = u > mx[k] ? u : mx[k];
                    s[k] += u;
                    q[k] += u * u;
                    mn2[k] = v < mn2[k] ? v : mn2[k];
                    mx2[k] = v > mx2[k] ? v : mx2[k];
                    s2[k] += v;
                    q2[k] += v * v;
                    d[k] += u * v;
                }
            }
            for (int k = 0; k < LANES; k++) {
                acc[0] += s[k];
                acc[1] += q[k];
                acc[2] += s2[k];
                acc[3] += q2[k];
                acc[4] += d[k];
                s[k] = q[k] = s2[k] = q2[k] = d[k] = 0;
            }
        }
        for (; i < n; i++) {
            double u = r[i], v = t[i];
            mn[0] = u < mn[0] ? u : mn[0];
            mx[0] = u > mx[0] ? u : mx[0];
            mn2[0] = v < mn2[0] ? v : mn2[0];
            mx2[0] = v > mx2[0] ? v : mx2[0];
            acc[0] += u;
            acc[1] += u * u;
            acc[2] += v;
            acc[3] += v * v;
            acc[4] += u * v;
        }
        double a = mn[0], z = mx[0], a2 = mn2[0], z2 = mx2[0];
        for (int k = 1; k < LANES; k++) {
            a = mn[k] < a ? mn[k] : a;
            z = mx[k] > z ? mx[k] : z;
            a2 = mn2[k] < a2 ? mn2[k] : a2;
            z2 = mx2[k] > z2 ? mx2[k] : z2;
        }
        const int nan_x = isnan(acc[0]), nan_y = isnan(acc[2]);
        out[b] = nan_x ? acc[0] : a;
        out[stride + b] = nan_x ? acc[0] : z;
        out[2 * stride + b] = acc[0];
        out[3 * stride + b] = nan_x ? acc[0] : acc[1];
        out[4 * stride + b] = nan_y ? acc[2] : a2;
        out[5 * stride + b] = nan_y ? acc[2] : z2;
        out[6 * stride + b] = acc[2];
        out[7 * stride + b] = nan_y ? acc[2] : acc[3];
        out[8 * stride + b] = nan_x || nan_y ? NAN : acc[4];
    }
}

/* SIM's pass (salnet.metrics.distribution.sim): out[row] = sum |a*x + c - b*y| over the row of x and y
 * (rows, n), the L1 distance of two affinely normalised maps without forming them. */
void salnet_affine_l1_f64(const double *x, const double *y, int64_t rows, int64_t n, const double *a,
                          const double *b, const double *c, double *out) {
    for (int64_t row = 0; row < rows; row++) {
        const double *r = x + row * n, *t = y + row * n;
        const double ka = a[row], kb = b[row], kc = c[row];
        double s[LANES] = {0}, total = 0;
        int64_t i = 0;
        while (i + LANES <= n) {
            int64_t stop = i + FLUSH < n ? i + FLUSH : n;
            for (; i + LANES <= stop; i += LANES)
                for (int k = 0; k < LANES; k++) s[k] += fabs(ka * r[i + k] + kc - kb * t[i + k]);
            for (int k = 0; k < LANES; k++) {
                total += s[k];
                s[k] = 0;
            }
        }
        for (; i < n; i++) total += fabs(ka * r[i] + kc - kb * t[i]);
        out[row] = total;
    }
}

/* Natural log of a positive normal finite x, branch-free so that loops over it vectorise (libm's log is a
 * scalar call): fdlibm's e_log.c (x = 2^k * m, m in [sqrt(2)/2, sqrt(2)), log(m) from s = f/(2+f) and a
 * degree-14 polynomial in s), error below 1 ulp. Callers check the argument's range themselves. */
static inline double log_positive(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
                 Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    uint64_t u, eb, mb;
    double e, m;
    memcpy(&u, &x, 8);
    eb = (u >> 52) | 0x4330000000000000ULL;  /* 2^52 + biased exponent, as a double */
    memcpy(&e, &eb, 8);
    e -= 4503599627370496.0 + 1023.0;
    mb = (u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;  /* mantissa in [1, 2) */
    memcpy(&m, &mb, 8);
    const int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1.0 : e;
    const double f = m - 1.0, s = f / (2.0 + f), z = s * s, w = z * z;
    const double R = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7))) + w * (Lg2 + w * (Lg4 + w * Lg6));
    const double hfsq = 0.5 * f * f;
    return e * ln2_hi - ((hfsq - (s * (hfsq + R) + e * ln2_lo)) - f);
}

/* KLD's pass (salnet.metrics.distribution.kld): out[row] = sum kg*y * log(eps + kg*y / (eps + kp*max(x, 0)))
 * over the row of x (prediction) and y (ground truth), the maps scaled to sum 1 by kp and kg. Returns the
 * number of pixels whose log argument is not a positive normal finite number (where libm's log would give
 * NaN, -inf or a subnormal's log): the caller then takes its torch path. */
static inline double kld_term(double x, double y, double sp, double sg, double eps, int64_t *bad) {
    const double p = x > 0 ? x : 0.0, g = sg * y, arg = eps + g / (eps + sp * p);
    *bad += !(arg >= DBL_MIN) | !(arg <= DBL_MAX);  /* NaN fails both */
    return g * log_positive(arg);
}

int64_t salnet_kld_f64(const double *x, const double *y, int64_t rows, int64_t n, const double *kp,
                       const double *kg, double eps, double *out) {
    int64_t nb[LANES] = {0};
    for (int64_t row = 0; row < rows; row++) {
        const double *r = x + row * n, *t = y + row * n;
        const double sp = kp[row], sg = kg[row];
        double s[LANES] = {0}, total = 0;
        int64_t i = 0;
        while (i + LANES <= n) {
            int64_t stop = i + FLUSH < n ? i + FLUSH : n;
            for (; i + LANES <= stop; i += LANES)
                for (int k = 0; k < LANES; k++) s[k] += kld_term(r[i + k], t[i + k], sp, sg, eps, &nb[k]);
            for (int k = 0; k < LANES; k++) {
                total += s[k];
                s[k] = 0;
            }
        }
        for (; i < n; i++) total += kld_term(r[i], t[i], sp, sg, eps, &nb[0]);
        out[row] = total;
    }
    int64_t bad = 0;
    for (int k = 0; k < LANES; k++) bad += nb[k];
    return bad;
}

/* The stepped-threshold ROC counts of AUC-Borji and sAUC (salnet.metrics.auc._threshold_counts): for each
 * row of S (rows, n), the values at the pixels idx[row, s, j] (idx (rows, splits, width) int64) of every
 * split s, only j < use[row], min-max normalised v = (S - lo) / spread, are counted by the number of
 * thresholds T (nt, ascending) at or below v: counts (rows, nt + 1) int64, written here. A NaN v counts
 * as below every threshold. */
void salnet_threshold_counts_f64(const double *S, int64_t rows, int64_t n, const int64_t *idx, int64_t splits,
                                 int64_t width, const int64_t *use, const double *lo, const double *spread,
                                 const double *T, int64_t nt, int64_t *counts) {
    for (int64_t b = 0; b < rows; b++) {
        const double *r = S + b * n, base = lo[b], sp = spread[b];
        int64_t *c = counts + b * (nt + 1);
        for (int64_t t = 0; t <= nt; t++) c[t] = 0;
        for (int64_t s = 0; s < splits; s++) {
            const int64_t *ix = idx + (b * splits + s) * width;
            for (int64_t start = 0; start < use[b]; start += CHUNK) {
                const int64_t len = use[b] - start < CHUNK ? use[b] - start : CHUNK;
                double v[CHUNK];
                int32_t below[CHUNK];
                /* the random reads first, independent of each other, so that their cache misses overlap */
                for (int64_t j = 0; j < len; j++) v[j] = (r[ix[start + j]] - base) / sp;
                /* thresholds at or below each value, counted across the chunk (vectorised; a binary search
                 * per value would mispredict its last step half the time) */
                for (int64_t j = 0; j < len; j++) below[j] = 0;
                for (int64_t t = 0; t < nt; t++) {
                    const double th = T[t];
                    for (int64_t j = 0; j < len; j++) below[j] += th <= v[j];
                }
                for (int64_t j = 0; j < len; j++) c[below[j]]++;
            }
        }
    }
}

/* Flat indices (ascending) of the nonzero entries of x (n float64 as their bit patterns): NaN is nonzero,
 * -0.0 is zero, as in torch's nonzero. Fixation maps are nearly all zero: a block of 64 entries is scanned
 * entry by entry only where the OR of its bits (sign dropped) is nonzero. Writes up to capacity indices
 * into out and returns how many there are (the caller retries with a larger out when that is more). */
int64_t salnet_nonzero_f64(const uint64_t *x, int64_t n, int64_t *out, int64_t capacity) {
    int64_t found = 0, i = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t any = 0;
        for (int k = 0; k < 64; k++) any |= x[i + k] << 1;
        if (!any) continue;
        for (int64_t k = i; k < i + 64; k++)
            if (x[k] << 1) {
                if (found < capacity) out[found] = k;
                found++;
            }
    }
    for (; i < n; i++)
        if (x[i] << 1) {
            if (found < capacity) out[found] = i;
            found++;
        }
    return found;
}

/* AUC-Judd's per-pixel pass (salnet.metrics.auc._count_at_or_above_fixated) for rows of S (rows, n):
 * bin = trunc((S - lo)*scale + shift) if subtract else trunc(S*scale + shift), clamped to [1, kmax]. A
 * pixel whose bin is marked (marked[row, bin] != 0) is "close": listed in close[row*n ...] (its index
 * within the row, ascending) and counted in nclose[row]; the others are counted in hist[row, bin] (hist
 * zeroed by the caller, rows of width nbins). */
#define SUBHISTS 4  /* neighbouring pixels often share a bin: separate histograms break the chain of increments */

int32_t salnet_judd_pass_f64(const double *S, int64_t rows, int64_t n, const double *lo, const double *scale,
                             const double *shift, int32_t subtract, const uint8_t *marked, int64_t nbins,
                             int64_t kmax, int64_t *hist, int64_t *close, int64_t *nclose) {
    /* per-thread sub-histograms, kept between calls (the merge below leaves them zeroed): a fresh
     * half-megabyte calloc per call costs more in page faults than the pass itself */
    static _Thread_local int32_t *sub = NULL;
    static _Thread_local int64_t capacity = 0;
    if (capacity < SUBHISTS * nbins) {
        free(sub);
        sub = calloc(SUBHISTS * nbins, sizeof(int32_t));
        capacity = sub ? SUBHISTS * nbins : 0;
        if (!sub) return -1;
    }
    for (int64_t b = 0; b < rows; b++) {
        const double *r = S + b * n;
        const uint8_t *m = marked + b * nbins;
        int64_t *h = hist + b * nbins, *c = close + b * n, found = 0;
        const double base = subtract ? lo[b] : 0.0, sc = scale[b], sh = shift[b], top = (double)kmax;
        int32_t bins[CHUNK];
        for (int64_t start = 0; start < n; start += CHUNK) {
            const int64_t len = n - start < CHUNK ? n - start : CHUNK;
            for (int64_t i = 0; i < len; i++) {
                double f = (r[start + i] - base) * sc + sh;
                f = f >= 1.0 ? f : 1.0;  /* NaN -> 1 */
                bins[i] = (int32_t)(f < top ? f : top);
            }
            int64_t i = 0;
            for (; i + SUBHISTS <= len; i += SUBHISTS)
                for (int64_t q = 0; q < SUBHISTS; q++) {
                    const int32_t k = bins[i + q];
                    const int close_pixel = m[k] != 0;
                    sub[q * nbins + k] += !close_pixel;
                    c[found] = start + i + q;
                    found += close_pixel;
                }
            for (; i < len; i++) {
                const int32_t k = bins[i];
                const int close_pixel = m[k] != 0;
                sub[k] += !close_pixel;
                c[found] = start + i;
                found += close_pixel;
            }
        }
        for (int64_t k = 0; k < nbins; k++) {
            int64_t t = 0;
            for (int64_t q = 0; q < SUBHISTS; q++) {
                t += sub[q * nbins + k];
                sub[q * nbins + k] = 0;
            }
            h[k] = t;
        }
        nclose[b] = found;
    }
    return 0;
}
