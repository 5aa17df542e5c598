// Endpoints (/v1/users/{u}/endpoints): list, create, edit, call. Until the server has them, the
// page shows the server's answer.

import { api, enc, userPath } from "../api.js";
import { attempt, button, field, formValues, h, input, json, notify, table } from "../ui.js";

function parse(text, what) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}

export function endpointsPage(main) {
  const path = userPath("v1", "/endpoints");
  const list = h("div");
  const result = h("div", { "aria-live": "polite" });

  async function load() {
    const endpoints = await api("GET", path);
    list.replaceChildren(endpoints.length ? table(["Endpoint", "Type", "Config", "Call with (JSON)", ""],
      endpoints.map((e) => {
        const config = h("textarea", { "aria-label": `Config of ${e.endpoint}` }, json(e.config || {}));
        const data = h("textarea", { "aria-label": `Data to call ${e.endpoint} with` }, "{}");
        return h("tr", {},
          h("td", {}, e.endpoint, h("div", { class: "muted" }, e.name || "")),
          h("td", {}, e.type || ""), h("td", {}, config), h("td", {}, data),
          h("td", { class: "actions" },
            button("Save", () => attempt(async () => {
              await api("PUT", `${path}/${enc(e.endpoint)}`, { config: parse(config.value, "Config") });
            }, `Endpoint ${e.endpoint} saved`), { "aria-label": `Save endpoint ${e.endpoint}` }),
            button("Call", () => attempt(async () => {
              const answer = await api("POST", `${path}/${enc(e.endpoint)}/call`, parse(data.value, "Data"));
              result.replaceChildren(h("pre", {}, json(answer)));
            }, `Endpoint ${e.endpoint} called`), { "aria-label": `Call endpoint ${e.endpoint}` }),
            button("Delete", () => attempt(async () => {
              await api("DELETE", `${path}/${enc(e.endpoint)}`);
              await load();
            }, `Endpoint ${e.endpoint} deleted`), {
              class: "danger", "aria-label": `Delete endpoint ${e.endpoint}`,
            })));
      })) : h("p", { class: "muted" }, "No endpoints yet."));
  }

  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const v = formValues(form);
      attempt(async () => {
        await api("POST", path, {
          endpoint: v.endpoint, type: v.type, name: v.name || v.endpoint, enabled: true,
          config: parse(v.config, "Config"),
        });
        form.reset();
        await load();
      }, "Endpoint created");
    },
  },
  field("Endpoint id", input("endpoint", { required: true, pattern: "[A-Za-z0-9_]{1,32}" })),
  field("Name", input("name")),
  field("Type", h("select", { name: "type" },
    ["http_request", "email", "telegram", "ifttt"].map((t) => h("option", { value: t }, t)))),
  field("Config (JSON)", h("textarea", { name: "config",
    placeholder: '{"method": "POST", "url": "https://example.com/hook", "body_type": "json"}' })),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create endpoint")));

  main.append(h("h1", {}, "Endpoints"), list, result, h("h2", {}, "New endpoint"), form);
  load().catch((error) => list.replaceChildren(
    h("p", { class: "error" }, `The server answered: ${error.message}`)));
  return null;
}
