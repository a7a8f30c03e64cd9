/* rng.c: xoshiro256** seeded through splitmix64 (Blackman & Vigna). */
#include "rng.h"

#include <math.h>

Rng rng_global = {{0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull, 1}, 0, 0};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
    r->has_spare = 0;
    r->spare_normal = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* rng_uniform(r) < p is (x >> 11) * 2^-53 < p, that is (x >> 11) < p * 2^53,
 * and for an integer on the left, < ceil(p * 2^53): the same decisions as the
 * double comparison, without the conversion; the loop keeps rng_next inlined. */
void rng_dropout_mask(Rng *r, float *mask, int64_t n, double p, float keep) {
    /* !(p > 0) also takes NaN, which rng_uniform(r) < p never drops on */
    const uint64_t below = !(p > 0) ? 0 : p >= 1 ? (uint64_t)1 << 53 : (uint64_t)ceil(p * 0x1.0p53);
    for (int64_t i = 0; i < n; i++) mask[i] = (rng_next(r) >> 11) < below ? 0.0f : keep;
}

double rng_normal(Rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare_normal;
    }
    double u1, u2;
    do u1 = rng_uniform(r); while (u1 <= 0.0);
    u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare_normal = rad * sin(2.0 * M_PI * u2);
    r->has_spare = 1;
    return rad * cos(2.0 * M_PI * u2);
}

uint64_t rng_below(Rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(r); while (x >= limit);
    return x % n;
}
