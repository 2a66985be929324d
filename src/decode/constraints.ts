/**
 * Progress of a token sequence through forced words, as transformers 4.x `ConstraintListState`
 * tracks it (with `PhrasalConstraint` and `DisjunctiveConstraint`). A word is a trie of its
 * alternatives (a phrase is a trie with one path). Reading a sequence left to right: a token that
 * starts a pending word makes it the word in progress (or completes it); a token that does not
 * continue the word in progress sends that word back to the end of the pending list, fresh.
 * States are immutable values recomputed from the tokens (the reference copies mutable objects,
 * and its disjunctive copies share their progress list; this module has no such aliasing).
 * @module
 */

type Trie = Map<number, Trie>;

/** Forced words compiled for state tracking. */
export interface ConstraintSet {
  tries: Trie[];
  /** Longest alternative per word. */
  heights: number[];
  /** max(heights): the bank weight of one completed word. */
  maxHeight: number;
}

/** Where a sequence stands. */
export interface ConstraintState {
  complete: number[];
  inProgress: { word: number; seq: number[] } | null;
  pending: number[];
  completed: boolean;
}

/** Compile words (each a list of alternatives) into tries. */
export function compileConstraints(words: readonly number[][][]): ConstraintSet {
  const tries = words.map((alts) => {
    const root: Trie = new Map();
    for (const alt of alts) {
      let level = root;
      for (const t of alt) {
        if (!level.has(t)) level.set(t, new Map());
        level = level.get(t)!;
      }
    }
    return root;
  });
  const heights = words.map((alts) => Math.max(...alts.map((a) => a.length)));
  return { tries, heights, maxHeight: Math.max(...heights) };
}

function nextTokens(trie: Trie, seq: readonly number[]): number[] {
  let level = trie;
  for (const t of seq) level = level.get(t)!;
  return [...level.keys()];
}

/** The state before any token. */
export function initialState(cs: ConstraintSet): ConstraintState {
  return { complete: [], inProgress: null, pending: cs.tries.map((_, i) => i), completed: false };
}

/** The state after one more token. */
export function addToken(cs: ConstraintSet, st: ConstraintState, token: number): ConstraintState {
  if (st.completed) return st;
  const s: ConstraintState = {
    complete: [...st.complete],
    inProgress: st.inProgress && { word: st.inProgress.word, seq: [...st.inProgress.seq] },
    pending: [...st.pending],
    completed: false,
  };
  if (s.inProgress) {
    const { word, seq } = s.inProgress;
    if (!nextTokens(cs.tries[word], seq).includes(token)) {
      s.pending.push(word);
      s.inProgress = null;
      return s;
    }
    seq.push(token);
    if (nextTokens(cs.tries[word], seq).length === 0) {
      s.complete.push(word);
      s.inProgress = null;
      s.completed = s.pending.length === 0;
    }
    return s;
  }
  const idx = s.pending.findIndex((w) => cs.tries[w].has(token));
  if (idx < 0) return s;
  const word = s.pending[idx];
  s.pending.splice(idx, 1);
  if (cs.tries[word].get(token)!.size === 0) s.complete.push(word);
  else s.inProgress = { word, seq: [token] };
  s.completed = s.pending.length === 0 && s.inProgress === null;
  return s;
}

/** The state of a whole token sequence. */
export function stateOf(cs: ConstraintSet, tokens: readonly number[]): ConstraintState {
  let st = initialState(cs);
  for (const t of tokens) {
    st = addToken(cs, st, t);
    if (st.completed) break;
  }
  return st;
}

/** Tokens that make progress: the next tokens of the word in progress, else the first tokens of every pending word. */
export function advanceTokens(cs: ConstraintSet, st: ConstraintState): number[] {
  if (st.completed) return [];
  if (st.inProgress) return nextTokens(cs.tries[st.inProgress.word], st.inProgress.seq);
  return st.pending.flatMap((w) => [...cs.tries[w].keys()]);
}

/** Bank of a state (Post & Vilar): completed words, plus partial progress on the one in progress. */
export function bank(cs: ConstraintSet, st: ConstraintState): number {
  const partial = st.inProgress
    ? cs.maxHeight - (cs.heights[st.inProgress.word] - st.inProgress.seq.length)
    : 0;
  return st.complete.length * cs.maxHeight + partial;
}
