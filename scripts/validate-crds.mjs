// Validates custom resources offline against their CRDs' schemas, by apiVersion and kind, with the
// @kubernetes-models packages (package.json): cert-manager's, the Gateway API's. The built-in kinds
// are kubernetes_validate's (Python); this is for what a cluster learns from CRDs.
//
// stdin: a JSON array of objects. stdout: a JSON array, one entry per object: null when valid, else
// the reasons. Exit 0 when every object is valid, 1 when one is not, 2 when a kind has no schema here.
import { readFileSync } from "node:fs";

// API group -> the package that carries its CRDs' schemas.
const PACKAGES = {
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "acme.cert-manager.io": "@kubernetes-models/cert-manager",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "gateway.networking.x-k8s.io": "@kubernetes-models/gateway-api",
};

async function modelOf(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version || !/^[A-Za-z]+$/.test(kind)) return null;
  try {
    const module = await import(`${pkg}/${group}/${version}/${kind}`);
    return module[kind] ?? null;
  } catch {
    return null;
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
let unknown = false;
for (const object of objects) {
  const Model = await modelOf(object.apiVersion ?? "", object.kind ?? "");
  if (Model === null) {
    unknown = true;
    results.push([`no schema for ${object.apiVersion} ${object.kind}`]);
    continue;
  }
  try {
    new Model(object).validate();
    results.push(null);
  } catch (error) {
    const details = error.errors ?? [];
    results.push(details.length ? details.map((e) => `${e.instancePath || "/"} ${e.message}`) : [String(error.message ?? error)]);
  }
}
process.stdout.write(JSON.stringify(results));
process.exitCode = unknown ? 2 : results.some((r) => r !== null) ? 1 : 0;
