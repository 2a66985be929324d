/**
 * torch.save checkpoints without Python: the zip format (torch ≥ 1.6: `<name>/data.pkl` plus one
 * `<name>/data/<key>` entry per storage) and the legacy format (pickles of the magic number,
 * protocol and sys info, then the main pickle, the storage key list and the raw storages, each
 * prefixed by its int64 element count). The main pickle goes through the restricted unpickler
 * with an allow-list of state-dict types only; tensors become views on storages, read per
 * tensor (strided views are made contiguous).
 * @module
 */
import { WebcapError } from "../errors.ts";
import { type Dtype, DTYPE_BYTES, numelOf } from "./dtype.ts";
import { type ByteSource, makeStore, openSource, type StoredTensor } from "./tensor_source.ts";
import { PickleTruncatedError, PyGlobal, unpickle } from "./unpickler.ts";
import type { WeightStore } from "./weights.ts";
import { isZip, readZipDirectory, readZipEntry, type ZipEntry } from "./zip.ts";

/** A storage named by a persistent id: `numel` elements of `dtype` from element `elemOffset` of `key`. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: Dtype,
    readonly numel: number,
    readonly elemOffset: number,
  ) {}
}

/** A tensor rebuilt by `_rebuild_tensor_v2`: a strided view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

const STORAGE_DTYPES: Readonly<Record<string, Dtype>> = {
  DoubleStorage: "F64",
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

/** The legacy format's first pickle. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

const isIndex = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isIndexList = (v: unknown): v is number[] => Array.isArray(v) && v.every(isIndex);

function badPickle(source: string, what: string): WebcapError {
  return new WebcapError("BAD_PICKLE", `${source}: ${what}`);
}

function rebuildTensor(source: string, args: unknown[]): TensorRef {
  const [storage, offset, shape, stride] = args;
  if (
    !(storage instanceof StorageRef) || !isIndex(offset) || !isIndexList(shape) ||
    !isIndexList(stride)
  ) {
    throw badPickle(source, "_rebuild_tensor arguments are not (storage, offset, size, stride)");
  }
  if (shape.length !== stride.length) {
    throw badPickle(source, `tensor size ${shape} and stride ${stride} differ in rank`);
  }
  if (!Number.isSafeInteger(numelOf(shape) * DTYPE_BYTES[storage.dtype])) {
    throw badPickle(source, `tensor size [${shape}] is too large`);
  }
  const last = offset + shape.reduce((s, d, i) => s + (d - 1) * stride[i], 0);
  if (numelOf(shape) > 0 && last >= storage.numel) {
    throw badPickle(
      source,
      `tensor of size [${shape}] stride [${stride}] offset ${offset} reaches element ${last} of a ${storage.numel}-element storage`,
    );
  }
  return new TensorRef(storage, offset, shape, stride);
}

/** `_rebuild_from_type_v2(func, new_type, args, state)` for plain tensors and parameters. */
function rebuildFromType(source: string, args: unknown[]): unknown {
  const [func, type, inner] = args;
  const plain = ["torch.Tensor", "torch.nn.parameter.Parameter"];
  if (
    !(func instanceof PyGlobal) || !func.call || !(type instanceof PyGlobal) ||
    !plain.includes(type.qualified)
  ) {
    throw badPickle(
      source,
      "_rebuild_from_type_v2 is only supported for torch.Tensor and Parameter",
    );
  }
  if (!Array.isArray(inner)) {
    throw badPickle(source, "_rebuild_from_type_v2 arguments are not a tuple");
  }
  return func.call(inner);
}

function orderedDict(args: unknown[]): Map<unknown, unknown> {
  const out = new Map<unknown, unknown>();
  for (const pair of Array.isArray(args[0]) ? args[0] : []) {
    if (Array.isArray(pair) && pair.length === 2) out.set(pair[0], pair[1]);
  }
  return out;
}

/** The allow-list: the only globals a checkpoint may name, with their TS implementations. */
function allowList(source: string): (module: string, name: string) => PyGlobal {
  const fns: Record<string, (args: unknown[]) => unknown> = {
    "collections.OrderedDict": orderedDict,
    "torch._utils._rebuild_tensor_v2": (a) => rebuildTensor(source, a),
    "torch._utils._rebuild_tensor": (a) => rebuildTensor(source, a),
    "torch._utils._rebuild_parameter": (a) => a[0],
    "torch._utils._rebuild_parameter_with_state": (a) => a[0],
    "torch._tensor._rebuild_from_type_v2": (a) => rebuildFromType(source, a),
    "torch.Size": (a) => a[0],
  };
  const markers = new Set(["torch.Tensor", "torch.nn.parameter.Parameter"]);
  return (module, name) => {
    const q = `${module}.${name}`;
    if (Object.hasOwn(fns, q)) return new PyGlobal(module, name, fns[q]);
    if (markers.has(q) || (module === "torch" && Object.hasOwn(STORAGE_DTYPES, name))) {
      return new PyGlobal(module, name);
    }
    throw new WebcapError(
      "UNSAFE_PICKLE",
      `${source}: refusing to load global ${q}: only state-dict types (collections.OrderedDict, ` +
        "torch tensor rebuild functions and storages) are allowed, and loading anything else could " +
        "run code. If the file is trusted and holds whole modules, save its state_dict() instead",
    );
  };
}

/** Each storage a pickle names: key → dtype and element count of the whole storage. */
type StorageTable = Map<string, { dtype: Dtype; numel: number }>;

/** persistent_load for ('storage', type, key, location, numel[, view_metadata]). */
function storageLoader(source: string, seen: StorageTable): (pid: unknown) => StorageRef {
  return (pid) => {
    if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
      throw badPickle(source, `unsupported persistent id ${JSON.stringify(pid)}`);
    }
    const [, type, key, , numel, view] = pid;
    if (!(type instanceof PyGlobal) || !Object.hasOwn(STORAGE_DTYPES, type.name)) {
      throw badPickle(source, "persistent id does not name a torch storage type");
    }
    if (typeof key !== "string" || !isIndex(numel)) {
      throw badPickle(source, "malformed storage persistent id");
    }
    const dtype = STORAGE_DTYPES[type.name];
    seen.set(key, { dtype, numel });
    if (view === undefined || view === null) return new StorageRef(key, dtype, numel, 0);
    // Pre-0.4 legacy files: (view_key, offset, size) of a view into storage `key`, in elements.
    if (
      !Array.isArray(view) || !isIndex(view[1]) || !isIndex(view[2]) || view[1] + view[2] > numel
    ) {
      throw badPickle(source, `malformed storage view ${JSON.stringify(view)}`);
    }
    return new StorageRef(key, dtype, view[2], view[1]);
  };
}

function unpickleMain(bytes: Uint8Array, start: number, source: string) {
  const storages: StorageTable = new Map();
  const { value, end } = unpickle(bytes, start, {
    source,
    findGlobal: allowList(source),
    persistentLoad: storageLoader(source, storages),
  });
  return { value, end, storages };
}

/** Tensors, by dotted name, of the state dict chosen in a checkpoint object. */
function stateDictTensors(top: unknown, source: string, key?: string): Map<string, TensorRef> {
  if (!(top instanceof Map)) {
    throw new WebcapError("BAD_WEIGHTS", `${source}: top-level object is not a dict`);
  }
  const out = new Map<string, TensorRef>();
  flatten(chooseStateDict(top, source, key), source, out);
  if (out.size === 0) {
    const keys = [...top.keys()].map(String).join(", ");
    throw new WebcapError("BAD_WEIGHTS", `${source}: no tensors found (top-level keys: ${keys})`);
  }
  return out;
}

const hasDirectTensors = (d: unknown): boolean =>
  d instanceof Map && [...d.values()].some((v) => v instanceof TensorRef);

/**
 * The state dict inside a checkpoint: `key` if given; else the top dict if it holds tensors;
 * else `state_dict` / `model_state_dict` / `model`; else the only child dict holding tensors;
 * else the top dict (nested module dicts are flattened with dots).
 */
function chooseStateDict(
  top: Map<unknown, unknown>,
  source: string,
  key?: string,
): Map<unknown, unknown> {
  if (key !== undefined) {
    const d = top.get(key);
    if (d instanceof Map) return d;
    const keys = [...top.keys()].map(String).join(", ");
    throw new WebcapError(
      "BAD_OPTION",
      `stateDictKey "${key}" is not a dict in ${source} (keys: ${keys})`,
    );
  }
  if (hasDirectTensors(top)) return top;
  for (const k of ["state_dict", "model_state_dict", "model"]) {
    const d = top.get(k);
    if (d instanceof Map) return d;
  }
  const children = [...top.values()].filter(hasDirectTensors) as Map<unknown, unknown>[];
  return children.length === 1 ? children[0] : top;
}

/** Deepest nesting of module dicts accepted (real checkpoints nest a few dozen at most). */
const MAX_DICT_DEPTH = 256;

/**
 * Tensors of nested dicts by dotted name, in order, walked with an explicit stack: a pickle can
 * nest dicts deeper than the call stack, or put a dict inside itself.
 */
function flatten(top: Map<unknown, unknown>, source: string, out: Map<string, TensorRef>): void {
  type Level = { d: Map<unknown, unknown>; entries: Iterator<[unknown, unknown]>; prefix: string };
  const stack: Level[] = [{ d: top, entries: top.entries(), prefix: "" }];
  const open = new Set<unknown>([top]); // the dicts on the stack
  while (stack.length > 0) {
    const level = stack[stack.length - 1];
    const next = level.entries.next();
    if (next.done) {
      open.delete(level.d);
      stack.pop();
      continue;
    }
    const [k, v] = next.value;
    if (typeof k !== "string" && typeof k !== "number") continue;
    if (v instanceof TensorRef) out.set(level.prefix + k, v);
    if (!(v instanceof Map)) continue;
    if (open.has(v)) throw badPickle(source, `dict "${level.prefix}${k}" contains itself`);
    if (stack.length >= MAX_DICT_DEPTH) {
      throw badPickle(source, `dicts nested deeper than ${MAX_DICT_DEPTH} levels`);
    }
    open.add(v);
    stack.push({ d: v, entries: v.entries(), prefix: `${level.prefix}${k}.` });
  }
}

function isContiguous(t: TensorRef): boolean {
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

/** Copy a strided view into row-major order; `raw` starts at the view's first element. */
function gather(raw: Uint8Array, t: TensorRef, elemBytes: number): Uint8Array {
  const n = numelOf(t.shape);
  const out = new Uint8Array(n * elemBytes);
  const rank = t.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    out.set(raw.subarray(src * elemBytes, (src + 1) * elemBytes), i * elemBytes);
    for (let d = rank - 1; d >= 0; d--) {
      src += t.stride[d];
      if (++idx[d] < t.shape[d]) break;
      src -= t.stride[d] * t.shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Reads `length` bytes from byte `start` of the storage `key`. */
type StorageReader = (key: string, start: number, length: number) => Promise<Uint8Array>;

function storedTensor(name: string, t: TensorRef, readStorage: StorageReader): StoredTensor {
  const { dtype } = t.storage;
  const es = DTYPE_BYTES[dtype];
  const numel = numelOf(t.shape);
  const first = (t.storage.elemOffset + t.offset) * es;
  const span = numel === 0 ? 0 : 1 + t.shape.reduce((s, d, i) => s + (d - 1) * t.stride[i], 0);
  const read = isContiguous(t)
    ? () => readStorage(t.storage.key, first, numel * es)
    : async () => gather(await readStorage(t.storage.key, first, span * es), t, es);
  return { info: { name, dtype, shape: [...t.shape] }, read };
}

function buildStore(
  src: ByteSource,
  refs: Map<string, TensorRef>,
  readStorage: StorageReader,
): WeightStore {
  const tensors = new Map<string, StoredTensor>();
  for (const [name, t] of refs) tensors.set(name, storedTensor(name, t, readStorage));
  return makeStore(src.name, tensors, () => src.close());
}

/** Check every storage a tensor uses exists with at least the bytes its storage ref declares. */
function checkStorages(
  refs: Map<string, TensorRef>,
  sizeOf: (key: string) => number | undefined,
  source: string,
): void {
  for (const [name, t] of refs) {
    const need = (t.storage.elemOffset + t.storage.numel) * DTYPE_BYTES[t.storage.dtype];
    const have = sizeOf(t.storage.key);
    if (have === undefined) {
      throw badPickle(source, `storage "${t.storage.key}" of tensor "${name}" is missing`);
    }
    if (have < need) {
      throw badPickle(
        source,
        `storage "${t.storage.key}" of tensor "${name}" holds ${have} bytes, needs ${need}`,
      );
    }
  }
}

async function openZipCheckpoint(src: ByteSource, key?: string): Promise<WeightStore> {
  const entries = await readZipDirectory(src);
  const pkl = [...entries.keys()].find((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
  if (pkl === undefined) throw badPickle(src.name, "zip has no data.pkl; not a torch checkpoint");
  const prefix = pkl.slice(0, -"data.pkl".length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(await readZipEntry(src, order)) !== "little") {
    throw badPickle(
      src.name,
      "big-endian checkpoints are not supported; re-save it on a little-endian machine",
    );
  }
  const { value } = unpickleMain(await readZipEntry(src, entries.get(pkl)!), 0, src.name);
  const refs = stateDictTensors(value, src.name, key);
  const storage = (k: string): ZipEntry | undefined => entries.get(`${prefix}data/${k}`);
  checkStorages(refs, (k) => storage(k)?.size, src.name);
  return buildStore(src, refs, (k, start, length) => readZipEntry(src, storage(k)!, start, length));
}

/** Unpickle the leading pickles of a legacy file, reading a larger prefix until they fit. */
async function legacyPickles(src: ByteSource): Promise<LegacyHead> {
  for (let size = Math.min(src.size, 1 << 20);; size = Math.min(src.size, size * 4)) {
    const bytes = await src.read(0, size);
    try {
      return legacyPicklesOf(bytes, src.name);
    } catch (e) {
      if (!(e instanceof PickleTruncatedError) || size === src.size) throw e;
    }
  }
}

/** The main object, its storages, the storage key list and where the storages begin. */
interface LegacyHead {
  top: unknown;
  storages: StorageTable;
  keys: string[];
  end: number;
}

function legacyPicklesOf(bytes: Uint8Array, source: string): LegacyHead {
  const plain = { source, findGlobal: allowList(source) };
  const magic = unpickle(bytes, 0, plain);
  if (magic.value !== LEGACY_MAGIC) {
    throw badPickle(source, "neither a zip nor a legacy torch checkpoint (magic number missing)");
  }
  const protocol = unpickle(bytes, magic.end, plain);
  if (protocol.value !== LEGACY_PROTOCOL) {
    throw badPickle(source, `legacy protocol ${protocol.value} is not ${LEGACY_PROTOCOL}`);
  }
  const sysInfo = unpickle(bytes, protocol.end, plain);
  if (sysInfo.value instanceof Map && sysInfo.value.get("little_endian") === false) {
    throw badPickle(
      source,
      "big-endian checkpoints are not supported; re-save it on a little-endian machine",
    );
  }
  const main = unpickleMain(bytes, sysInfo.end, source);
  const keys = unpickle(bytes, main.end, plain);
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === "string")) {
    throw badPickle(source, "legacy storage key list is not a list of strings");
  }
  return { top: main.value, storages: main.storages, keys: keys.value, end: keys.end };
}

/** Byte offset of each legacy storage's data: they follow the key list, each after an int64 count. */
async function legacyStorageOffsets(
  src: ByteSource,
  head: LegacyHead,
): Promise<Map<string, { at: number; bytes: number }>> {
  const out = new Map<string, { at: number; bytes: number }>();
  let pos = head.end;
  for (const key of head.keys) {
    const storage = head.storages.get(key);
    if (storage === undefined) {
      throw badPickle(src.name, `listed storage "${key}" is not in the pickle`);
    }
    if (pos + 8 > src.size) {
      throw badPickle(src.name, `storage "${key}" starts past the end; the file is truncated`);
    }
    const count = new DataView((await src.read(pos, 8)).slice().buffer).getBigInt64(0, true);
    if (count !== BigInt(storage.numel)) {
      throw badPickle(
        src.name,
        `storage "${key}" holds ${count} elements, the pickle says ${storage.numel}`,
      );
    }
    const bytes = storage.numel * DTYPE_BYTES[storage.dtype];
    if (pos + 8 + bytes > src.size) {
      throw badPickle(src.name, `storage "${key}" runs past the end; the file is truncated`);
    }
    out.set(key, { at: pos + 8, bytes });
    pos += 8 + bytes;
  }
  return out;
}

async function openLegacyCheckpoint(src: ByteSource, key?: string): Promise<WeightStore> {
  const head = await legacyPickles(src);
  const refs = stateDictTensors(head.top, src.name, key);
  const offsets = await legacyStorageOffsets(src, head);
  checkStorages(refs, (k) => offsets.get(k)?.bytes, src.name);
  return buildStore(src, refs, (k, start, length) => src.read(offsets.get(k)!.at + start, length));
}

/**
 * Open a torch.save checkpoint (zip or legacy format) from a path (Deno) or its bytes. Only
 * state-dict contents are allowed: any other global is refused before anything is built.
 * @param opts.stateDictKey the entry holding the state dict (default: the dict itself if it holds
 * tensors, else `state_dict`, `model_state_dict` or `model`, else the only dict of tensors).
 * @param opts.name what a buffer is called in messages (e.g. the URL it came from).
 * @throws WebcapError UNSAFE_PICKLE naming a disallowed global, BAD_PICKLE for a malformed file.
 */
export async function openPickleCheckpoint(
  pathOrBytes: string | Uint8Array | ArrayBuffer,
  opts: { stateDictKey?: string; name?: string } = {},
): Promise<WeightStore> {
  const src = await openSource(pathOrBytes, opts.name);
  try {
    const head = await src.read(0, Math.min(4, src.size));
    return isZip(head)
      ? await openZipCheckpoint(src, opts.stateDictKey)
      : await openLegacyCheckpoint(src, opts.stateDictKey);
  } catch (e) {
    src.close();
    throw e;
  }
}
