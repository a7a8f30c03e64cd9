/* nn_lstm.h: LSTM kernels (plain C) and the stateful stepping API that
 * bind_lstm.c exposes as lstm:step / reset_state / state / set_state.
 *
 * Layout is PyTorch's so weights move between the two unchanged: gate order
 * i, f, g, o; weight_ih_l<k> is (4H, in), weight_hh_l<k> is (4H, H). Unlike
 * PyTorch there is one bias per layer (Keras), bias_l<k> (4H).
 *
 * The kernels work time-major, (T, B, ...): one time step is then one
 * contiguous block, and all "previous" hidden states h_0 .. h_{T-2} are one
 * matrix for the single dW_hh GEMM of backward. The layer converts from and
 * to the batch-first (B, T, ...) tensors at its boundary. */
#ifndef DD_NN_LSTM_H
#define DD_NN_LSTM_H

#include "layer.h"

/* Three parameters per layer must fit in LAYER_MAX_PARAMS (16). */
#define LSTM_MAX_LAYERS 5

typedef enum LstmActivation { LSTM_SIGMOID, LSTM_HARD_SIGMOID } LstmActivation;

/* One cell step for a batch.
 * gates is (B, 4H): in, the pre-activations without bias (x W_ih^T + h W_hh^T);
 * out, the activations i, f, g, o. b is (4H). c_prev is (B, H) or NULL for a
 * zero state; c (B, H) receives c_t and may alias c_prev. tc (B, H) receives
 * tanh(c_t) and may be NULL. h (B, H) receives h_t. */
void lstm_cell_forward(float *gates, float *c, float *tc, float *h, const float *c_prev, const float *b,
                       int64_t batch, int64_t hidden, LstmActivation act);

/* One layer over a sequence from a zero state.
 * x is (T, B, in), w_ih (4H, in), w_hh (4H, H), b (4H). whh_packed is NULL
 * or W_hh^T packed by gemm_pack_b (gemm_packed.h), for the step products.
 * Writes gates (T, B, 4H) (activations), c and tc = tanh(c) and h (T, B, H). */
void lstm_layer_forward(float *gates, float *c, float *tc, float *h, const float *x, const float *w_ih,
                        const float *w_hh, const float *whh_packed, const float *b, int64_t time, int64_t batch,
                        int64_t in, int64_t hidden, LstmActivation act);

/* Backward through time for one layer, given what lstm_layer_forward wrote.
 * dh (T, B, H) holds dL/dh_t from above and is overwritten (the recurrent
 * terms are added into it). dgates (T, B, 4H) and dc (B, H) are scratch;
 * dgates holds the pre-activation gradients on return. Adds (+=) into
 * dw_ih (4H, in), dw_hh (4H, H), db (4H); writes dx (T, B, in) unless NULL.
 * whh_packed is NULL or W_hh itself packed by gemm_pack_b. */
void lstm_layer_backward(float *dx, float *dw_ih, float *dw_hh, float *db, float *dgates, float *dc, float *dh,
                         const float *x, const float *gates, const float *c, const float *tc, const float *h,
                         const float *w_ih, const float *w_hh, const float *whh_packed, int64_t time, int64_t batch,
                         int64_t in, int64_t hidden, LstmActivation act);

/* Sizes of an LSTM layer (m->kind must be &lstm_kind). */
int64_t lstm_input_size(const Layer *m);
int64_t lstm_hidden_size(const Layer *m);
int lstm_num_layers(const Layer *m);

/* Stepping state: (h, c) of every layer, kept between lstm_step calls. The
 * batch is fixed by the first step after a reset (0: no state yet). */
int64_t lstm_state_batch(const Layer *m);
void lstm_state_reset(Layer *m);
/* h and c of layer k, (batch, H); NULL when there is no state. */
const float *lstm_state_h(const Layer *m, int k);
const float *lstm_state_c(const Layer *m, int k);
/* Replaces the state: h[k] and c[k] are (batch, H) for every layer k. */
int lstm_state_set(Layer *m, int64_t batch, const float *const *h, const float *const *c, char *err);
/* One time step without dropout: x is (batch, in), y (batch, H) receives the
 * top layer's h. Equal to forward() over a sequence, step by step. */
int lstm_step(Layer *m, float *y, const float *x, int64_t batch, char *err);

#endif
