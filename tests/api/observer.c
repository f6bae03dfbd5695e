/* Reports observations each step: the SDK's encoding, checked by tests/api/test_observe.py. */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

int32_t agent_receive(int32_t message_ptr) {
    (void)message_ptr;
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    (void)context_ptr;
    int64_t t = ls_tick();
    ls_observe("wealth", 2.5);
    ls_observe_i64("count", -42);
    LS_BUF(line, 128);
    ls_obs_i64(&line, "tick", t);
    ls_obs_f64(&line, "third", 1.0 / 3.0);
    ls_obs_f64(&line, "neg", -0.0);
    ls_observe_buf(&line);
    return LS_OK;
}
