// Reports observations each step: the SDK's encoding, checked by tests/api/test_observe.py.
import { OK, Observation, observe, observeInt, receiveBatch, tick } from "@lockstep/sdk";

export { agent_alloc } from "@lockstep/sdk";

export function agent_init(): i32 {
  return OK;
}

export function agent_receive(messagePtr: i32): i32 {
  return OK;
}

export function agent_receive_batch(batchPtr: i32): i32 {
  return receiveBatch(batchPtr, agent_receive);
}

export function agent_step(contextPtr: i32): i32 {
  observe("wealth", 2.5);
  observeInt("count", -42);
  new Observation().i64("tick", tick()).f64("third", 1.0 / 3.0).f64("neg", -0.0).emit();
  return OK;
}

export function agent_shutdown(): i32 {
  return OK;
}
