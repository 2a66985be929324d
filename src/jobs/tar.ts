/**
 * WebDataset `.tar` shards read as a stream (never unpacked to disk): members are grouped into
 * samples by key — the member path up to the first dot of its file name, as webdataset's
 * `base_plus_ext` — and each sample's image member (by extension) is read while the other
 * members' data is skipped (a seek for local files). Handles ustar, GNU long names and pax
 * `path` records.
 * @module
 */
import { WebcapError } from "../errors.ts";

/** Bytes in order: `read(n)` gives up to `n` (fewer only at the end), `skip(n)` passes over them. */
export interface ByteSource {
  read(n: number): Promise<Uint8Array>;
  /** Pass over `n` bytes; returns how many there were (fewer only at the end). */
  skip(n: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * A {@link ByteSource} over a stream (an HTTP body): skipping reads and drops. A read that
 * waits more than `stallMs` for data, or a dropped connection, throws DOWNLOAD_FAILED.
 */
export function streamSource(
  stream: ReadableStream<Uint8Array>,
  where: string,
  stallMs: number,
): ByteSource {
  const reader = stream.getReader();
  const next = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stall = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new WebcapError("DOWNLOAD_FAILED", `${where}: no data for ${stallMs} ms`));
        reader.cancel().catch(() => {}); // after: cancelling ends the pending read as done
      }, stallMs);
    });
    try {
      return await Promise.race([reader.read(), stall]);
    } catch (e) {
      if (e instanceof WebcapError) throw e;
      throw new WebcapError(
        "DOWNLOAD_FAILED",
        `${where}: the connection dropped (${(e as Error).message})`,
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
  };
  let buf: Uint8Array = new Uint8Array(0);
  const fill = async (n: number) => {
    const parts: Uint8Array[] = [buf];
    let have = buf.length;
    while (have < n) {
      const { done, value } = await next();
      if (done) break;
      parts.push(value);
      have += value.length;
    }
    if (parts.length > 1) {
      buf = new Uint8Array(have);
      let off = 0;
      for (const p of parts) buf.set(p, (off += p.length) - p.length);
    }
  };
  return {
    async read(n) {
      await fill(n);
      const out = buf.subarray(0, n);
      buf = buf.subarray(out.length);
      return out;
    },
    async skip(n) {
      let left = n;
      while (left > 0) {
        await fill(Math.min(left, 1 << 20));
        if (buf.length === 0) break;
        const k = Math.min(left, buf.length);
        buf = buf.subarray(k);
        left -= k;
      }
      return n - left;
    },
    close: () => reader.cancel().catch(() => {}),
  };
}

/** A {@link ByteSource} over a local file: skipping seeks. */
export async function fileSource(path: string): Promise<ByteSource> {
  const file = await Deno.open(path);
  const size = (await file.stat()).size;
  let pos = 0;
  return {
    async read(n) {
      const out = new Uint8Array(Math.min(n, size - pos));
      let off = 0;
      while (off < out.length) {
        const k = await file.read(out.subarray(off));
        if (k === null) break;
        off += k;
      }
      pos += off;
      return out.subarray(0, off);
    },
    async skip(n) {
      const k = Math.min(n, size - pos);
      pos = await file.seek(k, Deno.SeekMode.Current);
      return k;
    },
    close: () => Promise.resolve(file.close()),
  };
}

/** One tar member's header. */
interface TarHeader {
  name: string;
  size: number;
  /** `0` regular file, `5` folder, `x`/`g` pax, `L` GNU long name, … */
  type: string;
}

const BLOCK = 512;
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

function field(h: Uint8Array, off: number, len: number, dec = utf8): string {
  const f = h.subarray(off, off + len);
  const end = f.indexOf(0);
  return dec.decode(end < 0 ? f : f.subarray(0, end));
}

function octal(h: Uint8Array, off: number, len: number): number {
  if (h[off] & 0x80) { // GNU base-256
    let n = h[off] & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + h[off + i];
    return n;
  }
  const s = field(h, off, len, latin1).trim();
  return s === "" ? 0 : parseInt(s, 8);
}

/** Parse a header block; `undefined` for the zero block that ends the archive. */
function parseHeader(h: Uint8Array, where: string): TarHeader | undefined {
  if (h.every((b) => b === 0)) return undefined;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  const size = octal(h, 124, 12);
  if (sum !== octal(h, 148, 8) || !Number.isSafeInteger(size)) {
    throw new WebcapError(
      "BAD_INPUT",
      `${where}: not a tar header (bad checksum); the file is not a tar archive or is corrupt`,
    );
  }
  const prefix = field(h, 345, 155);
  const name = field(h, 0, 100);
  return {
    name: prefix ? `${prefix}/${name}` : name,
    size,
    type: String.fromCharCode(h[156] || 48),
  };
}

/** A pax record set's `path`, if any. */
function paxPath(data: Uint8Array): string | undefined {
  return /(?:^|\n)\d+ path=([^\n]*)\n/.exec(utf8.decode(data))?.[1];
}

/** A regular member's path and size. */
interface TarMember {
  name: string;
  size: number;
}

/** The tar's regular members; `take(member)` returns whether to read the data (else skipped). */
async function* tarMembers(
  src: ByteSource,
  where: string,
  take: (m: TarMember) => boolean,
): AsyncGenerator<TarMember & { data?: Uint8Array }> {
  let longName: string | undefined;
  for (let block = 0;; block++) {
    const h = await src.read(BLOCK);
    if (h.length === 0) return; // no end-of-archive blocks: tolerated
    if (h.length < BLOCK) throw truncated(where, "a member header");
    const hdr = parseHeader(h, `${where} (block ${block})`);
    if (!hdr) return;
    const padded = Math.ceil(hdr.size / BLOCK) * BLOCK;
    const meta = hdr.type === "L" || hdr.type === "x";
    const member = { name: (longName ?? hdr.name).replace(/^\.\//, ""), size: hdr.size };
    const read = meta || ((hdr.type === "0" || hdr.type === "7") && take(member));
    let data: Uint8Array | undefined;
    if (read) {
      data = await src.read(hdr.size);
      if (data.length < hdr.size) throw truncated(where, member.name, hdr.size, data.length);
      await src.skip(padded - hdr.size);
    } else if (await src.skip(padded) < hdr.size) {
      throw truncated(where, member.name);
    }
    block += padded / BLOCK;
    if (hdr.type === "L") longName = field(data!, 0, data!.length);
    else if (hdr.type === "x") longName = paxPath(data!) ?? longName;
    else longName = undefined;
    if (!meta && (hdr.type === "0" || hdr.type === "7")) yield { ...member, data };
  }
}

/** The error of a tar that ends inside `what`. */
function truncated(where: string, what: string, need?: number, got?: number): WebcapError {
  const detail = need === undefined ? "" : ` (${got} of its ${need} bytes are there)`;
  return new WebcapError(
    "BAD_INPUT",
    `${where}: the tar ends inside ${what}${detail}; the file is truncated (an interrupted ` +
      "download or copy?); fetch it again",
  );
}

/** A member's WebDataset key and extension: `a/b.c.jpg` → `a/b`, `c.jpg`; none without a dot. */
export function keyAndExtension(name: string): [key: string, ext: string] | undefined {
  const m = /^((?:.*\/|)[^.]+)[.]([^/]*)$/.exec(name);
  return m ? [m[1], m[2].toLowerCase()] : undefined;
}

/** Extensions of image members (the last part of a member's extension). */
const IMAGE_EXT = /(?:^|\.)(jpe?g|png|webp|bmp|tiff?|gif)$/;

/** A sample of a WebDataset tar: its image's bytes, or why it has none. */
export interface TarSample {
  key: string;
  /** `shard.tar:member`, naming the image member (or the sample when it has none). */
  source: string;
  image?: Uint8Array;
  error?: WebcapError;
}

/**
 * The samples of a WebDataset tar whose key `select` accepts (asked once per sample, at its
 * first member); the image data of other samples is skipped. A sample without an image member
 * comes with a BAD_INPUT error; a truncated tar ends with its last sample (with the error when
 * its image is cut) and a BAD_INPUT throw.
 */
export async function* tarSamples(
  src: ByteSource,
  where: string,
  select: (key: string) => boolean,
): AsyncGenerator<TarSample> {
  type Open = { key: string; selected: boolean; names: string[]; sample?: TarSample };
  let cur: Open | undefined;
  const ended: Open[] = []; // samples whose last member has passed, not yet yielded
  const take = (m: TarMember) => { // runs at each member header, before its data
    const ke = keyAndExtension(m.name);
    if (!ke) return false;
    if (ke[0] !== cur?.key) {
      if (cur) ended.push(cur);
      cur = { key: ke[0], selected: select(ke[0]), names: [] };
    }
    cur.names.push(m.name);
    return cur.selected && !cur.sample && IMAGE_EXT.test(ke[1]);
  };
  try {
    for await (const m of tarMembers(src, where, take)) {
      for (const s of ended.splice(0)) if (s.selected) yield sampleOf(s, where);
      if (m.data && cur) cur.sample = { key: cur.key, source: `${where}:${m.name}`, image: m.data };
    }
  } catch (e) {
    for (const s of ended.splice(0)) if (s.selected) yield sampleOf(s, where);
    if (e instanceof WebcapError && cur?.selected) { // its image, whole, or the error
      yield cur.sample ?? { key: cur.key, source: `${where}:${cur.key}`, error: e };
    }
    throw e;
  }
  for (const s of [...ended, ...(cur ? [cur] : [])]) if (s.selected) yield sampleOf(s, where);
}

/** The finished sample: its image, or a BAD_INPUT error for a sample without one. */
function sampleOf(
  s: { key: string; names: string[]; sample?: TarSample },
  where: string,
): TarSample {
  return s.sample ?? {
    key: s.key,
    source: `${where}:${s.key}`,
    error: new WebcapError(
      "BAD_INPUT",
      `${where}: sample "${s.key}" has no image member (it holds ${s.names.join(", ")}); ` +
        "a WebDataset sample needs KEY.jpg, .png, .webp, .bmp, .tiff or .gif",
    ),
  };
}
