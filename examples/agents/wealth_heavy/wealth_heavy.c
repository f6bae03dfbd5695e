/*
 * wealth_heavy: the wealth model (../wealth/wealth.c) with 2000 rounds of integer
 * busywork per step before the agent decides -- roughly 10k wasm instructions, a
 * stand-in for agents that compute before they act. It benchmarks the pool with the
 * agent's own work dominating the host's per-step overhead. Same arguments as wealth;
 * work=K overrides the amount. The sends are the same as wealth's for the same inputs:
 * the busywork's result only goes into the agent's memory.
 */
#define WEALTH_DEFAULT_WORK 2000
#include "../wealth/wealth.c"
