/**
 * A restricted unpickler: it builds plain data (numbers, strings, bytes, lists/tuples as arrays,
 * dicts as `Map`s) and nothing else. A GLOBAL opcode goes through the caller's allow-list, which
 * either returns a {@link PyGlobal} (optionally with a TypeScript implementation) or throws;
 * REDUCE / NEWOBJ only ever call those TypeScript implementations. Nothing in a pickle can run
 * code. Opcodes: protocols 2–5 as torch.save writes them, plus the binary opcodes of protocol 1.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** A Python global that the allow-list admitted; `call` implements it when it may be called. */
export class PyGlobal {
  /** A global `module.name`, callable through `call` if given. */
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call?: (args: unknown[]) => unknown,
  ) {}
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Thrown when the bytes end inside a pickle, so a caller holding a prefix may read more. */
export class PickleTruncatedError extends WebcapError {
  /** A BAD_PICKLE error for a pickle that runs past the given bytes. */
  constructor(source: string, at: number) {
    super(
      "BAD_PICKLE",
      `${source}: pickle data ends unexpectedly at byte ${at}; the file is truncated`,
    );
  }
}

/** What the unpickler may resolve. */
export interface UnpickleOptions {
  /** File name for error messages. */
  source: string;
  /** The allow-list: a PyGlobal for `module.name`, or a thrown WebcapError UNSAFE_PICKLE. */
  findGlobal(module: string, name: string): PyGlobal;
  /** Resolve a persistent id (BINPERSID); without it persistent ids are an error. */
  persistentLoad?(pid: unknown): unknown;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

class Machine {
  pos: number;
  readonly stack: unknown[] = [];
  readonly marks: number[] = [];
  readonly memo = new Map<number, unknown>();
  readonly view: DataView;

  constructor(readonly bytes: Uint8Array, start: number, readonly opts: UnpickleOptions) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(what: string, at = this.pos): WebcapError {
    return new WebcapError(
      "BAD_PICKLE",
      `${this.opts.source}: ${what} at byte ${at}; the checkpoint is corrupt`,
    );
  }

  take(n: number): number {
    const at = this.pos;
    if (n < 0 || at + n > this.bytes.length) {
      throw new PickleTruncatedError(this.opts.source, this.bytes.length);
    }
    this.pos += n;
    return at;
  }

  u8 = () => this.bytes[this.take(1)];
  u16 = () => this.view.getUint16(this.take(2), true);
  u32 = () => this.view.getUint32(this.take(4), true);
  i32 = () => this.view.getInt32(this.take(4), true);
  u64(): number {
    const at = this.take(8);
    const v = this.view.getUint32(at + 4, true) * 2 ** 32 + this.view.getUint32(at, true);
    if (!Number.isSafeInteger(v)) throw this.fail(`length ${v} too large`, at);
    return v;
  }
  raw(n: number): Uint8Array {
    const at = this.take(n);
    return this.bytes.subarray(at, at + n);
  }
  str(n: number, decoder = utf8): string {
    const at = this.pos;
    try {
      return decoder.decode(this.raw(n));
    } catch (e) {
      if (e instanceof WebcapError) throw e;
      throw this.fail("invalid UTF-8 string", at);
    }
  }
  line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleTruncatedError(this.opts.source, this.bytes.length);
    return this.str(end - this.pos + 1).slice(0, -1);
  }
  /** Little-endian two's-complement integer of n bytes (LONG1 / LONG4). */
  long(n: number): number | bigint {
    const b = this.raw(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  }

  push = (v: unknown) => void this.stack.push(v);
  pop(): unknown {
    return this.popN(1)[0];
  }
  /** The top n values, deepest first; never reaching below the innermost MARK. */
  popN(n: number): unknown[] {
    if (this.stack.length - n < (this.marks.at(-1) ?? 0)) {
      throw this.fail("stack underflow", this.pos - 1);
    }
    return this.stack.splice(this.stack.length - n);
  }
  top(): unknown {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) {
      throw this.fail("stack underflow", this.pos - 1);
    }
    return this.stack[this.stack.length - 1];
  }
  popMark(): unknown[] {
    const mark = this.marks.pop();
    if (mark === undefined) throw this.fail("no MARK on the stack", this.pos - 1);
    return this.stack.splice(mark);
  }
  memoGet(i: number): unknown {
    if (!this.memo.has(i)) throw this.fail(`memo entry ${i} was never stored`, this.pos - 1);
    return this.memo.get(i);
  }
  memoPut = (i: number) => void this.memo.set(i, this.top());

  /** SETITEM(S) into the dict on top of the stack (after the items were popped). */
  addItems(items: unknown[]): void {
    const d = this.top();
    if (!(d instanceof Map)) throw this.fail("SETITEM on a non-dict", this.pos - 1);
    this.fillMap(d, items);
  }
  fillMap(d: Map<unknown, unknown>, items: unknown[]): Map<unknown, unknown> {
    if (items.length % 2 !== 0) throw this.fail("odd number of dict items", this.pos - 1);
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
    return d;
  }
  /** APPEND(S) onto the list on top of the stack (after the items were popped). */
  appendAll(items: unknown[]): void {
    const list = this.top();
    if (!Array.isArray(list)) throw this.fail("APPEND on a non-list", this.pos - 1);
    for (const item of items) list.push(item);
  }
  /** BUILD sets an object's state; state (e.g. a state dict's `_metadata`) is dropped. */
  build(): void {
    this.pop();
    this.top();
  }

  global(module: string, name: string): PyGlobal {
    return this.opts.findGlobal(module, name);
  }
  stackGlobal(): PyGlobal {
    const [module, name] = this.popN(2);
    if (typeof module !== "string" || typeof name !== "string") {
      throw this.fail("STACK_GLOBAL needs two strings", this.pos - 1);
    }
    return this.global(module, name);
  }
  /** REDUCE / NEWOBJ: only allow-listed globals with a TypeScript implementation run. */
  call([fn, args]: unknown[]): unknown {
    if (!(fn instanceof PyGlobal)) {
      throw this.fail("REDUCE on something that is not a global", this.pos - 1);
    }
    if (!fn.call) {
      throw new WebcapError(
        "UNSAFE_PICKLE",
        `${this.opts.source}: the pickle calls ${fn.qualified}, which webcap does not allow to be called`,
      );
    }
    if (!Array.isArray(args)) {
      throw this.fail(`arguments of ${fn.qualified} are not a tuple`, this.pos - 1);
    }
    return fn.call(args);
  }
  persistent(pid: unknown): unknown {
    if (!this.opts.persistentLoad) throw this.fail("unexpected persistent id", this.pos - 1);
    return this.opts.persistentLoad(pid);
  }
}

const STOP = 0x2e;

/** The opcodes understood, each as a step of the machine (STOP ends the loop instead). */
const OPCODES = new Map<number, (m: Machine) => void>([
  [0x80, (m) => void m.u8()], // PROTO
  [0x95, (m) => void m.u64()], // FRAME: framing only, the data follows inline
  [0x28, (m) => void m.marks.push(m.stack.length)], // MARK
  [0x30, (m) => void m.pop()], // POP
  [0x31, (m) => void m.popMark()], // POP_MARK
  [0x32, (m) => m.push(m.top())], // DUP
  [0x4e, (m) => m.push(null)], // NONE
  [0x88, (m) => m.push(true)], // NEWTRUE
  [0x89, (m) => m.push(false)], // NEWFALSE
  [0x4b, (m) => m.push(m.u8())], // BININT1
  [0x4d, (m) => m.push(m.u16())], // BININT2
  [0x4a, (m) => m.push(m.i32())], // BININT
  [0x8a, (m) => m.push(m.long(m.u8()))], // LONG1
  [0x8b, (m) => m.push(m.long(m.u32()))], // LONG4
  [0x47, (m) => m.push(m.view.getFloat64(m.take(8), false))], // BINFLOAT (big-endian)
  [0x58, (m) => m.push(m.str(m.u32()))], // BINUNICODE
  [0x8c, (m) => m.push(m.str(m.u8()))], // SHORT_BINUNICODE
  [0x8d, (m) => m.push(m.str(m.u64()))], // BINUNICODE8
  [0x54, (m) => m.push(m.str(m.u32(), latin1))], // BINSTRING (a Python 2 str)
  [0x55, (m) => m.push(m.str(m.u8(), latin1))], // SHORT_BINSTRING
  [0x42, (m) => m.push(m.raw(m.u32()).slice())], // BINBYTES
  [0x43, (m) => m.push(m.raw(m.u8()).slice())], // SHORT_BINBYTES
  [0x8e, (m) => m.push(m.raw(m.u64()).slice())], // BINBYTES8
  [0x7d, (m) => m.push(new Map())], // EMPTY_DICT
  [0x5d, (m) => m.push([])], // EMPTY_LIST
  [0x29, (m) => m.push([])], // EMPTY_TUPLE
  [0x64, (m) => m.push(m.fillMap(new Map(), m.popMark()))], // DICT
  [0x6c, (m) => m.push(m.popMark())], // LIST
  [0x74, (m) => m.push(m.popMark())], // TUPLE
  [0x85, (m) => m.push(m.popN(1))], // TUPLE1
  [0x86, (m) => m.push(m.popN(2))], // TUPLE2
  [0x87, (m) => m.push(m.popN(3))], // TUPLE3
  [0x73, (m) => m.addItems(m.popN(2))], // SETITEM
  [0x75, (m) => m.addItems(m.popMark())], // SETITEMS
  [0x61, (m) => m.appendAll(m.popN(1))], // APPEND
  [0x65, (m) => m.appendAll(m.popMark())], // APPENDS
  [0x71, (m) => m.memoPut(m.u8())], // BINPUT
  [0x72, (m) => m.memoPut(m.u32())], // LONG_BINPUT
  [0x94, (m) => m.memoPut(m.memo.size)], // MEMOIZE
  [0x68, (m) => m.push(m.memoGet(m.u8()))], // BINGET
  [0x6a, (m) => m.push(m.memoGet(m.u32()))], // LONG_BINGET
  [0x63, (m) => m.push(m.global(m.line(), m.line()))], // GLOBAL
  [0x93, (m) => m.push(m.stackGlobal())], // STACK_GLOBAL
  [0x52, (m) => m.push(m.call(m.popN(2)))], // REDUCE
  [0x81, (m) => m.push(m.call(m.popN(2)))], // NEWOBJ
  [0x62, (m) => m.build()], // BUILD
  [0x51, (m) => m.push(m.persistent(m.pop()))], // BINPERSID
]);

/**
 * Unpickle one pickle starting at `start`.
 * @returns the value and the offset just past its STOP opcode.
 * @throws WebcapError UNSAFE_PICKLE from the allow-list, BAD_PICKLE for malformed data
 * ({@link PickleTruncatedError} when the bytes end first).
 */
export function unpickle(
  bytes: Uint8Array,
  start: number,
  opts: UnpickleOptions,
): { value: unknown; end: number } {
  const m = new Machine(bytes, start, opts);
  for (let op = m.u8(); op !== STOP; op = m.u8()) {
    const run = OPCODES.get(op);
    if (!run) {
      throw m.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")}`, m.pos - 1);
    }
    run(m);
  }
  if (m.stack.length !== 1 || m.marks.length !== 0) {
    throw m.fail("pickle does not end with exactly one value");
  }
  return { value: m.stack[0], end: m.pos };
}
