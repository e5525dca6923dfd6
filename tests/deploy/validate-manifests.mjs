#!/usr/bin/env node
// Validates Kubernetes manifests against the Kubernetes API schemas, without a cluster.
//
//   node tests/deploy/validate-manifests.mjs [--json] [--extract-configs DIR] [PATH...]
//
// PATH: YAML files or folders (searched for *.yaml / *.yml); default deploy/kubernetes/.
// Every document of every file must:
//   - parse as YAML (no duplicate keys, no syntax errors);
//   - have an apiVersion/kind that the npm packages kubernetes-models (the Kubernetes API),
//     @kubernetes-models/keda (ScaledObject...) or @kubernetes-models/prometheus-operator
//     (PodMonitor, PrometheusRule...) know, and pass its validate() (the OpenAPI schema of the API
//     or of the CRD: types, required fields, enums, formats);
//   - have no field the schema does not define. The models' validators accept unknown fields, but
//     the API server (kubectl's default strict field validation) rejects them and a misspelt field
//     (`readinesProbe`) is a classic silent mistake, so this script walks each object along the
//     type declarations (.d.ts) that the packages ship with their schemas.
// ConfigMap values whose key ends in .yaml/.yml must parse as YAML too.
//
// --json                  print, on stdout, [{file, index, object, configs: {key: parsed}}] for
//                         the cross-checks of tests/integration/test_deploy_manifests.py
// --extract-configs DIR   write each ConfigMap's YAML values to DIR/<folder>--<configmap>--<key>
//                         (for `loopguard validate`)
// Exit status: 0 all valid, 1 some invalid (every error printed on stderr), 2 usage.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "node", "package.json"));
let YAML;
try {
  YAML = require("yaml");
  require.resolve("kubernetes-models/package.json");
} catch (e) {
  console.error(`validate-manifests: npm packages missing (${e.message.split("\n")[0]}).\n` +
    `Install them with: npm ci --prefix ${path.relative(process.cwd(), path.join(here, "node")) || "."}`);
  process.exit(2);
}
// Where the models of each API group live: Kubernetes itself (kubernetes-models), KEDA
// (@kubernetes-models/keda: keda.sh/...) and prometheus-operator
// (@kubernetes-models/prometheus-operator: monitoring.coreos.com/...), all laid out as
// <group>/<version>/<Kind>, pinned by package-lock.json.
const modelRoots = ["kubernetes-models", "@kubernetes-models/keda", "@kubernetes-models/prometheus-operator"]
  .map((name) => path.dirname(require.resolve(`${name}/package.json`)));
const apimachineryRoot = path.dirname(require.resolve("@kubernetes-models/apimachinery/package.json"));

// ---- arguments ----------------------------------------------------------------------------------
const args = process.argv.slice(2);
let json = false;
let extractDir = null;
const inputs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--json") json = true;
  else if (args[i] === "--extract-configs") {
    extractDir = args[++i];
    if (!extractDir) usage();
  } else if (args[i] === "-h" || args[i] === "--help") usage(0);
  else if (args[i].startsWith("-")) usage();
  else inputs.push(args[i]);
}
function usage(code = 2) {
  console.error("usage: validate-manifests.mjs [--json] [--extract-configs DIR] [PATH...]");
  process.exit(code);
}
if (inputs.length === 0) inputs.push(path.join(here, "..", "..", "deploy", "kubernetes"));

function yamlFiles(p) {
  const st = fs.statSync(p);
  if (st.isFile()) return [p];
  return fs.readdirSync(p, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((d) => {
      const full = path.join(p, d.name);
      if (d.isDirectory()) return yamlFiles(full);
      return /\.ya?ml$/.test(d.name) ? [full] : [];
    });
}

// ---- the models: apiVersion + kind -> class --------------------------------------------------------
// ("v1/ConfigMap" for the core group, "keda.sh/v1alpha1/ScaledObject" for a CRD).
async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  const rel = path.join(...apiVersion.split("/"), kind);
  for (const root of modelRoots) {
    const file = path.join(root, `${rel}.js`);
    if (!fs.existsSync(file)) continue;
    const mod = require(file);
    return { cls: mod[kind], dts: path.join(root, `${rel}.d.ts`) };
  }
  return null;
}

// ---- strict fields: a small reader of the models' .d.ts declarations ------------------------------
// The validators accept fields the schema does not define; the API server (strict field validation)
// rejects them, so each object is walked along its TypeScript declaration. A declaration file
// exports one interface, `export interface IProbe { "exec"?: IIoK8s...ExecAction; ... }`, whose
// member types are: primitives, literal unions, Array<T>, {[key: string]: T}, inline object types
// (CRDs nest them: `"spec": { "triggers": Array<{ "type": string; ... }>; }`), or an imported
// interface (`import { IIoK8s...ExecAction } from "./ExecAction";`), which may itself be an alias of
// primitives (IntOrString, Quantity, Time).
const typeCache = new Map();
function resolveModule(fromFile, spec) {
  let base;
  if (spec.startsWith(".")) base = path.resolve(path.dirname(fromFile), spec);
  else if (spec.startsWith("@kubernetes-models/apimachinery/")) {
    base = path.join(apimachineryRoot, spec.slice("@kubernetes-models/apimachinery/".length));
  } else if (spec.startsWith("kubernetes-models/")) {
    base = path.join(modelRoots[0], spec.slice("kubernetes-models/".length));
  } else return null;
  return `${base}.d.ts`;
}

function tokenize(src) {
  const tokens = [];
  const re = /\s+|("(?:[^"\\]|\\.)*")|([A-Za-z_$][\w$]*)|(-?\d+(?:\.\d+)?)|([{}[\]<>();:?|&,=])/gy;
  let m;
  while (re.lastIndex < src.length && (m = re.exec(src))) {
    if (m[1]) tokens.push({ k: "str", v: JSON.parse(m[1]) });
    else if (m[2]) tokens.push({ k: "id", v: m[2] });
    else if (m[3]) tokens.push({ k: "num", v: m[3] });
    else if (m[4]) tokens.push({ k: "p", v: m[4] });
  }
  return tokens;
}

// Parses a type expression from tokens[i]; returns [type, next index]. Types:
// {t: "object", fields: Map, index: type|null} | {t: "array", item} | {t: "ref", name} |
// {t: "union", options} | {t: "scalar"}
function parseType(tk, i) {
  const options = [];
  for (;;) {
    let [t, j] = parsePrimary(tk, i);
    while (tk[j] && tk[j].v === "[" && tk[j + 1] && tk[j + 1].v === "]") {
      t = { t: "array", item: t };
      j += 2;
    }
    options.push(t);
    i = j;
    if (!tk[i] || (tk[i].v !== "|" && tk[i].v !== "&")) break;
    i++;
  }
  return [options.length === 1 ? options[0] : { t: "union", options }, i];
}
function parsePrimary(tk, i) {
  const tok = tk[i];
  if (!tok) throw new Error("unexpected end of type");
  if (tok.v === "{") return parseObject(tk, i + 1);
  if (tok.v === "(") {
    const [t, j] = parseType(tk, i + 1);
    return [t, j + 1];  // ')'
  }
  if (tok.k === "id" && tok.v === "Array" && tk[i + 1] && tk[i + 1].v === "<") {
    const [item, j] = parseType(tk, i + 2);
    return [{ t: "array", item }, j + 1];  // '>'
  }
  if (tok.k === "id" && /^I[A-Z]\w*$/.test(tok.v)) return [{ t: "ref", name: tok.v }, i + 1];
  return [{ t: "scalar" }, i + 1];  // string, number, boolean, any, a literal...
}
function parseObject(tk, i) {
  const fields = new Map();
  let index = null;
  while (tk[i] && tk[i].v !== "}") {
    if (tk[i].v === "[") {  // [key: string]: T;
      let j = i;
      while (tk[j].v !== "]") j++;
      const [t, k] = parseType(tk, j + 2);  // after ']' ':'
      index = t;
      i = tk[k] && tk[k].v === ";" ? k + 1 : k;
      continue;
    }
    const name = tk[i].v;
    i++;
    if (tk[i].v === "?") i++;
    if (tk[i].v !== ":") throw new Error(`expected ':' after ${name}`);
    const [t, j] = parseType(tk, i + 1);
    fields.set(name, t);
    i = tk[j] && tk[j].v === ";" ? j + 1 : j;
  }
  return [{ t: "object", fields, index }, i + 1];
}

function readType(dtsFile) {
  if (typeCache.has(dtsFile)) return typeCache.get(dtsFile);
  let info = { open: true };  // unknown shape: accept anything below
  if (fs.existsSync(dtsFile)) {
    const src = fs.readFileSync(dtsFile, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
    const imports = new Map();
    for (const m of src.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g)) {
      for (const name of m[1].split(",").map((s) => s.trim())) imports.set(name, m[2]);
    }
    const head = src.match(/export interface \w+(?: extends [\w, ]+)? \{/);
    if (head) {
      try {
        const [type] = parseObject(tokenize(src.slice(head.index + head[0].length)), 0);
        info = { open: false, type, imports, file: dtsFile };
      } catch (e) {
        throw new Error(`${dtsFile}: cannot read its declaration: ${e.message}`);
      }
    }
  }
  typeCache.set(dtsFile, info);
  return info;
}
function checkValue(value, type, ctx, where, errors) {
  if (value === null || value === undefined) return;
  switch (type.t) {
    case "array":
      if (Array.isArray(value)) value.forEach((v, i) => checkValue(v, type.item, ctx, `${where}[${i}]`, errors));
      return;
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return;  // the schema checks types
      for (const [k, v] of Object.entries(value)) {
        const sub = where ? `${where}.${k}` : k;
        if (type.fields.has(k)) checkValue(v, type.fields.get(k), ctx, sub, errors);
        else if (type.index) checkValue(v, type.index, ctx, sub, errors);
        else errors.push(`${where || "(root)"}: unknown field "${k}" (known: ${[...type.fields.keys()].join(", ")})`);
      }
      return;
    }
    case "ref": {
      const spec = ctx.imports.get(type.name);
      const dts = spec && resolveModule(ctx.file, spec);
      if (!dts) return;
      const info = readType(dts);
      if (!info.open) checkValue(value, info.type, info, where, errors);
      return;
    }
    case "union": {
      const shaped = type.options.filter((o) => o.t !== "scalar");
      if (shaped.length === 1) checkValue(value, shaped[0], ctx, where, errors);
      return;
    }
    default:
      return;
  }
}
function checkObject(value, info, where, errors) {
  if (info.open) return;
  checkValue(value, info.type, info, where, errors);
}

// ---- main ---------------------------------------------------------------------------------------
const results = [];
let failures = 0;
const report = (file, index, msg) => {
  failures++;
  console.error(`${file}: document ${index}: ${msg}`);
};
const files = inputs.flatMap(yamlFiles);
if (files.length === 0) {
  console.error(`validate-manifests: no YAML files in ${inputs.join(" ")}`);
  process.exit(1);
}
if (extractDir) fs.mkdirSync(extractDir, { recursive: true });

for (const file of files) {
  const rel = path.relative(process.cwd(), file);
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true });
  let index = 0;
  for (const doc of docs) {
    index++;
    if (doc.errors.length) {
      for (const e of doc.errors) report(rel, index, `YAML: ${e.message}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;  // an empty document (a trailing ---)
    const { apiVersion, kind } = obj;
    const name = obj?.metadata?.name;
    const label = `${apiVersion}/${kind} ${name ?? "(no name)"}`;
    const model = await modelClass(apiVersion, kind);
    if (!model) {
      report(rel, index, `unknown apiVersion/kind ${apiVersion}/${kind}`);
      continue;
    }
    if (!name) report(rel, index, `${label}: metadata.name is missing`);
    try {
      new model.cls(obj).validate();
    } catch (e) {
      const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}` +
        (x.params && x.params.allowedValues ? ` (${x.params.allowedValues.join(", ")})` : ""));
      report(rel, index, `${label}: schema: ${details.length ? details.join("; ") : e.message}`);
    }
    const strict = [];
    checkObject(obj, readType(model.dts), "", strict);
    for (const s of strict) report(rel, index, `${label}: ${s}`);

    const configs = {};
    if (kind === "ConfigMap" && apiVersion === "v1") {
      for (const [key, text] of Object.entries(obj.data || {})) {
        if (!/\.ya?ml$/.test(key)) continue;
        const cdoc = YAML.parseDocument(text, { uniqueKeys: true });
        if (cdoc.errors.length) {
          report(rel, index, `${label}: data.${key}: YAML: ${cdoc.errors[0].message}`);
          continue;
        }
        configs[key] = cdoc.toJS();
        if (extractDir) {
          const out = `${path.basename(path.dirname(file))}--${name}--${key}`;
          fs.writeFileSync(path.join(extractDir, out), text);
        }
      }
    }
    results.push({ file: rel, index, object: obj, configs });
  }
}

if (json) process.stdout.write(JSON.stringify(results, null, 1) + "\n");
if (failures) {
  console.error(`validate-manifests: ${failures} error(s) in ${files.length} file(s)`);
  process.exit(1);
}
console.error(`validate-manifests: ${results.length} objects in ${files.length} files valid`);
