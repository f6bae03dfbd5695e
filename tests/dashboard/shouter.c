/* A hostile-looking agent for the dashboard tests: each step it logs a line holding a
 * <script> element (the dashboard must show it as text, never run it) and observes the
 * tick. Its spawn arguments hold HTML too (tests/dashboard/scenario.toml). */
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
    LS_BUF(line, 96);
    ls_buf_str(&line, "<script>document.title='pwned'</script> tick ");
    ls_buf_i64(&line, t);
    ls_log_buf(LS_LOG_INFO, &line);
    ls_observe_i64("tick", t);
    return LS_OK;
}
