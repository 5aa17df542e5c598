// Access tokens of the user: list, create with allow / deny permissions, copy, delete.

import { api, enc, userPath } from "../api.js";
import {
  attempt, button, copyable, field, formValues, h, input, json, notify, table, when,
} from "../ui.js";
import { confirmButton } from "./device.js";

const PRESETS = {
  "": null,
  "Read everything": { "*": { "*": ["Read*", "List*"] } },
  "Use every device's resources": { Device: { "*": ["AccessDeviceResources", "ListDevices"] } },
  "Everything": { "*": { "*": "*" } },
};

function parsePermissions(text, name) {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${name} is not valid JSON`);
  }
}

export function tokensPage(main) {
  const path = userPath("v1", "/tokens");
  const list = h("div");
  const created = h("div", { "aria-live": "polite" });

  async function load() {
    const tokens = await api("GET", path);
    list.replaceChildren(tokens.length ? table(["Token", "Name", "Enabled", ["Expires", "hide-narrow"], ""],
      tokens.map((t) => h("tr", { "data-token": t.token },
        h("td", {}, t.token), h("td", {}, t.name || ""), h("td", {}, t.enabled ? "yes" : "no"),
        h("td", { class: "hide-narrow" }, t.expire ? when(t.expire) : "never"),
        h("td", { class: "actions" },
          button("Show", () => attempt(async () => show(await api("GET", `${path}/${enc(t.token)}`))),
            { class: "secondary", "aria-label": `Show token ${t.token}` }),
          confirmButton("Delete", `Delete token ${t.token}?`, () => attempt(async () => {
            await api("DELETE", `${path}/${enc(t.token)}`);
            created.replaceChildren();
            await load();
          }, `Token ${t.token} deleted`))))))
      : h("p", { class: "muted" }, "No access tokens."));
  }

  function show(token) {
    created.replaceChildren(h("div", { class: "panel" },
      h("h3", {}, `Token ${token.token}`),
      h("p", {}, "Send it as Authorization: Bearer … (or ?authorization=…):"),
      copyable(`access token ${token.token}`, token.access_token || ""),
      h("p", { class: "muted" }, "Allow"), h("pre", {}, json(token.allow)),
      h("p", { class: "muted" }, "Deny"), h("pre", {}, json(token.deny)),
      button("Hide", () => created.replaceChildren(), { class: "secondary" })));
  }

  const allow = h("textarea", { name: "allow", placeholder: '{"Device": {"*": ["AccessDeviceResources"]}}' });
  const deny = h("textarea", { name: "deny", placeholder: '{"Device": {"*": ["DeleteDevice"]}}' });
  const preset = h("select", {
    name: "preset",
    onchange: () => { if (PRESETS[preset.value]) allow.value = json(PRESETS[preset.value]); },
  }, Object.keys(PRESETS).map((k) => h("option", { value: k }, k || "— choose —")));
  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const values = formValues(form);
      attempt(async () => {
        const body = {
          name: values.name, description: values.description, enabled: true,
          allow: parsePermissions(values.allow, "Allow"),
          deny: parsePermissions(values.deny, "Deny"),
        };
        if (values.token) body.token = values.token;
        if (values.expire) body.expire = new Date(values.expire).getTime();
        const token = await api("POST", path, body);
        form.reset();
        show(token);
        await load();
      }, "Access token created");
    },
  },
  field("Token id", input("token", { pattern: "[A-Za-z0-9_]{1,50}" }), "empty: generated"),
  field("Name", input("name", { required: true })),
  field("Description", input("description")),
  field("Expires", input("expire", { type: "datetime-local" }), "empty: never"),
  field("Permission preset", preset),
  field("Allow (JSON)", allow, "type → id → actions"),
  field("Deny (JSON)", deny, "removes what allow gives"),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create access token")));

  main.append(h("h1", {}, "Access tokens"), list, created, h("h2", {}, "New access token"), form);
  load().catch((error) => notify(error.message, true));
  return null;
}
