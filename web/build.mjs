// Builds the console into ../codexd/web/dist (packaged with codexd, served at / on the
// WebSocket port): type-check (strict), bundle with esbuild (hashed names, no CDN, nothing
// fetched at run time), and write index.html naming the bundle.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(here, "../codexd/web/dist");
const client = resolve(here, "../clients/typescript");

// The client's generated types must exist for the type check (its own build makes them).
execFileSync(process.execPath, [join(client, "scripts/generate.mjs")], { stdio: "inherit" });
execFileSync(process.execPath, [join(here, "node_modules/typescript/bin/tsc"), "-p", here], { stdio: "inherit" });

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
const result = await esbuild.build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  outdir: join(out, "assets"),
  entryNames: "app-[hash]",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith(".js"));
const css = outputs.find((f) => f.endsWith(".css"));
const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("%APP_JS%", `/assets/${js}`)
  .replace("%APP_CSS%", `/assets/${css}`);
writeFileSync(join(out, "index.html"), html);
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`built the console into ${out}: ${js}, ${css} (${Math.round(bytes / 1024)} KiB with maps)`);
