/**
 * The shapes data set generator (the demo of `deno task train --demo shapes`): compositional
 * pictures like `../shared/fixtures/shapes/` — one or two coloured shapes (circle, square,
 * triangle; red, green, blue, yellow, purple) on a white, black or grey speckled background, two
 * shapes one above the other or side by side, one shape in the middle or towards a side — with
 * five reference captions each in the fixture's phrasings, in train / val / test splits. A seed
 * gives the same pictures, captions and bytes ({@link generateShapes} draws everything from one
 * `Rng`); {@link writeShapes} writes a Karpathy-layout folder (`dataset_shapes.json` and
 * `images/*.png`) that `--data` reads.
 * @module
 */
import { WebcapError } from "../../errors.ts";
import { Rng } from "../../decode/rng.ts";
import { encodeRgbPng } from "../../image/png_writer.ts";

/** Images per split. */
export interface ShapesSizes {
  train: number;
  val: number;
  test: number;
}

/** Options of {@link generateShapes}. */
export interface ShapesOptions extends ShapesSizes {
  /** Seed of the pictures and captions (default 0). */
  seed?: number;
  /** Side of each square picture in pixels, ≥ 16 (default 64). */
  size?: number;
}

/** One generated picture and its captions. */
export interface ShapesImage {
  /** `shapes_<split>_<index>.png`. */
  filename: string;
  split: keyof ShapesSizes;
  /** `[size, size, 3]` RGB bytes, rows top to bottom. */
  pixels: Uint8Array;
  /** Five reference captions. */
  captions: string[];
}

const COLOURS: Record<string, readonly number[]> = {
  red: [220, 40, 40],
  green: [30, 170, 60],
  blue: [40, 70, 220],
  yellow: [235, 215, 40],
  purple: [140, 50, 170],
};
const SHAPES = ["circle", "square", "triangle"] as const;
const BACKGROUNDS = { white: 245, black: 15, gray: 128 } as const;
/** Where a lone shape sits: centre as fractions of the side. */
const PLACES = {
  middle: [0.5, 0.5],
  left: [0.25, 0.5],
  right: [0.75, 0.5],
  top: [0.5, 0.25],
  bottom: [0.5, 0.75],
} as const;

type Shape = typeof SHAPES[number];

/** A shape to draw: kind, colour name, centre and half-size in pixels. */
interface Drawn {
  shape: Shape;
  colour: string;
  cx: number;
  cy: number;
  r: number;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng.nextFloat() * xs.length)];
}

/** Whether pixel centre (x, y) is inside `d`. */
function inside(d: Drawn, x: number, y: number): boolean {
  const dx = x - d.cx, dy = y - d.cy;
  if (d.shape === "circle") return dx * dx + dy * dy <= d.r * d.r;
  if (d.shape === "square") return Math.abs(dx) <= d.r * 0.9 && Math.abs(dy) <= d.r * 0.9;
  const t = (dy + d.r) / (1.8 * d.r); // triangle: apex at the top, base 0.8 r below the centre
  return t >= 0 && t <= 1 && Math.abs(dx) <= t * d.r;
}

/** `[S, S, 3]` pixels: the speckled background, then the shapes. */
function rasterize(S: number, bg: number, shapes: readonly Drawn[], rng: Rng): Uint8Array {
  const px = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S; i++) {
    const u = rng.nextFloat();
    const v = u < 0.04
      ? bg + Math.round((rng.nextFloat() - 0.5) * 40)
      : u < 0.045
      ? (bg >= 128 ? 255 : 0)
      : bg;
    px.fill(Math.max(0, Math.min(255, v)), i * 3, i * 3 + 3);
  }
  for (const d of shapes) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        if (inside(d, x + 0.5, y + 0.5)) px.set(COLOURS[d.colour], (y * S + x) * 3);
      }
    }
  }
  return px;
}

function named(d: Drawn): string {
  return `${d.colour} ${d.shape}`;
}

/** Five captions of one shape at `place` on `bg`. */
function oneCaptions(d: Drawn, place: string, bg: string): string[] {
  return [
    `a ${named(d)} on a ${bg} background`,
    `a ${named(d)}`,
    `there is a ${named(d)} in the ${place}`,
    `a single ${named(d)} in the ${place}`,
    `a ${d.shape} that is ${d.colour} on ${bg}`,
  ];
}

/** Five captions of `a` above (or left of) `b` on `bg`. */
function twoCaptions(a: Drawn, b: Drawn, vertical: boolean, bg: string): string[] {
  const [rel, inv] = vertical ? ["above", "below"] : ["to the left of", "to the right of"];
  return [
    `a ${named(a)} ${rel} a ${named(b)}`,
    `a ${named(b)} ${inv} a ${named(a)}`,
    `a ${named(a)} and a ${named(b)} on a ${bg} background`,
    `two shapes a ${named(a)} ${rel} a ${named(b)}`,
    `a ${named(a)} next to a ${named(b)}`,
  ];
}

/** One picture's shapes and captions. */
function scene(rng: Rng, S: number): { pixels: Uint8Array; captions: string[] } {
  const bgName = pick(rng, Object.keys(BACKGROUNDS)) as keyof typeof BACKGROUNDS;
  const jitter = () => (rng.nextFloat() - 0.5) * 0.1 * S;
  const shape = (fx: number, fy: number, colour: string): Drawn => ({
    shape: pick(rng, SHAPES),
    colour,
    cx: fx * S + jitter(),
    cy: fy * S + jitter(),
    r: S * (0.13 + rng.nextFloat() * 0.03),
  });
  const colours = Object.keys(COLOURS);
  const first = pick(rng, colours);
  if (rng.nextFloat() < 0.4) {
    const place = pick(rng, Object.keys(PLACES)) as keyof typeof PLACES;
    const d = shape(PLACES[place][0], PLACES[place][1], first);
    return {
      pixels: rasterize(S, BACKGROUNDS[bgName], [d], rng),
      captions: oneCaptions(d, place, bgName),
    };
  }
  const vertical = rng.nextFloat() < 0.5;
  const second = pick(rng, colours.filter((c) => c !== first));
  const a = vertical ? shape(0.5, 0.27, first) : shape(0.27, 0.5, first);
  const b = vertical ? shape(0.5, 0.73, second) : shape(0.73, 0.5, second);
  return {
    pixels: rasterize(S, BACKGROUNDS[bgName], [a, b], rng),
    captions: twoCaptions(a, b, vertical, bgName),
  };
}

function checkOptions(o: ShapesOptions): void {
  const n = [o.train, o.val, o.test];
  const S = o.size ?? 64, seed = o.seed ?? 0;
  if (
    !n.every((k) => Number.isInteger(k) && k >= 0) || !(Number.isInteger(S) && S >= 16) ||
    !(Number.isSafeInteger(seed) && seed >= 0)
  ) {
    throw new WebcapError(
      "BAD_OPTION",
      `shapes: split sizes (${n}) must be integers ≥ 0, size (${S}) an integer ≥ 16 and seed ` +
        `(${seed}) a safe integer ≥ 0`,
    );
  }
}

/** The pictures of every split, train first, numbered across splits as the fixture is. */
export function generateShapes(o: ShapesOptions): ShapesImage[] {
  checkOptions(o);
  const rng = new Rng(o.seed ?? 0), S = o.size ?? 64, out: ShapesImage[] = [];
  for (const split of ["train", "val", "test"] as const) {
    for (let k = 0; k < o[split]; k++) {
      const filename = `shapes_${split}_${String(out.length).padStart(5, "0")}.png`;
      out.push({ filename, split, ...scene(rng, S) });
    }
  }
  return out;
}

/**
 * Write the generated set as a Karpathy-layout folder: `dir/dataset_shapes.json` and
 * `dir/images/*.png`. Returns the data file's path.
 */
export async function writeShapes(dir: string, o: ShapesOptions): Promise<string> {
  const images = generateShapes(o), S = o.size ?? 64;
  await Deno.mkdir(`${dir}/images`, { recursive: true });
  for (const img of images) {
    await Deno.writeFile(`${dir}/images/${img.filename}`, encodeRgbPng(S, S, img.pixels));
  }
  const json = {
    dataset: "shapes",
    images: images.map((img, i) => ({
      filepath: "images",
      filename: img.filename,
      split: img.split,
      imgid: i,
      cocoid: i,
      sentences: img.captions.map((raw) => ({ raw, tokens: raw.split(" ") })),
    })),
  };
  const file = `${dir}/dataset_shapes.json`;
  await Deno.writeTextFile(file, JSON.stringify(json) + "\n");
  return file;
}
