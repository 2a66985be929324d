/**
 * Element types of checkpoint tensors (the safetensors names) and their conversion to float32.
 * Bytes are little-endian, as in safetensors and torch checkpoints.
 * @module
 */

/** Element type of a stored tensor, named as in safetensors headers. */
export type Dtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The dtypes webcap reads, in a stable order for messages. */
export const DTYPES: readonly Dtype[] = Object.keys(DTYPE_BYTES) as Dtype[];

/** True if `s` names a dtype webcap reads. */
export function isDtype(s: unknown): s is Dtype {
  return typeof s === "string" && Object.hasOwn(DTYPE_BYTES, s);
}

/** Product of the dimensions (1 for a scalar). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** IEEE half-precision bit patterns → float32 values (exact; subnormals, ±Inf and NaN kept). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16BitsToF32Bits(bits[i]);
  return new Float32Array(out.buffer);
}

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  let exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal: shift the mantissa up until its leading 1 becomes the implicit bit.
    exp = 1;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      exp--;
    }
    mant &= 0x3ff;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** bfloat16 bit patterns → float32 values (bfloat16 is the upper half of a float32). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

type ViewCtor<T> = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/** A typed view of `bytes`, copying first when `bytes` is not aligned for the element type. */
function typedView<T>(bytes: Uint8Array, Ctor: ViewCtor<T>): T {
  const src = bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new Ctor(src.buffer, src.byteOffset, src.byteLength / Ctor.BYTES_PER_ELEMENT);
}

/**
 * Raw little-endian tensor bytes → float32 values. F32 input may come back as a view over the
 * same memory (no copy) when it is aligned; every other dtype is converted into a new array.
 */
export function bytesToF32(bytes: Uint8Array, dtype: Dtype): Float32Array {
  switch (dtype) {
    case "F32":
      return typedView(bytes, Float32Array);
    case "F16":
      return f16ToF32(typedView(bytes, Uint16Array));
    case "BF16":
      return bf16ToF32(typedView(bytes, Uint16Array));
    case "F64":
      return Float32Array.from(typedView(bytes, Float64Array));
    case "I64":
      return Float32Array.from(typedView(bytes, BigInt64Array), Number);
    case "I32":
      return Float32Array.from(typedView(bytes, Int32Array));
    case "I16":
      return Float32Array.from(typedView(bytes, Int16Array));
    case "I8":
      return Float32Array.from(typedView(bytes, Int8Array));
    case "U8":
    case "BOOL":
      return Float32Array.from(bytes);
  }
}
