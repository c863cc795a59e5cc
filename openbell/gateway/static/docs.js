// The API reference, rendered from /openapi.json (no CDN, no Swagger UI bundle).
import { clear, h } from "./util.js";

function schemaOf(spec, ref) {
  const name = ref && ref.$ref ? ref.$ref.split("/").pop() : null;
  return name ? [name, spec.components.schemas[name]] : [null, ref];
}

function fields(spec, schema) {
  if (!schema || !schema.properties) return null;
  const required = new Set(schema.required || []);
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Notes"))),
    h("tbody", {}, Object.entries(schema.properties).map(([name, prop]) => {
      const [refName, resolved] = schemaOf(spec, prop.anyOf ? prop.anyOf[0] : prop);
      const type = refName || resolved.type || (resolved.enum ? "enum" : "");
      const notes = [resolved.enum ? resolved.enum.join(" | ") : "", prop.description || "",
                     resolved.pattern ? `pattern ${resolved.pattern}` : "",
                     "default" in prop ? `default ${JSON.stringify(prop.default)}` : ""]
        .filter(Boolean).join(" · ");
      return h("tr", {}, h("td", { class: "path" }, name + (required.has(name) ? " *" : "")),
        h("td", {}, type), h("td", { class: "muted" }, notes));
    })));
}

function operation(spec, path, method, op) {
  const body = op.requestBody ? schemaOf(spec, op.requestBody.content["application/json"].schema) : null;
  const params = (op.parameters || []).map((p) => `${p.name} (${p.in}, ${p.schema.type})`);
  return h("details", {},
    h("summary", {}, h("span", { class: `method m-${method}` }, method.toUpperCase()),
      h("span", { class: "path" }, path), h("span", { class: "muted" }, op.summary)),
    h("div", { class: "body" },
      op.description ? h("p", {}, op.description) : null,
      params.length ? h("p", {}, h("span", { class: "muted" }, "Parameters: "), params.join(", ")) : null,
      body ? [h("p", {}, h("span", { class: "muted" }, "Body: "), body[0] || "JSON"), fields(spec, body[1])] : null,
      op.security ? h("p", { class: "muted" }, "Signed: OB-KEY, OB-TS, OB-NONCE, OB-SIGNATURE") : null));
}

const spec = await (await fetch("/openapi.json")).json();
const byTag = new Map();
for (const [path, methods] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const tag = (op.tags && op.tags[0]) || "other";
    if (!byTag.has(tag)) byTag.set(tag, []);
    byTag.get(tag).push(operation(spec, path, method, op));
  }
}
clear(document.getElementById("docs"),
  h("h1", {}, spec.info.title),
  h("p", { class: "intro" }, spec.info.description),
  [...byTag].map(([tag, ops]) => [h("h2", {}, tag), ops]));
