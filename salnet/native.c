/* salnet's optional C kernels: the CPU hot loops that torch's operators can only do in several passes.
 * Compiled on first use by salnet/native.py (system C compiler, -O3 -march=native) and called through
 * ctypes on contiguous CPU tensors; the metric kernels take a range of rows per call (Python runs the ranges
 * in threads: ctypes releases the GIL). Every kernel has a torch fallback it is tested against (tests/test_native.py). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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
#define CHUNK 512  /* pixels binned in one vectorised loop before the scalar histogram loop */
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

/* INTER_AREA shrink (salnet.imresize.area_resize_int) of an image in (H, W, C) (uint8 or uint16) to float32
 * (C, h, w), with exact int32 sums. Each axis is a repeated block: bi inputs -> bo outputs, output o of a
 * block = sum_j k[o, j] * input[block start + first[o] + j] (k: (bo, taps) integer weights, zero-padded).
 * out = scale * height sums of width sums; flip mirrors the output's columns. The height pass runs over
 * whole contiguous rows into one row of sums; the width pass walks the blocks with one output's weights
 * held fixed, specialised for the common channel and tap counts so that its loops unroll. */
#define WIDTH_PASS(NAME, C, TW)                                                                           \
    static void NAME(const int32_t *restrict acc, int64_t groups, int64_t bi, int64_t bo,                 \
                     const int32_t *first, const int32_t *kw, float scale, int64_t plane, int64_t w,      \
                     int32_t flip, float *restrict out) {                                                 \
        const int64_t step = flip ? -bo : bo;                                                             \
        for (int64_t o = 0; o < bo; o++) {                                                                \
            int32_t k[TW];                                                                                \
            for (int64_t j = 0; j < TW; j++) k[j] = kw[o * TW + j];                                       \
            for (int64_t c = 0; c < C; c++) {                                                             \
                const int32_t *a = acc + first[o] * C + c;                                                \
                float *restrict dst = out + c * plane + (flip ? w - 1 - o : o);                           \
                for (int64_t g = 0; g < groups; g++) {                                                    \
                    const int32_t *p = a + g * bi * C;                                                    \
                    int32_t s = 0;                                                                        \
                    for (int64_t j = 0; j < TW; j++) s += k[j] * p[j * C];                                \
                    dst[g * step] = (float)s * scale;                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
    }
WIDTH_PASS(width_c1_t2, 1, 2)
WIDTH_PASS(width_c1_t3, 1, 3)
WIDTH_PASS(width_c1_t4, 1, 4)
WIDTH_PASS(width_c3_t2, 3, 2)
WIDTH_PASS(width_c3_t3, 3, 3)
WIDTH_PASS(width_c3_t4, 3, 4)

static void width_any(const int32_t *restrict acc, int64_t groups, int64_t bi, int64_t bo, const int32_t *first,
                      const int32_t *kw, float scale, int64_t plane, int64_t w, int32_t flip, int64_t C,
                      int64_t tw, float *restrict out) {
    const int64_t step = flip ? -bo : bo;
    for (int64_t o = 0; o < bo; o++)
        for (int64_t c = 0; c < C; c++) {
            const int32_t *a = acc + first[o] * C + c;
            float *restrict dst = out + c * plane + (flip ? w - 1 - o : o);
            for (int64_t g = 0; g < groups; g++) {
                int32_t s = 0;
                for (int64_t j = 0; j < tw; j++) s += kw[o * tw + j] * a[g * bi * C + j * C];
                dst[g * step] = (float)s * scale;
            }
        }
}

#define AREA_SHRINK(NAME, T)                                                                                \
    int32_t NAME(const T *restrict in, int64_t H, int64_t W, int64_t C, int64_t bih, int64_t boh,           \
                 int64_t th, const int32_t *fh, const int32_t *kh, int64_t biw, int64_t bow, int64_t tw,      \
                 const int32_t *fw, const int32_t *kw, float scale, int32_t flip, float *restrict out) {      \
        const int64_t WC = W * C, h = H / bih * boh, w = W / biw * bow, gw = W / biw;                         \
        /* padded taps of the last block read past the row: zeros there */                                   \
        int32_t *acc = calloc(WC + tw * C, sizeof(int32_t));                                                 \
        if (!acc) return -1;                                                                                  \
        for (int64_t y = 0; y < h; y++) {                                                                     \
            const int64_t o = y % boh;                                                                        \
            const T *src = in + (y / boh * bih + fh[o]) * WC;                                                 \
            const int32_t *k = kh + o * th;                                                                   \
            const int32_t k0 = k[0];                                                                          \
            if (th == 3 && k[1] && k[2]) { /* the common 3-tap rows in one pass */                            \
                const T *restrict s1 = src + WC, *restrict s2 = src + 2 * WC;                                 \
                const int32_t k1 = k[1], k2 = k[2];                                                           \
                for (int64_t x = 0; x < WC; x++)                                                              \
                    acc[x] = k0 * (int32_t)src[x] + k1 * (int32_t)s1[x] + k2 * (int32_t)s2[x];                \
            } else {                                                                                          \
            for (int64_t x = 0; x < WC; x++) acc[x] = k0 * (int32_t)src[x];                                   \
            for (int64_t i = 1; i < th; i++) {                                                                \
                const T *restrict s = src + i * WC;                                                           \
                const int32_t ki = k[i];                                                                      \
                if (ki) /* a zero-padded tap may lie past the last row: never read */                         \
                    for (int64_t x = 0; x < WC; x++) acc[x] += ki * (int32_t)s[x];                            \
            }                                                                                                 \
            }                                                                                                 \
            float *row = out + y * w;                                                                         \
            if (C == 3 && tw == 3) width_c3_t3(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);        \
            else if (C == 3 && tw == 2) width_c3_t2(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
            else if (C == 3 && tw == 4) width_c3_t4(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
            else if (C == 1 && tw == 3) width_c1_t3(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
            else if (C == 1 && tw == 2) width_c1_t2(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
            else if (C == 1 && tw == 4) width_c1_t4(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
            else width_any(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, C, tw, row);                     \
        }                                                                                                     \
        free(acc);                                                                                            \
        return 0;                                                                                             \
    }
AREA_SHRINK(salnet_area_shrink_u8, uint8_t)
AREA_SHRINK(salnet_area_shrink_u16, uint16_t)
