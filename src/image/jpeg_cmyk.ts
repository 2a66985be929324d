/**
 * Four-component (Adobe CMYK / YCCK) JPEG to RGB exactly as Pillow 9.4: libjpeg-turbo decodes the
 * samples (YCCK → CMYK by libjpeg), Pillow reads them as `CMYK;I` (inverted, "Adobe
 * conventions") and `convert("RGB")` applies `cmyk2rgb`:
 * `R = nk − MULDIV255(C, nk)` with `nk = 255 − K` on the inverted values.
 *
 * The WebAssembly libjpeg build only outputs RGBA, which libjpeg cannot produce from four
 * components. So the file's quantised DCT coefficients are read here (Huffman, baseline and
 * progressive, as in jdhuff.c / jdphuff.c) and written back losslessly as two 3-component
 * sequential JPEGs that libjpeg then decodes as usual: components 0–2 (as RGB, or for YCCK as
 * YCbCr, whose RGB is 255 − libjpeg's CMY) and component 3 alongside the components that hold
 * the largest sampling factors, so that both keep the original's MCU grid and upsampling. IDCT,
 * upsampling and colour conversion therefore stay libjpeg's own.
 * @module
 */

import { jpegDecoder } from "./wasm_codecs.ts";
import type { RgbImage } from "./decode.ts";

/** What the caller's header walk found (see `decode.ts`). */
export interface CmykFrame {
  components: { id: number; h: number; v: number }[];
  adobeTransform: number;
}

/** A frame component and its coefficients (kept in zigzag order from reading to writing). */
interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Blocks per row and rows of blocks, padded to whole MCUs. */
  bw: number;
  bh: number;
  /** Quantised coefficients in zigzag order, [bh, bw, 64]. */
  coef: Int32Array;
  /** Blocks holding image samples (a non-interleaved scan covers only these). */
  usedW: number;
  usedH: number;
}

/** A Huffman decoding table (T.81 Annex F.2.2.3). */
interface HuffTable {
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  vals: Uint8Array;
}

class JpegDataError extends Error {}

function huffTable(counts: Uint8Array, vals: Uint8Array): HuffTable {
  const maxcode = new Int32Array(18).fill(-1), valptr = new Int32Array(17);
  const mincode = new Int32Array(17);
  let code = 0, k = 0;
  for (let l = 1; l <= 16; l++) {
    valptr[l] = k;
    mincode[l] = code;
    code += counts[l - 1];
    k += counts[l - 1];
    maxcode[l] = counts[l - 1] ? code - 1 : -1;
    code <<= 1;
  }
  return { maxcode, valptr, mincode, vals };
}

/** Entropy-coded bits of one scan: 0xFF00 unstuffed, zeros past a marker (as libjpeg). */
class BitReader {
  bits = 0;
  count = 0;
  constructor(readonly data: Uint8Array, public pos: number) {}

  bit(): number {
    if (this.count === 0) {
      let b = 0;
      if (this.pos < this.data.length && this.data[this.pos] !== 0xff) b = this.data[this.pos++];
      else if (this.pos + 1 < this.data.length && this.data[this.pos + 1] === 0) {
        b = 0xff;
        this.pos += 2;
      }
      this.bits = b;
      this.count = 8;
    }
    this.count--;
    return (this.bits >> this.count) & 1;
  }

  receive(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = (v << 1) | this.bit();
    return v;
  }

  /** receive + EXTEND (F.2.2.1): n bits as a signed magnitude category value. */
  extend(n: number): number {
    const v = this.receive(n);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }

  decode(t: HuffTable | undefined): number {
    if (!t) throw new JpegDataError("scan uses an undefined Huffman table");
    let code = 0;
    for (let l = 1; l <= 16; l++) {
      code = (code << 1) | this.bit();
      if (code <= t.maxcode[l]) return t.vals[t.valptr[l] + code - t.mincode[l]];
    }
    throw new JpegDataError("bad Huffman code");
  }

  /** At a restart interval: drop the partial byte and step over the RSTn marker. */
  restart(): void {
    this.count = 0;
    while (this.pos + 1 < this.data.length && this.data[this.pos] !== 0xff) this.pos++;
    const m = this.data[this.pos + 1];
    if (m >= 0xd0 && m <= 0xd7) this.pos += 2;
  }
}

/** One scan's parameters. */
interface Scan {
  comps: Component[];
  dc: (HuffTable | undefined)[];
  ac: (HuffTable | undefined)[];
  ss: number;
  se: number;
  ah: number;
  al: number;
}

/** Coefficient decoder for one scan's blocks (sequential or one of the progressive kinds). */
function blockDecoder(scan: Scan, progressive: boolean) {
  const preds = new Int32Array(scan.comps.length);
  let eobrun = 0;
  const { ss, se, ah, al } = scan;
  const decode = (r: BitReader, ci: number, b: Int32Array, o: number) => {
    if (!progressive) return sequential(r, scan.dc[ci], scan.ac[ci], preds, ci, b, o);
    if (ss === 0) {
      if (ah === 0) {
        const t = r.decode(scan.dc[ci]);
        preds[ci] += t ? r.extend(t) : 0;
        b[o] = preds[ci] * (1 << al);
      } else if (r.bit()) b[o] |= 1 << al;
      return;
    }
    const band = { r, ac: scan.ac[ci], b, o, ss, se, al };
    eobrun = ah === 0 ? acFirst(band, eobrun) : acRefine(band, eobrun);
  };
  const reset = () => {
    preds.fill(0);
    eobrun = 0;
  };
  return { decode, reset };
}

function sequential(
  r: BitReader,
  dc: HuffTable | undefined,
  ac: HuffTable | undefined,
  preds: Int32Array,
  ci: number,
  b: Int32Array,
  o: number,
) {
  const t = r.decode(dc);
  preds[ci] += t ? r.extend(t) : 0;
  b[o] = preds[ci];
  for (let k = 1; k < 64;) {
    const rs = r.decode(ac), run = rs >> 4, s = rs & 15;
    if (s) {
      k += run;
      if (k > 63) throw new JpegDataError("coefficient index past 63");
      b[o + k++] = r.extend(s);
    } else if (run === 15) k += 16;
    else break;
  }
}

/**
 * One block's AC coefficients `ss..se` of a progressive scan, at bit `al`: the Huffman table, the
 * block's coefficients (`b` from `o`) and the spectral band.
 */
interface AcBand {
  r: BitReader;
  ac: HuffTable | undefined;
  b: Int32Array;
  o: number;
  ss: number;
  se: number;
  al: number;
}

/** jdphuff.c `decode_mcu_AC_first`: returns the end-of-band run left. */
function acFirst({ r, ac, b, o, ss, se, al }: AcBand, eobrun: number): number {
  if (eobrun > 0) return eobrun - 1;
  for (let k = ss; k <= se;) {
    const rs = r.decode(ac), run = rs >> 4, s = rs & 15;
    if (s) {
      k += run;
      if (k > se) throw new JpegDataError("coefficient index past the spectral band");
      b[o + k++] = r.extend(s) * (1 << al);
    } else if (run === 15) k += 16;
    else return (1 << run) - 1 + (run ? r.receive(run) : 0);
  }
  return 0;
}

/** jdphuff.c `decode_mcu_AC_refine`: returns the end-of-band run left. */
function acRefine({ r, ac, b, o, ss, se, al }: AcBand, eobrun: number): number {
  const p1 = 1 << al, m1 = -1 << al;
  const refine = (z: number) => {
    if (r.bit() && (b[z] & p1) === 0) b[z] += b[z] >= 0 ? p1 : m1;
  };
  let k = ss;
  if (eobrun <= 0) {
    for (; k <= se; k++) {
      const rs = r.decode(ac);
      let run = rs >> 4, s = rs & 15;
      if (s) s = r.bit() ? p1 : m1;
      else if (run !== 15) {
        eobrun = (1 << run) + (run ? r.receive(run) : 0);
        break;
      }
      for (; k <= se; k++) {
        if (b[o + k] !== 0) refine(o + k);
        else if (--run < 0) break;
      }
      if (s && k <= se) b[o + k] = s;
    }
  }
  if (eobrun > 0) {
    for (; k <= se; k++) if (b[o + k] !== 0) refine(o + k);
    eobrun--;
  }
  return eobrun;
}

/** Read a scan's entropy-coded data into the components' coefficients; returns where it ends. */
function readScan(
  bytes: Uint8Array,
  at: number,
  scan: Scan,
  progressive: boolean,
  restartInterval: number,
  mcusX: number,
  mcusY: number,
): number {
  const r = new BitReader(bytes, at);
  const { decode, reset } = blockDecoder(scan, progressive);
  const single = scan.comps.length === 1;
  const c0 = scan.comps[0];
  const nx = single ? c0.usedW : mcusX, ny = single ? c0.usedH : mcusY;
  for (let my = 0, n = 0; my < ny; my++) {
    for (let mx = 0; mx < nx; mx++, n++) {
      if (restartInterval && n > 0 && n % restartInterval === 0) {
        r.restart();
        reset();
      }
      scan.comps.forEach((c, ci) => {
        const [h, v] = single ? [1, 1] : [c.h, c.v];
        for (let y = 0; y < v; y++) {
          for (let x = 0; x < h; x++) {
            decode(r, ci, c.coef, ((my * v + y) * c.bw + mx * h + x) * 64);
          }
        }
      });
    }
  }
  return r.pos;
}

/** Frame, quantisation tables and coefficients of a Huffman-coded 8-bit JPEG (all its scans). */
export function readCoefficients(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const qt = new Map<number, { precision: number; values: Uint8Array }>();
  const dcTables: HuffTable[] = [], acTables: HuffTable[] = [];
  let comps: Component[] = [];
  let progressive = false, restartInterval = 0, width = 0, height = 0;
  let mcusX = 0, mcusY = 0, hmax = 1, vmax = 1;
  for (let at = 2; at + 4 <= bytes.length;) {
    if (bytes[at] !== 0xff) throw new JpegDataError(`no marker at byte ${at}`);
    const marker = bytes[at + 1];
    if (marker === 0xff || (marker >= 0xd0 && marker <= 0xd8)) {
      at += marker === 0xff ? 1 : 2;
      continue;
    }
    if (marker === 0xd9) break;
    const len = view.getUint16(at + 2), body = at + 4, end = at + 2 + len;
    if (end > bytes.length || len < 2) throw new JpegDataError("truncated segment");
    if (marker === 0xdb) {
      for (let p = body; p < end;) {
        const precision = bytes[p] >> 4, n = precision ? 128 : 64;
        qt.set(bytes[p] & 15, { precision, values: bytes.slice(p + 1, p + 1 + n) });
        p += 1 + n;
      }
    } else if (marker === 0xc4) {
      for (let p = body; p + 17 <= end;) {
        const counts = bytes.subarray(p + 1, p + 17);
        const n = counts.reduce((a, c) => a + c, 0);
        const t = huffTable(counts, bytes.slice(p + 17, p + 17 + n));
        (bytes[p] >> 4 ? acTables : dcTables)[bytes[p] & 15] = t;
        p += 17 + n;
      }
    } else if (marker === 0xdd) {
      restartInterval = view.getUint16(body);
    } else if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      if (![0xc0, 0xc1, 0xc2].includes(marker) || bytes[body] !== 8) {
        throw new JpegDataError("only 8-bit Huffman-coded CMYK JPEGs are supported");
      }
      progressive = marker === 0xc2;
      height = view.getUint16(body + 1);
      width = view.getUint16(body + 3);
      const raw = Array.from(
        { length: bytes[body + 5] },
        (_, c) => bytes.subarray(body + 6 + 3 * c),
      );
      hmax = Math.max(...raw.map((c) => c[1] >> 4));
      vmax = Math.max(...raw.map((c) => c[1] & 15));
      mcusX = Math.ceil(width / (8 * hmax));
      mcusY = Math.ceil(height / (8 * vmax));
      comps = raw.map((c) => {
        const h = c[1] >> 4, v = c[1] & 15, bw = mcusX * h, bh = mcusY * v;
        if (!h || !v) throw new JpegDataError("zero sampling factor");
        return {
          id: c[0],
          h,
          v,
          tq: c[2],
          bw,
          bh,
          coef: new Int32Array(bw * bh * 64),
          usedW: Math.ceil(Math.ceil((width * h) / hmax) / 8),
          usedH: Math.ceil(Math.ceil((height * v) / vmax) / 8),
        };
      });
    } else if (marker === 0xda) {
      const ns = bytes[body];
      const sel = Array.from({ length: ns }, (_, i) => bytes.subarray(body + 1 + 2 * i));
      const scanComps = sel.map((s) => comps.find((c) => c.id === s[0]));
      if (scanComps.some((c) => !c)) throw new JpegDataError("scan names an unknown component");
      const p = body + 1 + 2 * ns;
      const scan: Scan = {
        comps: scanComps as Component[],
        dc: sel.map((s) => dcTables[s[1] >> 4]),
        ac: sel.map((s) => acTables[s[1] & 15]),
        ss: bytes[p],
        se: progressive ? bytes[p + 1] : 63,
        ah: bytes[p + 2] >> 4,
        al: bytes[p + 2] & 15,
      };
      if (scan.se > 63 || scan.ss > scan.se) throw new JpegDataError("bad spectral selection");
      at = readScan(bytes, end, scan, progressive, restartInterval, mcusX, mcusY);
      continue;
    }
    at = end;
  }
  if (!comps.length) throw new JpegDataError("no frame");
  return { width, height, comps, qt };
}

// ---------------------------------------------------------------------------------------------
// Writing: a sequential (SOF1) 3-component JPEG with one Huffman table of every symbol.

/** Canonical Huffman codes for `counts` (per length 1..16) over symbols in order. */
function canonicalCodes(counts: number[]): { code: Int32Array; size: Uint8Array } {
  const n = counts.reduce((a, c) => a + c, 0);
  const code = new Int32Array(n), size = new Uint8Array(n);
  let c = 0, k = 0;
  for (let l = 1; l <= 16; l++) {
    for (let i = 0; i < counts[l - 1]; i++, k++, c++) [code[k], size[k]] = [c, l];
    c <<= 1;
  }
  return { code, size };
}

/** DC: categories 0..15 in 5 bits; AC: all 256 symbols, 254 in 8 bits and 2 in 9 (no all-ones). */
const DC_COUNTS = [0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const AC_COUNTS = [0, 0, 0, 0, 0, 0, 0, 254, 2, 0, 0, 0, 0, 0, 0, 0];
const DC_CODES = canonicalCodes(DC_COUNTS), AC_CODES = canonicalCodes(AC_COUNTS);

class BitWriter {
  out: number[] = [];
  acc = 0;
  n = 0;
  put(value: number, bits: number): void {
    for (let i = bits - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | ((value >> i) & 1);
      if (++this.n === 8) {
        this.out.push(this.acc);
        if (this.acc === 0xff) this.out.push(0);
        this.acc = this.n = 0;
      }
    }
  }
  flush(): number[] {
    if (this.n) this.put(0x7f, 8 - this.n); // pad with ones
    return this.out;
  }
}

const category = (v: number) => (v === 0 ? 0 : 32 - Math.clz32(Math.abs(v)));

function putValue(w: BitWriter, v: number, cat: number): void {
  if (cat > 15) throw new JpegDataError("coefficient out of range");
  if (cat) w.put(v < 0 ? v + (1 << cat) - 1 : v, cat);
}

function encodeBlock(w: BitWriter, b: Int32Array, o: number, pred: number): void {
  const diff = b[o] - pred, dcCat = category(diff);
  if (dcCat > 15) throw new JpegDataError("DC coefficient out of range");
  w.put(DC_CODES.code[dcCat], DC_CODES.size[dcCat]);
  putValue(w, diff, dcCat);
  let run = 0;
  for (let k = 1; k < 64; k++) {
    const v = b[o + k];
    if (v === 0) {
      run++;
      continue;
    }
    for (; run > 15; run -= 16) w.put(AC_CODES.code[0xf0], AC_CODES.size[0xf0]);
    const cat = category(v), sym = (run << 4) | cat;
    if (cat > 15) throw new JpegDataError("AC coefficient out of range");
    w.put(AC_CODES.code[sym], AC_CODES.size[sym]);
    putValue(w, v, cat);
    run = 0;
  }
  if (run) w.put(AC_CODES.code[0], AC_CODES.size[0]);
}

const u16be = (v: number) => [v >> 8, v & 255];
const segment = (
  marker: number,
  body: number[],
) => [0xff, marker, ...u16be(body.length + 2), ...body];

/** A JPEG holding `comps` (re-numbered 1..3) with Adobe `transform` (0 RGB, 1 YCbCr). */
export function writeJpeg(
  width: number,
  height: number,
  comps: Component[],
  qt: Map<number, { precision: number; values: Uint8Array }>,
  transform: number,
): Uint8Array {
  const hmax = Math.max(...comps.map((c) => c.h)), vmax = Math.max(...comps.map((c) => c.v));
  const mcusX = Math.ceil(width / (8 * hmax)), mcusY = Math.ceil(height / (8 * vmax));
  const w = new BitWriter(), preds = new Int32Array(comps.length);
  for (let my = 0; my < mcusY; my++) {
    for (let mx = 0; mx < mcusX; mx++) {
      comps.forEach((c, ci) => {
        for (let y = 0; y < c.v; y++) {
          for (let x = 0; x < c.h; x++) {
            const o = ((my * c.v + y) * c.bw + mx * c.h + x) * 64;
            encodeBlock(w, c.coef, o, preds[ci]);
            preds[ci] = c.coef[o];
          }
        }
      });
    }
  }
  const tables = [...new Set(comps.map((c) => c.tq))].flatMap((id) => {
    const t = qt.get(id);
    if (!t) throw new JpegDataError(`quantisation table ${id} is not defined`);
    return [(t.precision << 4) | id, ...t.values];
  });
  const adobe = [..."Adobe"].map((ch) => ch.charCodeAt(0));
  return Uint8Array.from([
    0xff,
    0xd8,
    ...segment(0xee, [...adobe, 0, 100, 0, 0, 0, 0, transform]),
    ...segment(0xdb, tables),
    ...segment(0xc1, [
      8,
      ...u16be(height),
      ...u16be(width),
      3,
      ...comps.flatMap((c, i) => [i + 1, (c.h << 4) | c.v, c.tq]),
    ]),
    ...segment(0xc4, [
      0x00,
      ...DC_COUNTS,
      ...DC_COUNTS.map((_, i) => i),
      0x10,
      ...AC_COUNTS,
      ...Array.from({ length: 256 }, (_, i) => i),
    ]),
    ...segment(0xda, [3, 1, 0, 2, 0, 3, 0, 0, 63, 0]),
    ...w.flush(),
    0xff,
    0xd9,
  ]);
}

/** Pillow's MULDIV255: a·b/255 rounded, in integers. */
function muldiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/**
 * Decode a 4-component JPEG to RGB as Pillow does (see the module doc).
 * @param fail makes the BAD_IMAGE error for a message.
 */
export async function decodeCmykJpeg(
  bytes: Uint8Array,
  frame: CmykFrame,
  fail: (what: string) => Error,
): Promise<RgbImage> {
  let parts: Uint8Array[], width: number, height: number;
  try {
    const f = readCoefficients(bytes);
    ({ width, height } = f);
    const [c0, c1, c2, c3] = f.comps;
    const hmax = Math.max(c0.h, c1.h, c2.h), vmax = Math.max(c0.v, c1.v, c2.v);
    if (c3.h > hmax || c3.v > vmax) {
      throw new JpegDataError("the K component has larger sampling factors than C, M and Y");
    }
    // Beside K, components that restore the MCU's largest factors, else the smallest one.
    const smallest = [c0, c1, c2].reduce((a, c) => (c.h * c.v < a.h * a.v ? c : a));
    const withH = c3.h < hmax ? [c0, c1, c2].find((c) => c.h === hmax)! : smallest;
    const withV = c3.v < vmax ? [c0, c1, c2].find((c) => c.v === vmax)! : smallest;
    const ycck = frame.adobeTransform === 2;
    parts = [
      writeJpeg(width, height, [c0, c1, c2], f.qt, ycck ? 1 : 0),
      writeJpeg(width, height, [c3, withH, withV], f.qt, 0),
    ];
  } catch (e) {
    if (e instanceof JpegDataError) throw fail(`corrupt or unsupported CMYK JPEG (${e.message})`);
    throw e;
  }
  const [cmy, k] = await Promise.all(parts.map((p) => jpegDecoder.decode(p)));
  if (typeof cmy === "string" || typeof k === "string") {
    throw fail(`corrupt CMYK JPEG (libjpeg: ${typeof cmy === "string" ? cmy : k})`);
  }
  const ycck = frame.adobeTransform === 2;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const nk = k.data[4 * i]; // 255 − K with K = 255 − stored
    for (let c = 0; c < 3; c++) {
      const stored = ycck ? 255 - cmy.data[4 * i + c] : cmy.data[4 * i + c];
      out[3 * i + c] = Math.max(0, nk - muldiv255(255 - stored, nk));
    }
  }
  return { width, height, data: out };
}
