// A device's properties (/v3/users/{u}/devices/{d}/properties): list, create, edit, delete.

import { api, enc, userPath } from "../api.js";
import { attempt, button, field, formValues, h, input, json, notify, table } from "../ui.js";

function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON: the text itself
  }
}

export function propertiesSection(deviceId) {
  const path = userPath("v3", `/devices/${enc(deviceId)}/properties`);
  const list = h("div");

  async function load() {
    const props = await api("GET", path);
    list.replaceChildren(props.length ? table(["Property", "Value"], props.map((p) => {
      const text = json(p.value);
      const rows = String(Math.min(12, Math.max(2, text.split("\n").length)));
      const value = h("textarea", { "aria-label": `Value of ${p.property}`, rows }, text);
      return h("tr", { "data-property": p.property },
        h("td", {}, p.property, p.name && p.name !== p.property ? h("div", { class: "muted" }, p.name) : null),
        h("td", {}, value, h("div", { class: "actions" },
          button("Save", () => attempt(async () => {
            await api("PUT", `${path}/${enc(p.property)}`, { value: parseValue(value.value) });
            await load();
          }, `Property ${p.property} saved`), { "aria-label": `Save property ${p.property}` }),
          button("Delete", () => attempt(async () => {
            await api("DELETE", `${path}/${enc(p.property)}`);
            await load();
          }, `Property ${p.property} deleted`), {
            class: "danger", "aria-label": `Delete property ${p.property}`,
          }))));
    })) : h("p", { class: "muted" }, "No properties."));
  }

  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const values = formValues(form);
      attempt(async () => {
        await api("POST", path, { property: values.property, value: parseValue(values.value) });
        form.reset();
        await load();
      }, "Property created");
    },
  },
  field("Property id", input("property", { required: true })),
  field("Value (JSON or text)", h("textarea", { name: "value", required: true })),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create property")));
  load().catch((error) => notify(error.message, true));
  return h("section", {}, h("h2", {}, "Properties"), list, form);
}
