// The API reference: every operation and request/response schema of /openapi.json, as plain HTML.
"use strict";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.type === "array") return `list of ${typeOf(schema.items)}`;
  return schema.format ? `${schema.type} (${schema.format})` : schema.type || "any";
}

function bounds(schema) {
  const parts = [];
  for (const [key, label] of [["minimum", ">="], ["exclusiveMinimum", ">"], ["maximum", "<="],
    ["exclusiveMaximum", "<"], ["minItems", "items >="], ["maxItems", "items <="], ["pattern", "matches"]]) {
    if (schema[key] !== undefined) parts.push(`${label} ${schema[key]}`);
  }
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join(", ");
}

function schemaTable(name, schema) {
  const section = el("section");
  section.id = `schema-${name}`;
  section.append(el("h3", name));
  if (schema.description) section.append(el("p", schema.description));
  const props = schema.properties || {};
  if (!Object.keys(props).length) return section;
  const table = el("table");
  const head = table.createTHead().insertRow();
  for (const title of ["field", "type", "required", "bounds", "description"]) head.append(el("th", title));
  const body = table.createTBody();
  const required = new Set(schema.required || []);
  for (const [field, spec] of Object.entries(props)) {
    const row = body.insertRow();
    for (const text of [field, typeOf(spec), required.has(field) ? "yes" : "", bounds(spec), spec.description || ""]) {
      row.append(el("td", text));
    }
  }
  section.append(table);
  return section;
}

function operation(path, method, op) {
  const section = el("section");
  section.append(el("h3", `${method.toUpperCase()} ${path}`));
  if (op.summary) section.append(el("p", op.summary));
  if (op.description) section.append(el("p", op.description));
  for (const param of op.parameters || []) {
    section.append(el("p", `${param.in} ${param.name}${param.required ? " (required)" : ""}: ` +
      `${param.description || typeOf(param.schema)}`));
  }
  const content = (op.requestBody || {}).content || {};
  for (const [type, spec] of Object.entries(content)) {
    section.append(el("p", `request body ${type}: ${typeOf(spec.schema)}`));
  }
  for (const [status, response] of Object.entries(op.responses || {})) {
    const schema = ((response.content || {})["application/json"] || {}).schema;
    section.append(el("p", `${status} ${response.description || ""}${schema ? `: ${typeOf(schema)}` : ""}`));
  }
  return section;
}

async function main() {
  const root = document.getElementById("api");
  try {
    const response = await fetch("/openapi.json");
    const spec = await response.json();
    root.replaceChildren(el("h2", `${spec.info.title} ${spec.info.version}`), el("p", spec.info.description || ""));
    root.append(el("h2", "Operations"));
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) root.append(operation(path, method, op));
    }
    root.append(el("h2", "Schemas"));
    for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
      root.append(schemaTable(name, schema));
    }
  } catch (err) {
    root.replaceChildren(el("p", `could not read /openapi.json: ${err}`));
  }
}

main();
