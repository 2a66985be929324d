// For backends_test.ts's subprocesses: `deno run [permissions] print_backend.ts TOKENIZER TEXT`
// prints, as JSON, the library the tokenizer loads on by default, its ids of TEXT, and the error
// code of asking for the native library ("" when it loads).
import { Tokenizer } from "../../src/text/tokenizer.ts";
import { WebcapError } from "../../src/errors.ts";

const [path, text] = Deno.args;
const tok = await Tokenizer.fromFile(path);
let native = "";
try {
  Tokenizer.fromJSON(await Deno.readTextFile(path), path, {}, { backend: "tokenizers" });
} catch (e) {
  native = e instanceof WebcapError ? e.code : String(e);
}
console.log(JSON.stringify({ backend: tok.backend, ids: tok.encode(text), native }));
