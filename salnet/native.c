/* salnet's optional C kernels: the CPU hot loops that torch's operators can only do in several passes.
 * Compiled on first use by salnet/native.py (system C compiler, -O3 -march=native) and called through
 * ctypes on contiguous CPU tensors, one call per range of rows (Python runs the ranges in threads: ctypes
 * releases the GIL). Every kernel has a torch fallback it is tested against (tests/test_native.py). */
#include <math.h>
#include <stdint.h>

#define LANES 8      /* independent accumulators: vectorisable, and a shorter rounding chain */
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

/* AUC-Judd's per-pixel pass (salnet.metrics.auc._count_at_or_above_fixated) for rows of S (rows, n):
 * bin = trunc((S - lo)*scale + shift) if subtract else trunc(S*scale + shift), clamped to [1, kmax]. A
 * pixel whose bin is marked (marked[row, bin] != 0) is "close": listed in close[row*n ...] (its index
 * within the row, ascending) and counted in nclose[row]; the others are counted in hist[row, bin] (hist
 * zeroed by the caller, rows of width nbins). */
void salnet_judd_pass_f64(const double *S, int64_t rows, int64_t n, const double *lo, const double *scale,
                          const double *shift, int32_t subtract, const uint8_t *marked, int64_t nbins,
                          int64_t kmax, int64_t *hist, int64_t *close, int64_t *nclose) {
    for (int64_t b = 0; b < rows; b++) {
        const double *r = S + b * n;
        const uint8_t *m = marked + b * nbins;
        int64_t *h = hist + b * nbins, *c = close + b * n, found = 0;
        double base = subtract ? lo[b] : 0.0, sc = scale[b], sh = shift[b];
        for (int64_t i = 0; i < n; i++) {
            double f = (r[i] - base) * sc + sh;
            int64_t k = f >= 1.0 ? (f < (double)kmax ? (int64_t)f : kmax) : 1;  /* NaN -> 1 */
            int close_pixel = m[k] != 0;
            h[k] += !close_pixel;
            c[found] = i;
            found += close_pixel;
        }
        nclose[b] = found;
    }
}
