#!/usr/bin/env node
// Validates Kubernetes manifests against the Kubernetes API schemas, without a cluster.
//
//   node tests/deploy/validate-manifests.mjs [--json] [--extract-configs DIR] [PATH...]
//
// PATH: YAML files or folders (searched for *.yaml / *.yml); default deploy/kubernetes/.
// Every document of every file must:
//   - parse as YAML (no duplicate keys, no syntax errors);
//   - have an apiVersion/kind that the npm package kubernetes-models knows, and pass its
//     validate() (the OpenAPI schema of the Kubernetes API: types, required fields, enums, formats);
//   - have no field the schema does not define. kubernetes-models' validators accept unknown
//     fields, but the API server (kubectl's default strict field validation) rejects them and a
//     misspelt field (`readinesProbe`) is a classic silent mistake, so this script walks each
//     object along the type declarations (.d.ts) that kubernetes-models ships with its schemas.
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
const modelsRoot = path.dirname(require.resolve("kubernetes-models/package.json"));
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
// kubernetes-models lays them out as <group>/<version>/<Kind> ("v1/ConfigMap" for the core group).
async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  const rel = path.join(...apiVersion.split("/"), kind);
  const file = path.join(modelsRoot, `${rel}.js`);
  if (!fs.existsSync(file)) return null;
  const mod = require(file);
  return { cls: mod[kind], dts: path.join(modelsRoot, `${rel}.d.ts`) };
}

// ---- strict fields: a tiny reader of kubernetes-models' .d.ts declarations -------------------------
// Each type lives in its own file: `export interface IProbe { "exec"?: IIoK8s...ExecAction; ... }`,
// with imports `import { IIoK8s...ExecAction } from "./ExecAction";`. Field types are one of:
// primitives, string-literal unions, Array<T>, {[key: string]: T}, or an imported interface (or an
// imported alias of primitives such as IntOrString / Quantity / Time).
const typeCache = new Map();
function resolveModule(fromFile, spec) {
  let base;
  if (spec.startsWith(".")) base = path.resolve(path.dirname(fromFile), spec);
  else if (spec.startsWith("@kubernetes-models/apimachinery/")) {
    base = path.join(apimachineryRoot, spec.slice("@kubernetes-models/apimachinery/".length));
  } else if (spec.startsWith("kubernetes-models/")) {
    base = path.join(modelsRoot, spec.slice("kubernetes-models/".length));
  } else return null;
  return `${base}.d.ts`;
}
function readType(dtsFile) {
  if (typeCache.has(dtsFile)) return typeCache.get(dtsFile);
  let info = { open: true };  // unknown shape: accept anything below
  if (fs.existsSync(dtsFile)) {
    const src = fs.readFileSync(dtsFile, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
    const imports = new Map();
    for (const m of src.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g)) {
      for (const name of m[1].split(",").map((s) => s.trim())) imports.set(name, m[2]);
    }
    const iface = src.match(/export interface (\w+)(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/);
    if (iface) {
      const fields = new Map();
      // top-level members are indented by exactly 4 spaces; nested {[key]: T} bodies by 8
      let current = null;
      for (const line of iface[2].split("\n")) {
        const m = line.match(/^ {4}"([^"]+)"\??: (.*)$/);
        if (m) {
          current = m[1];
          fields.set(current, m[2]);
        } else if (current && /^ {5,}/.test(line)) {
          fields.set(current, `${fields.get(current)} ${line.trim()}`);
        }
      }
      for (const [k, t] of fields) fields.set(k, t.replace(/\s+/g, " ").replace(/;$/, "").trim());
      info = { open: false, fields, imports, file: dtsFile };
    } else if (/export declare type \w+ = [^;{]*;/.test(src)) {
      info = { open: true, scalar: true };
    }
  }
  typeCache.set(dtsFile, info);
  return info;
}
function checkFields(value, typeExpr, ctx, where, errors) {
  if (value === null || value === undefined) return;
  let m;
  typeExpr = typeExpr.trim();
  if ((m = typeExpr.match(/^Array<(.+)>$/))) {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, m[1], ctx, `${where}[${i}]`, errors));
    return;
  }
  if ((m = typeExpr.match(/^\{ \[key: string\]: (.+); \}$/))) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) checkFields(v, m[1], ctx, `${where}.${k}`, errors);
    }
    return;
  }
  if (!/^I\w+$/.test(typeExpr)) return;  // primitive, literal union, any: the schema checks those
  const spec = ctx.imports.get(typeExpr);
  if (!spec) return;
  const dts = resolveModule(ctx.file, spec);
  if (dts) checkObject(value, readType(dts), where, errors);
}
function checkObject(value, info, where, errors) {
  if (info.open || !value || typeof value !== "object" || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (!info.fields.has(k)) {
      errors.push(`${where || "(root)"}: unknown field "${k}" (known: ${[...info.fields.keys()].join(", ")})`);
      continue;
    }
    checkFields(v, info.fields.get(k), info, where ? `${where}.${k}` : k, errors);
  }
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
