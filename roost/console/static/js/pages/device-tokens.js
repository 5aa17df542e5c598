// A device's tokens: list, create (limited to some resources, with an expiry), copy, delete.

import { api, enc, userPath } from "../api.js";
import {
  attempt, button, copyable, field, formValues, h, input, notify, table,
} from "../ui.js";

export function deviceTokensSection(deviceId) {
  const path = userPath("v1", `/devices/${enc(deviceId)}/tokens`);
  const list = h("div");
  const section = h("section", {}, h("h2", {}, "Device tokens"), list);

  async function load() {
    const tokens = await api("GET", path);
    list.replaceChildren(tokens.length ? table(["Id", "Name", "Token", ""], tokens.map((t) =>
      h("tr", {},
        h("td", {}, t.id), h("td", {}, t.name || ""),
        h("td", {}, t.token ? copyable(`token ${t.id}`, t.token) : "—"),
        h("td", {}, button("Delete", () => attempt(async () => {
          await api("DELETE", `${path}/${enc(t.id)}`);
          await load();
        }, `Token ${t.id} deleted`), { class: "danger", "aria-label": `Delete token ${t.id}` })))))
      : h("p", { class: "muted" }, "No device tokens."));
  }

  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const values = formValues(form);
      const body = { token_name: values.token_name };
      const resources = values.resources.split(",").map((r) => r.trim()).filter(Boolean);
      if (resources.length) body.token_resources = resources;
      if (values.expires) body.token_expiration = new Date(values.expires).getTime();
      attempt(async () => {
        await api("POST", path, body);
        form.reset();
        await load();
      }, "Device token created");
    },
  },
  field("Token name", input("token_name", { required: true })),
  field("Resources", input("resources"), "comma separated; empty: every resource"),
  field("Expires", input("expires", { type: "datetime-local" }), "empty: never"),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create device token")));
  section.append(form);
  load().catch((error) => notify(error.message, true));
  return section;
}
