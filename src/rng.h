/* rng.h: the runtime's one random generator (xoshiro256**), so that one
 * dd.manual_seed makes every draw (init, dropout, shuffling, sampling) repeat. */
#ifndef DD_RNG_H
#define DD_RNG_H

#include <stdint.h>

typedef struct Rng {
    uint64_t s[4];
    double spare_normal;  /* Box-Muller makes normals in pairs */
    int has_spare;
} Rng;

extern Rng rng_global;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);           /* [0, 1) with 53 random bits */
double rng_normal(Rng *r);            /* mean 0, standard deviation 1 */
uint64_t rng_below(Rng *r, uint64_t n); /* uniform integer in [0, n), unbiased */
/* n draws in order: mask[i] = 0 where rng_uniform(r) < p would hold, else
 * keep (inverted dropout's mask), the same decisions, several times faster. */
void rng_dropout_mask(Rng *r, float *mask, int64_t n, double p, float keep);

#endif
