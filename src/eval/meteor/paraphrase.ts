/**
 * Meteor paraphrase tables (`data/paraphrase-en.gz` format) for the paraphrase module, as
 * `edu.cmu.meteor.aligner.ParaphraseTransducer` reads them: repeated groups of three lines,
 * `probability` (ignored, as Meteor ignores it), `phrase`, `paraphrase`, tokens separated by
 * whitespace. The table is user-supplied: Meteor's own English table is not bundled.
 * @module
 */

import { WebcapError } from "../../errors.ts";
import { bytesToText, readResourceBytes } from "../resource_text.ts";

/** A trie node over word ids of left-hand phrases. */
interface TrieNode {
  next: Map<number, TrieNode>;
  /** Indices of paraphrases whose left-hand phrase ends here. */
  emit: number[];
}

/** One left-hand phrase found in a sentence: its length and the paraphrase it maps to. */
export interface ParaphrasePath {
  /** Number of sentence words the left-hand phrase covers. */
  length: number;
  /** Word ids of the right-hand phrase. */
  paraphrase: readonly number[];
}

/** A loaded paraphrase table: phrase → paraphrases, over an interned vocabulary. */
export class ParaphraseTable {
  private readonly vocab = new Map<string, number>();
  private readonly root: TrieNode = { next: new Map(), emit: [] };
  private readonly paraphrases: number[][] = [];

  private constructor() {}

  /** Number of (phrase, paraphrase) entries. */
  get size(): number {
    return this.paraphrases.length;
  }

  /** Parse the table from its text (three lines per entry). */
  static parse(text: string): ParaphraseTable {
    const table = new ParaphraseTable();
    const lines = text.split(/\r\n|\r|\n/);
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    if (lines.length % 3 !== 0) {
      throw new WebcapError(
        "BAD_OPTION",
        `paraphrase table has ${lines.length} lines, not a multiple of 3; each entry must be ` +
          "a probability line, a phrase line and a paraphrase line",
      );
    }
    for (let i = 0; i < lines.length; i += 3) table.add(lines[i + 1], lines[i + 2]);
    return table;
  }

  /** Parse the table from file bytes, gzipped (`.gz`) or plain text. */
  static async fromBytes(bytes: Uint8Array): Promise<ParaphraseTable> {
    return ParaphraseTable.parse(await bytesToText(bytes));
  }

  /** Load a table from a local path (Deno) or URL, gzipped or plain text. */
  static async load(where: string | URL): Promise<ParaphraseTable> {
    return ParaphraseTable.fromBytes(await readResourceBytes(where));
  }

  /** Word id of `word`, or -1 when the table never uses it. */
  wordId(word: string): number {
    return this.vocab.get(word) ?? -1;
  }

  /**
   * Left-hand phrases that start at `words[start]` (word ids from {@link wordId}), shortest
   * first, each with every paraphrase it maps to.
   */
  pathsAt(words: readonly number[], start: number): ParaphrasePath[] {
    const out: ParaphrasePath[] = [];
    let node: TrieNode | undefined = this.root;
    for (let i = start; i < words.length; i++) {
      node = node.next.get(words[i]);
      if (!node) break;
      for (const idx of node.emit) {
        out.push({ length: i - start + 1, paraphrase: this.paraphrases[idx] });
      }
    }
    return out;
  }

  /** Word ids of a whitespace-separated phrase, adding new words to the vocabulary. */
  private intern(phrase: string): number[] {
    return phrase.split(/[ \t\n\r\f]+/).filter((t) => t !== "").map((t) => {
      let id = this.vocab.get(t);
      if (id === undefined) {
        id = this.vocab.size;
        this.vocab.set(t, id);
      }
      return id;
    });
  }

  /** Add one entry: `phrase` (a path in the trie) maps to `paraphrase`. */
  private add(phrase: string, paraphrase: string): void {
    const ref = this.intern(phrase);
    const par = this.intern(paraphrase);
    let node = this.root;
    for (const id of ref) {
      let child = node.next.get(id);
      if (!child) {
        child = { next: new Map(), emit: [] };
        node.next.set(id, child);
      }
      node = child;
    }
    node.emit.push(this.paraphrases.length);
    this.paraphrases.push(par);
  }
}
