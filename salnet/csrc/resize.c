/* salnet's optional C kernel for the data loader: the INTER_AREA shrink of salnet.imresize.area_resize_int.
 * Compiled with metrics.c into one library by salnet/native.py; tested bit for bit against the torch path
 * (tests/test_native.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h" /* the declarations Python binds to: the compiler checks these definitions against them */

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

/* The width pass for one block fixed at compile time, weights included (BI inputs -> BO outputs with the
 * integer weights K from first offsets F, the only ones INTER_AREA has for that block): each group's BI*C
 * sums are read once and the loops fold into straight-line code, about twice the generic pass's speed.
 * Used for 5 -> 2 (SALICON's 640x480 to SalGAN's 256x192) and 5 -> 4 (fast_decode's 320x240 to it) after
 * checking that the caller's weights are these. */
static const int32_t F5TO2[2] = {0, 2}, K5TO2[2][3] = {{2, 2, 1}, {1, 2, 2}};
static const int32_t F5TO4[4] = {0, 1, 2, 3}, K5TO4[4][2] = {{4, 1}, {3, 2}, {2, 3}, {1, 4}};
#define GROUP_PASS(NAME, BI, BO, C, TW, F, K)                                                                 \
    static void NAME(const int32_t *restrict acc, int64_t groups, float scale, int64_t plane, int64_t w,      \
                     int32_t flip, float *restrict out) {                                                     \
        for (int64_t g = 0; g < groups; g++) {                                                                \
            const int32_t *restrict p = acc + g * BI * C;                                                     \
            for (int o = 0; o < BO; o++) {                                                                    \
                const int64_t x = flip ? w - 1 - (g * BO + o) : g * BO + o;                                   \
                for (int c = 0; c < C; c++) {                                                                 \
                    int32_t s = 0;                                                                            \
                    for (int j = 0; j < TW; j++) s += K[o][j] * p[(F[o] + j) * C + c];                        \
                    out[c * plane + x] = (float)s * scale;                                                    \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }
GROUP_PASS(group_5to2_c3, 5, 2, 3, 3, F5TO2, K5TO2)
GROUP_PASS(group_5to2_c1, 5, 2, 1, 3, F5TO2, K5TO2)
GROUP_PASS(group_5to4_c3, 5, 4, 3, 2, F5TO4, K5TO4)
GROUP_PASS(group_5to4_c1, 5, 4, 1, 2, F5TO4, K5TO4)

/* Which fixed-block pass the caller's block is (0: none). */
static int fixed_block(int64_t bi, int64_t bo, int64_t tw, const int32_t *first, const int32_t *kw) {
    if (bi == 5 && bo == 2 && tw == 3 && !memcmp(first, F5TO2, sizeof F5TO2) && !memcmp(kw, K5TO2, sizeof K5TO2))
        return 52;
    if (bi == 5 && bo == 4 && tw == 2 && !memcmp(first, F5TO4, sizeof F5TO4) && !memcmp(kw, K5TO4, sizeof K5TO4))
        return 54;
    return 0;
}

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
        const int fixed = fixed_block(biw, bow, tw, fw, kw);                                                  \
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
            if (fixed == 52 && C == 3) group_5to2_c3(acc, gw, scale, h * w, w, flip, row);                     \
            else if (fixed == 52 && C == 1) group_5to2_c1(acc, gw, scale, h * w, w, flip, row);                \
            else if (fixed == 54 && C == 3) group_5to4_c3(acc, gw, scale, h * w, w, flip, row);                \
            else if (fixed == 54 && C == 1) group_5to4_c1(acc, gw, scale, h * w, w, flip, row);                \
            else if (C == 3 && tw == 3) width_c3_t3(acc, gw, biw, bow, fw, kw, scale, h * w, w, flip, row);   \
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
