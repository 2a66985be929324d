/**
 * The first-use path of the README from outside the repository: the library imported by path
 * from a scratch folder, a clean `deno publish --dry-run`, and a fresh install that prints no
 * build-script warning.
 */
import assert from "node:assert/strict";
import { fixture } from "../util.ts";

const root = new URL("../../", import.meta.url).pathname;

async function deno(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, out: text(r.stdout) + text(r.stderr) };
}

Deno.test("first use: a script outside the repository imports mod.ts by path and captions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-scratch-" });
  try {
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { Captioner } from ${JSON.stringify(`${root}mod.ts`)};
const captioner = await Captioner.fromPretrained(${JSON.stringify(fixture("hf/vit-gpt2"))});
const [result] = await captioner.caption(${
        JSON.stringify(fixture("hf/preprocess/pattern.png"))
      }, { maxNewTokens: 3 });
console.log(JSON.stringify(result.captions[0].tokens));
captioner.dispose();
`,
    );
    const r = await deno(["run", "-A", "main.ts"], dir);
    assert.equal(r.code, 0, r.out);
    const tokens = JSON.parse(r.out.split("\n").find((l) => l.startsWith("["))!);
    assert.equal(tokens.length, 3, r.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("first use: every npm specifier in src/ names the version of deno.json's import map", async () => {
  const imports: Record<string, string> = JSON.parse(await Deno.readTextFile(`${root}deno.json`))
    .imports;
  const found: string[] = [];
  for await (const file of walkTs(`${root}src`)) {
    const text = await Deno.readTextFile(file);
    for (const m of text.matchAll(/from "(npm:(@?[^@"]+)@[^"/]+)[^"]*"/g)) { // subpath after version
      found.push(m[1]);
      assert.equal(m[1], imports[m[2]], `${file}: ${m[1]} vs the import map's ${imports[m[2]]}`);
    }
    assert.doesNotMatch(text, /from "(?!npm:|node:|\.)[^"]+"/, `${file}: a bare specifier`);
  }
  assert.ok(found.length > 0, "the library has npm dependencies");
});

async function* walkTs(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walkTs(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

Deno.test("first use: deno publish --dry-run is clean (license, no warnings)", async () => {
  const r = await deno(["publish", "--dry-run", "--allow-dirty"], root);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /^\s*(warning|error)\b/im, "no warning or error lines");
  assert.match(r.out, /LICENSE/);
});

Deno.test("first use: deno doc --lint mod.ts reports nothing (every public symbol documented)", async () => {
  const r = await deno(["doc", "--lint", "mod.ts"], root);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /^\s*error\b/im, r.out);
});

Deno.test("first use: a fresh install prints no build-script warning", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webcap-install-" });
  try {
    for (const f of ["deno.json", "deno.lock"]) await Deno.copyFile(`${root}${f}`, `${dir}/${f}`);
    const r = await deno(["install"], dir);
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /warning|build scripts/i);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
