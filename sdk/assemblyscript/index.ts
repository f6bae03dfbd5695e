// @lockstep/sdk -- AssemblyScript SDK for Lockstep agents, agent ABI v1 (docs/abi.md).
//
// An agent's entry file defines the ABI exports and re-exports the SDK's allocator:
//
//   import { Context, Message, log, receiveBatch, send, LOG_INFO, IDLE, OK } from "@lockstep/sdk";
//   export { agent_alloc } from "@lockstep/sdk";
//   export function agent_init(): i32 { return OK; }
//   export function agent_step(contextPtr: i32): i32 { const ctx = Context.read(contextPtr); ...; return IDLE; }
//   export function agent_receive(messagePtr: i32): i32 { const m = Message.read(messagePtr); ...; return OK; }
//   export function agent_receive_batch(batchPtr: i32): i32 { return receiveBatch(batchPtr, agent_receive); }
//   export function agent_shutdown(): i32 { return OK; }
//
// Build it with `lockstep agent build agent.ts` (asc with sdk/assemblyscript/asconfig.json:
// incremental GC runtime, `abort` routed to lsAbort below, so the module imports nothing
// outside lockstep_v1). Do not use Math.random, Date or trace: they would import from
// `env` and the host refuses such a module; use random*() and tick() instead.
//
// Byte-for-byte the same behaviour as sdk/c/lockstep.h: same argument syntax, same
// number parsing, same randomBelow() algorithm, so an agent written against either SDK
// makes the same sends for the same inputs.

// ---------------------------------------------------------------------------------
// Constants (docs/abi.md)
// ---------------------------------------------------------------------------------

export const ABI_VERSION: i32 = 1;

// Return codes of agent_init / agent_step / agent_receive / agent_shutdown.
export const OK: i32 = 0;
export const IDLE: i32 = 1; // agent_step only: skip me until a message arrives
export const DONE: i32 = 2; // agent_init/agent_step: terminate me

// Negative results of the host calls (refusals; the agent may go on).
export const ERR_QUOTA: i32 = -1;
export const ERR_TOO_LARGE: i32 = -2;
export const ERR_BAD_NAME: i32 = -3;
export const ERR_BAD_ARG: i32 = -4;

// Message kinds.
export const KIND_AGENT: u8 = 0;
export const KIND_EXTERNAL: u8 = 1;
export const KIND_INFER_RESULT: u8 = 2;
export const KIND_INFER_ERROR: u8 = 3;
export const KIND_UNDELIVERABLE: u8 = 4;

// Log levels.
export const LOG_TRACE: i32 = 0;
export const LOG_DEBUG: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_WARN: i32 = 3;
export const LOG_ERROR: i32 = 4;

export const CONTEXT_HEADER_SIZE: u32 = 24;
export const MESSAGE_HEADER_SIZE: u32 = 32;
export const BATCH_HEADER_SIZE: u32 = 8;

// ---------------------------------------------------------------------------------
// Imports, module lockstep_v1 (raw)
// ---------------------------------------------------------------------------------

@external("lockstep_v1", "send")
export declare function lockstep_send(destPtr: usize, destLen: i32, payloadPtr: usize, payloadLen: i32): i32;

@external("lockstep_v1", "log")
export declare function lockstep_log(level: i32, ptr: usize, len: i32): i32;

@external("lockstep_v1", "tick")
export declare function lockstep_tick(): i64;

@external("lockstep_v1", "random")
export declare function lockstep_random(ptr: usize, len: i32): i32;

@external("lockstep_v1", "infer")
export declare function lockstep_infer(modelPtr: usize, modelLen: i32, inputPtr: usize, inputLen: i32): i64;

// ---------------------------------------------------------------------------------
// agent_alloc: one scratch block, reused by every call (a host buffer lives only for
// the call it is passed to) and replaced by a bigger one when a buffer does not fit.
// ---------------------------------------------------------------------------------

let scratchPtr: usize = 0;
let scratchCap: usize = 0;

export function agent_alloc(size: i32): i32 {
  if (size < 0) return -1;
  if (scratchPtr == 0 || <usize>size > scratchCap) {
    let cap: usize = scratchCap > 0 ? scratchCap : 1024;
    while (cap < <usize>size) cap <<= 1;
    if (scratchPtr != 0) heap.free(scratchPtr);
    scratchPtr = heap.alloc(cap);
    scratchCap = cap;
  }
  return <i32>scratchPtr;
}

// ---------------------------------------------------------------------------------
// abort: the runtime's failure hook (asserts, bounds checks, out of memory) and the
// agent's own abort(message). It logs "abort: <message>" (plus " at
// <file>:<line>:<column>" when the runtime says where) at error level and traps, which faults
// the agent. It formats into a static buffer, never the heap, which may be the thing
// that failed.
// ---------------------------------------------------------------------------------

const ABORT_BUF_SIZE: usize = 512;
const abortBuf: usize = memory.data(<i32>ABORT_BUF_SIZE);

function abortPut(at: usize, s: string | null): usize {
  if (s === null) return at;
  const str = changetype<string>(s);
  for (let i = 0; i < str.length && at < ABORT_BUF_SIZE; i++) {
    const c = str.charCodeAt(i);
    store<u8>(abortBuf + at, c >= 0x20 && c < 0x7f ? <u8>c : 0x3f); // ASCII, else '?'
    at++;
  }
  return at;
}

function abortPutU32(at: usize, v: u32): usize {
  let div: u32 = 1000000000;
  let started = false;
  while (div > 0) {
    const d = (v / div) % 10;
    if (d != 0 || started || div == 1) {
      if (at < ABORT_BUF_SIZE) store<u8>(abortBuf + at, <u8>(0x30 + d));
      at++;
      started = true;
    }
    div /= 10;
  }
  return at;
}

export function lsAbort(
  message: string | null = null, fileName: string | null = null, line: u32 = 0, column: u32 = 0,
): void {
  let at: usize = 0;
  at = abortPut(at, "abort: ");
  at = abortPut(at, message);
  if (fileName !== null) { // the runtime's own checks say where; a plain abort() does not
    at = abortPut(at, " at ");
    at = abortPut(at, fileName);
    at = abortPut(at, ":");
    at = abortPutU32(at, line);
    at = abortPut(at, ":");
    at = abortPutU32(at, column);
  }
  if (at > ABORT_BUF_SIZE) at = ABORT_BUF_SIZE;
  lockstep_log(LOG_ERROR, abortBuf, <i32>at);
  unreachable();
}

// ---------------------------------------------------------------------------------
// Little-endian loads (wasm memory is little-endian, loads may be unaligned)
// ---------------------------------------------------------------------------------

function utf8At(ptr: usize, len: u32): string {
  return len == 0 ? "" : String.UTF8.decodeUnsafe(ptr, len);
}

function bytesAt(ptr: usize, len: u32): Uint8Array {
  const out = new Uint8Array(<i32>len);
  if (len > 0) memory.copy(out.dataStart, ptr, len);
  return out;
}

// ---------------------------------------------------------------------------------
// Spawn arguments: "key=value" tokens separated by spaces, tabs, newlines or commas
// (the examples' convention; args are opaque bytes to the host).
// ---------------------------------------------------------------------------------

function isArgSep(c: i32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d || c == 0x2c;
}

/** The value of `key` in `args` (the last one wins), or null. */
export function argValue(args: string, key: string): string | null {
  let found: string | null = null;
  let i = 0;
  const n = args.length;
  while (i < n) {
    while (i < n && isArgSep(args.charCodeAt(i))) i++;
    const start = i;
    while (i < n && !isArgSep(args.charCodeAt(i))) i++;
    const klen = key.length;
    if (i - start > klen && args.charCodeAt(start + klen) == 0x3d && args.substring(start, start + klen) == key) {
      found = args.substring(start + klen + 1, i);
    }
  }
  return found;
}

/** Parses an unsigned decimal (digits only, 1 to 19 of them); -1 when it is not one. */
export function parseU64(s: string): i64 {
  const n = s.length;
  if (n == 0 || n > 19) return -1;
  let v: u64 = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + <u64>(c - 0x30);
  }
  return <i64>v;
}

/** The unsigned number under `key`, or `dflt` when absent or not a number. */
export function argU64(args: string, key: string, dflt: u64): u64 {
  const v = argValue(args, key);
  if (v === null) return dflt;
  const n = parseU64(changetype<string>(v));
  return n < 0 ? dflt : <u64>n;
}

// ---------------------------------------------------------------------------------
// Host buffers
// ---------------------------------------------------------------------------------

/** The context given to agent_step. */
export class Context {
  abiVersion: u16 = 0;
  tick: i64 = 0;
  /** Messages delivered to me this tick. */
  messageCount: u32 = 0;
  /** My agent name. */
  name: string = "";
  /** The spawn arguments, decoded as UTF-8. */
  args: string = "";

  /** Parses the context buffer at `ptr`; aborts (faults the agent) on bad lengths. */
  static read(ptr: i32): Context {
    const p = <usize>ptr;
    const total = load<u32>(p);
    const n = <u32>load<u16>(p, 6);
    const a = load<u32>(p, 20);
    if (total < CONTEXT_HEADER_SIZE || <u64>CONTEXT_HEADER_SIZE + n + a != <u64>total) {
      abort("bad context buffer");
    }
    const ctx = new Context();
    ctx.abiVersion = load<u16>(p, 4);
    ctx.tick = load<i64>(p, 8);
    ctx.messageCount = load<u32>(p, 16);
    ctx.name = utf8At(p + CONTEXT_HEADER_SIZE, n);
    ctx.args = utf8At(p + CONTEXT_HEADER_SIZE + n, a);
    return ctx;
  }

  /** The value of spawn argument `key`, or null. */
  arg(key: string): string | null {
    return argValue(this.args, key);
  }

  /** The unsigned number under spawn argument `key`, or `dflt`. */
  argU64(key: string, dflt: u64): u64 {
    return argU64(this.args, key, dflt);
  }
}

/** One message record. */
export class Message {
  kind: u8 = 0;
  sentTick: i64 = 0;
  /** The request id for KIND_INFER_*, otherwise 0. */
  correlation: i64 = 0;
  /** Agent name; empty if external; the model name for inference results. */
  sender: string = "";
  /** The destination as the sender wrote it: my name, "*" or "#topic". */
  dest: string = "";
  payload: Uint8Array = new Uint8Array(0);

  /** Parses the message record at `ptr`; aborts (faults the agent) on bad lengths. */
  static read(ptr: i32): Message {
    const p = <usize>ptr;
    const total = load<u32>(p);
    const s = <u32>load<u16>(p, 6);
    const pl = load<u32>(p, 24);
    const d = <u32>load<u16>(p, 28);
    if (total < MESSAGE_HEADER_SIZE || <u64>MESSAGE_HEADER_SIZE + s + d + pl != <u64>total) {
      abort("bad message record");
    }
    const m = new Message();
    m.kind = load<u8>(p, 4);
    m.sentTick = load<i64>(p, 8);
    m.correlation = load<i64>(p, 16);
    m.sender = utf8At(p + MESSAGE_HEADER_SIZE, s);
    m.dest = utf8At(p + MESSAGE_HEADER_SIZE + s, d);
    m.payload = bytesAt(p + MESSAGE_HEADER_SIZE + s + d, pl);
    return m;
  }

  /** The payload decoded as UTF-8. */
  text(): string {
    return this.payload.length == 0 ? "" : String.UTF8.decodeUnsafe(this.payload.dataStart, this.payload.length);
  }
}

/**
 * Delivers the records of a batch buffer to `receive` (normally the agent's own
 * agent_receive) in order, stopping at the first negative result and returning it:
 * the same results as the host calling agent_receive once per message.
 */
export function receiveBatch(batchPtr: i32, receive: (messagePtr: i32) => i32): i32 {
  const p = <usize>batchPtr;
  const total = load<u32>(p);
  if (total < BATCH_HEADER_SIZE) return ERR_BAD_ARG;
  const end = p + total;
  let remaining = load<u32>(p, 4);
  let at = p + BATCH_HEADER_SIZE;
  while (remaining > 0) {
    if (end - at < MESSAGE_HEADER_SIZE) return ERR_BAD_ARG;
    const len = load<u32>(at);
    if (len < MESSAGE_HEADER_SIZE || <usize>len > end - at) return ERR_BAD_ARG;
    const rc = receive(<i32>at);
    if (rc < 0) return rc;
    at += len;
    remaining--;
  }
  return OK;
}

// ---------------------------------------------------------------------------------
// Host calls
// ---------------------------------------------------------------------------------

/** Sends `payload` bytes to `dest` (an agent name, "*" or "#topic"); 0 queued, < 0 refused. */
export function sendBytes(dest: string, payload: Uint8Array): i32 {
  const d = String.UTF8.encode(dest);
  return lockstep_send(changetype<usize>(d), d.byteLength, payload.dataStart, payload.length);
}

/** Sends the UTF-8 text `payload` to `dest`; 0 queued for tick t+1, < 0 refused. */
export function send(dest: string, payload: string): i32 {
  const d = String.UTF8.encode(dest);
  const b = String.UTF8.encode(payload);
  return lockstep_send(changetype<usize>(d), d.byteLength, changetype<usize>(b), b.byteLength);
}

export function subscribe(topic: string): i32 {
  return send("$subscribe", topic);
}

export function unsubscribe(topic: string): i32 {
  return send("$unsubscribe", topic);
}

/** Appends a line to the run's log at level LOG_*. */
export function log(level: i32, text: string): i32 {
  const b = String.UTF8.encode(text);
  return lockstep_log(level, changetype<usize>(b), b.byteLength);
}

// Observations (docs/abi.md, "Observations"): named numeric values reported per step, one
// log line at the reserved level LOG_OBSERVE with "key=value" tokens separated by spaces
// (integers in decimal, f64 as "x" + the 16 hex digits of its IEEE-754 bits: exact). A
// pool that does not accept level 5 yet refuses the line with ERR_BAD_ARG.
export const LOG_OBSERVE: i32 = 5;

function hex64(v: u64): string {
  let out = "";
  for (let i = 15; i >= 0; i--) {
    const d = <i32>((v >> (<u64>i * 4)) & 15);
    out += String.fromCharCode(d < 10 ? 48 + d : 87 + d);
  }
  return out;
}

/** Builds one observation line of several values: new Observation().f64("w", w).emit(). */
export class Observation {
  text: string = "";

  private key(key: string): void {
    if (this.text.length > 0) this.text += " ";
    this.text += key + "=";
  }

  /** Adds key=<f64> (exact bits). */
  f64(key: string, value: f64): Observation {
    this.key(key);
    this.text += "x" + hex64(reinterpret<u64>(value));
    return this;
  }

  /** Adds key=<integer>. */
  i64(key: string, value: i64): Observation {
    this.key(key);
    this.text += value.toString();
    return this;
  }

  /** Reports the line; 0 recorded, < 0 refused. */
  emit(): i32 {
    return log(LOG_OBSERVE, this.text);
  }
}

/** Reports one named value (f64, exact): observe("wealth", <f64>wealth). */
export function observe(key: string, value: f64): i32 {
  return new Observation().f64(key, value).emit();
}

/** Reports one named integer value. */
export function observeInt(key: string, value: i64): i32 {
  return new Observation().i64(key, value).emit();
}

/** The current logical tick. */
export function tick(): i64 {
  return lockstep_tick();
}

/** `n` bytes of my deterministic random stream (aborts if the host refuses). */
export function randomBytes(n: i32): Uint8Array {
  const out = new Uint8Array(n);
  if (n > 0 && lockstep_random(out.dataStart, n) != 0) abort("random refused");
  return out;
}

/** The next 8 bytes of my random stream as a little-endian u64 (0 if refused). */
export function randomU64(): u64 {
  const buf = memory.data(8);
  if (lockstep_random(buf, 8) != 0) return 0;
  return load<u64>(buf);
}

/**
 * A uniform number in [0, n) by rejection sampling on randomU64: draws x until
 * x >= (2^64 - n) mod n, returns x mod n, or 0 if the host refuses (same algorithm as
 * the C SDK).
 */
export function randomBelow(n: u64): u64 {
  if (n <= 1) return 0;
  const threshold = (0 - n) % n;
  const buf = memory.data(8);
  while (true) {
    if (lockstep_random(buf, 8) != 0) return 0; // refused: do not spin
    const x = load<u64>(buf);
    if (x >= threshold) return x % n;
  }
  return 0;
}

/**
 * Asks `model` for an inference on `input` bytes. > 0 a request id: the result arrives
 * as a message of kind KIND_INFER_RESULT (or _ERROR) with that correlation at t+L.
 */
export function inferBytes(model: string, input: Uint8Array): i64 {
  const m = String.UTF8.encode(model);
  return lockstep_infer(changetype<usize>(m), m.byteLength, input.dataStart, input.length);
}

/** inferBytes with a UTF-8 text prompt. */
export function infer(model: string, prompt: string): i64 {
  const m = String.UTF8.encode(model);
  const b = String.UTF8.encode(prompt);
  return lockstep_infer(changetype<usize>(m), m.byteLength, changetype<usize>(b), b.byteLength);
}

// ---------------------------------------------------------------------------------
// Chat requests for llm models (e.g. "smollm2"; docs/inference.md "Agent calls")
// ---------------------------------------------------------------------------------

const HEX = "0123456789abcdef";

/** s as a JSON string literal (quotes, backslashes and control characters escaped). */
export function jsonString(s: string): string {
  let out = "\"";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c < 0x20) out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
    else out += String.fromCharCode(c);
  }
  return out + "\"";
}

/** A chat request: {"messages": [{"role", "content"}...], "max_tokens", "temperature"}.
 *  maxTokens 0 = the service's default; temperatureMilli in thousandths (700 = 0.7),
 *  -1 = the service's default, 0 = greedy. */
export class ChatRequest {
  private messages: string[] = [];
  maxTokens: u32 = 0;
  temperatureMilli: i32 = -1;

  /** Adds a message; role is "system", "user" or "assistant". */
  add(role: string, content: string): ChatRequest {
    this.messages.push("{\"role\":" + jsonString(role) + ",\"content\":" + jsonString(content) + "}");
    return this;
  }

  toJSON(): string {
    let out = "{\"messages\":[" + this.messages.join(",") + "]";
    if (this.maxTokens) out += ",\"max_tokens\":" + this.maxTokens.toString();
    if (this.temperatureMilli >= 0) {
      const t = <u32>this.temperatureMilli;
      const frac = (t % 1000).toString();
      out += ",\"temperature\":" + (t / 1000).toString() + "." + "000".slice(frac.length) + frac;
    }
    return out + "}";
  }
}

/** Sends a chat request to an llm model: > 0 request id (the reply's correlation), < 0 refused. */
export function chat(model: string, request: ChatRequest): i64 {
  return infer(model, request.toJSON());
}

/** The reply text of an inference result message (kind KIND_INFER_RESULT), else null. */
export function chatReply(m: Message): string | null {
  if (m.kind != KIND_INFER_RESULT) return null;
  return m.text();
}
