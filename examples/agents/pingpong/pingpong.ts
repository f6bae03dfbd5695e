// pingpong in AssemblyScript: the same agent as pingpong.c, line for line, making the
// same sends and logs for the same inputs (tests/sdk checks this).
//
// Spawn arguments: peer=NAME (required), rounds=N (default 3), start=1 (serve first).
import {
  Context, DONE, IDLE, KIND_UNDELIVERABLE, LOG_ERROR, LOG_INFO, LOG_WARN, Message,
  OK, argValue, log, parseU64, receiveBatch, send,
} from "@lockstep/sdk";

export { agent_alloc } from "@lockstep/sdk";

const MAX_PENDING: i32 = 16;
const MAX_NAME: i32 = 64;

let configured = false;
let peer = "";
let rounds: u64 = 3;
let starter = false;

let pingsSent: u64 = 0;   // starter: last ping number sent
let pongsSeen: u64 = 0;   // starter: replies counted
let pingsServed: u64 = 0; // responder: pongs sent
let stop = false;         // a send of ours could not be delivered

// Pings received since the last step, answered there (in arrival order).
const pending = new StaticArray<u64>(MAX_PENDING);
let nPending: i32 = 0;

function configure(ctx: Context): void {
  const v = argValue(ctx.args, "peer");
  if (v !== null && String.UTF8.byteLength(v) <= MAX_NAME) peer = v;
  rounds = ctx.argU64("rounds", 3);
  starter = ctx.argU64("start", 0) == 1;
  configured = true;
}

// k when the text is "<word> <k>", else -1.
function parseNumbered(text: string, word: string): i64 {
  const w = word.length;
  if (text.length <= w + 1 || !text.startsWith(word) || text.charCodeAt(w) != 0x20) return -1;
  return parseU64(text.substring(w + 1));
}

function sendNumbered(word: string, k: u64): void {
  const msg = word + " " + k.toString();
  send(peer, msg);
  log(LOG_INFO, msg + " -> " + peer);
}

export function agent_init(): i32 {
  return OK;
}

export function agent_receive(messagePtr: i32): i32 {
  const m = Message.read(messagePtr);
  if (m.kind == KIND_UNDELIVERABLE) {
    log(LOG_WARN, "undeliverable to " + m.dest + ": " + m.text());
    stop = true;
    return OK;
  }
  // A valid "ping <k>"/"pong <k>" is at most 24 bytes (k has at most 19 digits, as
  // pingpong.c parses it); do not spend fuel decoding anything longer.
  const text = m.payload.length <= 24 ? m.text() : "";
  let k = parseNumbered(text, "ping");
  if (k >= 0) {
    if (nPending < MAX_PENDING) pending[nPending++] = <u64>k;
    return OK;
  }
  k = parseNumbered(text, "pong");
  if (k >= 0) {
    if (<u64>k == pingsSent) pongsSeen++;
    return OK;
  }
  log(LOG_WARN, "unexpected message");
  return OK;
}

export function agent_receive_batch(batchPtr: i32): i32 {
  return receiveBatch(batchPtr, agent_receive);
}

export function agent_step(contextPtr: i32): i32 {
  const ctx = Context.read(contextPtr);
  if (!configured) configure(ctx);
  if (peer.length == 0) {
    log(LOG_ERROR, "missing peer=NAME argument");
    return DONE;
  }
  if (stop) return DONE;
  for (let i = 0; i < nPending; i++) {
    sendNumbered("pong", pending[i]);
    pingsServed++;
  }
  nPending = 0;
  if (starter) {
    if (pingsSent == pongsSeen) { // the ball is with us
      if (pingsSent >= rounds) {
        log(LOG_INFO, "done: replies=" + pongsSeen.toString());
        return DONE;
      }
      pingsSent++;
      sendNumbered("ping", pingsSent);
    }
  } else if (pingsServed >= rounds) {
    log(LOG_INFO, "done: served=" + pingsServed.toString());
    return DONE;
  }
  return IDLE;
}

export function agent_shutdown(): i32 {
  return OK;
}
