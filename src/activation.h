/* activation.h: element-wise activations, as layers (ReLU, Sigmoid, Tanh,
 * HardSigmoid in nn_activation.c) and fused into the layers that take an
 * `activation=` option as Keras does (Conv2d, ConvTranspose2d, Linear).
 *
 * A fused activation is applied in place to the layer's output while it is
 * still in cache, and its derivative is computed from that output, so the
 * pre-activation values are never stored: every supported function has a
 * derivative that is a function of its output. Plain C, no Lua. */
#ifndef DD_ACTIVATION_H
#define DD_ACTIVATION_H

#include <stdint.h>

typedef enum Act { ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_HARDSIGMOID } Act;

/* "linear", "relu", "sigmoid", "tanh", "hard_sigmoid" to an Act; -1 if unknown. */
int act_parse(const char *name, Act *out);
extern const char *const act_names; /* for error messages */

/* y = f(y), in place. */
void act_forward(Act a, float *y, int64_t n);
/* y = f(y + b), in place: a layer's bias and activation in one pass. */
void act_forward_bias(Act a, float *y, float b, int64_t n);
/* dz = dy * f'(z) computed from the output y = f(z); dz may be dy. */
void act_backward(Act a, float *dz, const float *dy, const float *y, int64_t n);

#endif
