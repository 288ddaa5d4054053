/**
 * A restricted reader of Python pickles: it understands the data opcodes (numbers, strings, bytes,
 * tuples, lists, dicts, memo) and lets the caller give meaning to a short allow-list of globals and
 * to persistent ids. It never runs anything the file names: a global outside the allow-list, or any
 * opcode that builds arbitrary objects (INST, OBJ, NEWOBJ, EXT*, text PERSID), is an E_WEIGHTS
 * naming it. Used for PyTorch's `pytorch_model.bin` (lib/checkpoint/torch_bin.ts).
 *
 * @example
 *   const value = readPickle(bytes, {
 *     source: 'model.bin',
 *     globals: { 'collections.OrderedDict': { call: () => new Map() } },
 *     persistentLoad: (pid) => { throw new Error('none here'); },
 *   });
 *
 * Values: None -> null, bool, int -> number (bigint past 2^53), float, str -> string,
 * bytes -> Buffer, tuple and list -> array, dict -> Map, an allowed global -> PickleGlobal, and
 * whatever the allowed callables and persistentLoad return.
 */
import { SimbaError } from '../errors';

/** A global the pickle named (module and qualified name), after it passed the allow-list. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What an allowed global does: `call` is REDUCE on it (args: the tuple), `build` is BUILD on its result. */
export interface AllowedGlobal {
  call?: (args: unknown[]) => unknown;
  build?: (obj: unknown, state: unknown) => unknown;
}

export interface PickleOptions {
  /** Where the bytes come from, for error messages. */
  source: string;
  /** Allowed globals by 'module.name'; every other global is refused. */
  globals: Readonly<Record<string, AllowedGlobal>>;
  /** BINPERSID: the persistent id (usually a tuple) -> the object it stands for. */
  persistentLoad?: (pid: unknown) => unknown;
}

/** Opcode names, for messages (Python's pickletools names). */
const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Longest LONG1 integer we read (bytes): torch writes none; 8 covers any int64. */
const MAX_LONG_BYTES = 8;

const MARK = Symbol('mark');

function opName(op: number): string {
  return `${OPCODE_NAMES[op] ?? 'unknown opcode'} (0x${op.toString(16).padStart(2, '0')})`;
}

/**
 * Read one pickle from `bytes` (up to its STOP) and return the value it builds. Throws
 * E_WEIGHTS naming the offset and opcode for anything outside the restricted set, a global
 * outside `opts.globals`, or malformed data.
 */
export function readPickle(bytes: Uint8Array, opts: PickleOptions): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (at: number, msg: string): never => {
    throw new SimbaError('E_WEIGHTS', `${opts.source}: pickle at byte ${at}: ${msg}`);
  };
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let at = 0;

  const need = (n: number): number => {
    if (n < 0 || pos + n > buf.length) fail(at, `truncated: ${opName(buf[at])} needs ${n} more bytes at ${pos}`);
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = () => buf[need(1)];
  const u16 = () => buf.readUInt16LE(need(2));
  const u32 = () => buf.readUInt32LE(need(4));
  const u64 = (): number => {
    const v = buf.readBigUInt64LE(need(8));
    if (v > BigInt(buf.length)) fail(at, `length ${v} exceeds the pickle's ${buf.length} bytes`);
    return Number(v);
  };
  const text = (n: number): string => {
    const p = need(n);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(p, p + n));
    } catch {
      return fail(at, `${opName(buf[at])}: string is not valid UTF-8`);
    }
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail(at, `${opName(buf[at])}: unterminated line`);
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail(at, `${opName(buf[at])} on an empty stack`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail(at, `${opName(buf[at])} on an empty stack`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = stack.lastIndexOf(MARK);
    if (m < 0) fail(at, `${opName(buf[at])} without a MARK`);
    const items = stack.splice(m);
    items.shift();
    return items;
  };
  const global = (module: string, name: string): PickleGlobal => {
    const key = `${module}.${name}`;
    if (!Object.hasOwn(opts.globals, key)) {
      fail(
        at,
        `global '${key}' is not allowed: loading a file never runs code, and only these globals are understood: ${Object.keys(opts.globals).join(', ')}`,
      );
    }
    return new PickleGlobal(module, name);
  };
  const asDict = (v: unknown, what: string): Map<unknown, unknown> => {
    if (!(v instanceof Map)) fail(at, `${what} on a ${describe(v)}, not a dict`);
    return v as Map<unknown, unknown>;
  };
  const asList = (v: unknown, what: string): unknown[] => {
    if (!Array.isArray(v)) fail(at, `${what} on a ${describe(v)}, not a list`);
    return v as unknown[];
  };
  const dictKey = (k: unknown): unknown => {
    if (typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean' || k === null) return k;
    return fail(at, `dict key of type ${describe(k)} (only str, int, bool and None keys are read)`);
  };

  while (true) {
    if (pos >= buf.length) fail(pos, 'ended without STOP');
    at = pos;
    const op = buf[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(at, `protocol ${buf[at + 1]} is newer than 5`);
        break;
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(at, `STOP with ${stack.length} values on the stack (expected 1)`);
        return stack[0];
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(buf.readInt32LE(need(4)));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: n little-endian two's-complement bytes
        const n = u8();
        if (n > MAX_LONG_BYTES) fail(at, `LONG1 of ${n} bytes (at most ${MAX_LONG_BYTES} are read)`);
        const p = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]);
        if (n > 0 && buf[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        stack.push(buf.readDoubleBE(need(8)));
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x42: {
        // BINBYTES
        const n = u32();
        const p = need(n);
        stack.push(Buffer.from(buf.subarray(p, p + n)));
        break;
      }
      case 0x43: {
        // SHORT_BINBYTES
        const n = u8();
        const p = need(n);
        stack.push(Buffer.from(buf.subarray(p, p + n)));
        break;
      }
      case 0x8e: {
        // BINBYTES8
        const n = u64();
        const p = need(n);
        stack.push(Buffer.from(buf.subarray(p, p + n)));
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        asList(top(), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        asList(top(), 'APPENDS').push(...items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2) fail(at, 'DICT with an odd number of items');
        const d = new Map<unknown, unknown>();
        for (let i = 0; i < items.length; i += 2) d.set(dictKey(items[i]), items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        asDict(top(), 'SETITEM').set(dictKey(k), v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) fail(at, 'SETITEMS with an odd number of items');
        const d = asDict(top(), 'SETITEMS');
        for (let i = 0; i < items.length; i += 2) d.set(dictKey(items[i]), items[i + 1]);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(at, `${opName(op)} of memo slot ${i}, which was never set`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(at, 'STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE: callable(*args)
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) fail(at, `REDUCE on a ${describe(fn)}, not an allowed global`);
        const g = fn as PickleGlobal;
        const call = opts.globals[g.path].call;
        if (!call) fail(at, `global '${g.path}' is allowed as a name only, not as something to call`);
        if (!Array.isArray(args)) fail(at, `REDUCE of '${g.path}' with ${describe(args)} arguments, not a tuple`);
        stack.push(callAllowed(call!, args as unknown[], g.path, (m) => fail(at, m)));
        break;
      }
      case 0x62: {
        // BUILD: obj.__setstate__(state), only where the global that made obj allows it
        const state = pop();
        const obj = top();
        const maker = BUILT_BY.get(obj as object);
        const build = maker ? opts.globals[maker].build : undefined;
        if (!build) fail(at, `BUILD on a ${describe(obj)} (only objects of an allowed global that accepts state)`);
        stack[stack.length - 1] = build!(obj, state);
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        const load = opts.persistentLoad;
        if (!load) fail(at, 'BINPERSID, but this file type has no persistent objects');
        stack.push(
          callAllowed(
            () => load!(pid),
            [pid],
            'persistent id',
            (m) => fail(at, m),
          ),
        );
        break;
      }
      default:
        fail(at, `${opName(op)} is not allowed: only plain data, the allowed globals and persistent ids are read`);
    }
  }
}

/** Which allowed global made an object (for BUILD). */
const BUILT_BY = new WeakMap<object, string>();

function callAllowed(call: (args: unknown[]) => unknown, args: unknown[], path: string, fail: (m: string) => never): unknown {
  let v: unknown;
  try {
    v = call(args);
  } catch (e) {
    if (e instanceof SimbaError) throw e;
    return fail(`${path}${describeArgs(args)}: ${(e as Error).message}`);
  }
  if (v !== null && typeof v === 'object') BUILT_BY.set(v, path);
  return v;
}

function describeArgs(args: unknown[]): string {
  return `(${args.map(describe).join(', ')})`;
}

/** A short type name of a pickle value, for messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v === MARK) return 'MARK';
  if (Array.isArray(v)) return `tuple/list of ${v.length}`;
  if (v instanceof Map) return `dict of ${v.size}`;
  if (Buffer.isBuffer(v)) return `bytes of ${v.length}`;
  if (v instanceof PickleGlobal) return `global '${v.path}'`;
  if (typeof v === 'string') return `str '${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return `${typeof v} ${String(v)}`;
}
