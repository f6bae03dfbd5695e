// wealth in AssemblyScript: the same agent as wealth.c (see there for the model and the
// arguments n=, prefix=, wealth=, work=, log_every=). It draws from the random stream
// exactly as the C build does (randomBelow is the same algorithm in both SDKs), so both
// make the same sends for the same seed -- tests/sdk checks this.
import {
  Context, DONE, IDLE, KIND_AGENT, KIND_UNDELIVERABLE, LOG_ERROR, LOG_INFO, LOG_WARN, Message,
  OK, argValue, log, parseU64, randomBelow, receiveBatch, send,
} from "@lockstep/sdk";

export { agent_alloc } from "@lockstep/sdk";

const MAX_NAME: i32 = 64;

let configured = false;
let prefix = "w";
let nAgents: u64 = 0;
let me: u64 = 0;
let wealth: u64 = 0;
let work: u64 = 0;
let logEvery: u64 = 0;
let workAcc: u64 = 0; // the busywork's result, kept so the loop is not optimised away

function configure(ctx: Context): bool {
  const p = argValue(ctx.args, "prefix");
  if (p !== null) {
    if (p.length == 0 || String.UTF8.byteLength(p) > MAX_NAME - 20) return false;
    prefix = p;
  }
  nAgents = ctx.argU64("n", 0);
  wealth = ctx.argU64("wealth", 1);
  work = ctx.argU64("work", 0);
  logEvery = ctx.argU64("log_every", 0);
  // My index is the number after the prefix in my name.
  const name = ctx.name;
  if (name.length <= prefix.length || !name.startsWith(prefix)) return false;
  const idx = parseU64(name.substring(prefix.length));
  if (idx < 0) return false;
  me = <u64>idx;
  if (nAgents < 2 || me >= nAgents) return false;
  configured = true;
  return true;
}

// xorshift64* rounds, as in wealth.c.
function busywork(tick: i64): void {
  let x: u64 = (<u64>tick << 32) ^ (wealth + 0x9E3779B97F4A7C15) ^ workAcc;
  for (let i: u64 = 0; i < work; i++) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x *= 0x2545F4914F6CDD1D;
  }
  workAcc = x;
}

export function agent_init(): i32 {
  return OK;
}

export function agent_receive(messagePtr: i32): i32 {
  const m = Message.read(messagePtr);
  if (m.kind == KIND_AGENT) {
    // Amounts are short decimals; anything longer is not a number (as in wealth.c).
    const amount = m.payload.length <= 19 ? parseU64(m.text()) : -1;
    if (amount >= 0) wealth += <u64>amount;
  } else if (m.kind == KIND_UNDELIVERABLE) {
    wealth += 1; // the unit came back: it never left
    log(LOG_WARN, "a unit was undeliverable (is n= right?)");
  }
  return OK;
}

export function agent_receive_batch(batchPtr: i32): i32 {
  return receiveBatch(batchPtr, agent_receive);
}

export function agent_step(contextPtr: i32): i32 {
  const ctx = Context.read(contextPtr);
  if (!configured && !configure(ctx)) {
    log(LOG_ERROR, "bad arguments: need n=N (>= 2) and my name = prefix<index>");
    return DONE;
  }
  if (work > 0) busywork(ctx.tick);
  if (logEvery > 0 && ctx.tick % <i64>logEvery == 0) log(LOG_INFO, "wealth=" + wealth.toString());
  if (wealth == 0) return IDLE;
  // Uniform over the n-1 others: draw from [0, n-1) and skip my own index.
  let other = randomBelow(nAgents - 1);
  if (other >= me) other++;
  if (send(prefix + other.toString(), "1") == 0) wealth--;
  return wealth > 0 ? OK : IDLE;
}

export function agent_shutdown(): i32 {
  return OK;
}
