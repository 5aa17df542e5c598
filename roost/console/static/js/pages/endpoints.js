// Endpoints (/v1/users/{u}/endpoints): list, create, edit (its config read with GET
// .../endpoints/{e}: the list leaves it out), call (POST .../call answers with the target's
// answer, or 502 saying why) and delete. An http_request endpoint is edited field by field
// (method, URL, headers, body type, body); any other type as its config in JSON.

import { api, enc, userPath } from "../api.js";
import { confirmButton } from "./device.js";
import {
  attempt, button, field, formValues, h, input, json, notify, table,
} from "../ui.js";

const TYPES = ["http_request", "email", "telegram_bot", "ifttt"];
const METHODS = ["POST", "GET", "PUT", "PATCH", "DELETE"];

function parse(text, what) {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}

// "Name: value" lines <-> [{key, value}]
function headersOf(text) {
  return text.split("\n").filter((line) => line.trim()).map((line) => {
    const colon = line.indexOf(":");
    if (colon < 1) throw new Error(`header "${line.trim()}" is not Name: value`);
    return { key: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() };
  });
}

function headerLines(headers) {
  return (headers || []).map((header) => `${header.key}: ${header.value}`).join("\n");
}

// a field two columns wide (on a wide screen)
function span2(el) {
  el.classList.add("span2");
  return el;
}

function shownAnswer(answer) {
  if (answer === null) return "(an empty answer)";
  return typeof answer === "string" ? answer : json(answer);
}

export function endpointsPage(main) {
  const path = userPath("v1", "/endpoints");
  const list = h("div");
  const callBox = h("div", { "aria-live": "polite" });
  let editing = null; // the id of the endpoint in the form, null: a new one

  const kind = h("select", { name: "type", onchange: () => showConfig() },
    TYPES.map((t) => h("option", { value: t }, t)));
  const http = h("div", { class: "grid wide" },
    field("Method", h("select", { name: "method" }, METHODS.map((m) => h("option", { value: m }, m)))),
    span2(field("URL", input("url", { type: "url", placeholder: "https://example.com/hook/{{device}}" }))),
    field("Body type", h("select", { name: "body_type" },
      h("option", { value: "json" }, "json: the call's data"),
      h("option", { value: "custom" }, "custom: the body below"))),
    span2(field("Headers", h("textarea", { name: "headers", placeholder: "X-Api-Key: …" }),
      "one per line: Name: value")),
    span2(field("Body", h("textarea", { name: "body", placeholder: '{"temperature": {{temperature}}}' }),
      "a template: {{field}} is the call data's field")));
  const other = h("div", { class: "grid wide" },
    field("Config (JSON)", h("textarea", { name: "config", placeholder: '{"recipient": "me@example.com"}' })));
  const title = h("h2", {}, "New endpoint");
  const submit = h("button", { type: "submit" }, "Create endpoint");
  const cancel = button("Cancel", () => reset(), { class: "secondary", hidden: true });
  const idInput = input("endpoint", { required: true, pattern: "[A-Za-z0-9_]{1,32}" });

  function showConfig() {
    http.hidden = kind.value !== "http_request";
    other.hidden = !http.hidden;
  }

  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const v = formValues(form);
      attempt(async () => {
        const config = kind.value === "http_request" ? {
          method: v.method, url: v.url, headers: headersOf(v.headers), body_type: v.body_type,
          body: v.body,
        } : parse(v.config, "Config") || {};
        const body = {
          name: v.name || editing || v.endpoint, description: v.description, type: kind.value,
          enabled: form.enabled.checked, config,
        };
        const id = editing;
        if (id) await api("PUT", `${path}/${enc(id)}`, body);
        else await api("POST", path, { endpoint: v.endpoint, ...body });
        reset();
        await load();
        notify(id ? `Endpoint ${id} saved` : "Endpoint created");
      });
    },
  },
  field("Endpoint id", idInput),
  field("Name", input("name")),
  field("Description", input("description")),
  field("Type", kind),
  field("Enabled", input("enabled", { type: "checkbox", checked: true })),
  http, other,
  h("div", { class: "field actions" }, submit, cancel));

  function reset() {
    editing = null;
    form.reset();
    idInput.disabled = false;
    title.textContent = "New endpoint";
    submit.textContent = "Create endpoint";
    cancel.hidden = true;
    showConfig();
  }

  async function edit(id) {
    const endpoint = await api("GET", `${path}/${enc(id)}`);
    editing = id;
    if (![...kind.options].some((option) => option.value === endpoint.type)) {
      kind.append(h("option", { value: endpoint.type }, endpoint.type)); // a type of another client
    }
    const config = endpoint.config || {};
    const values = {
      endpoint: id, name: endpoint.name || "", description: endpoint.description || "",
      type: endpoint.type, method: config.method || "POST", url: config.url || "",
      body_type: config.body_type || "json", headers: headerLines(config.headers),
      body: config.body || "", config: json(config),
    };
    for (const [name, value] of Object.entries(values)) form.elements[name].value = value;
    form.enabled.checked = endpoint.enabled;
    idInput.disabled = true;
    title.textContent = `Edit endpoint ${id}`;
    submit.textContent = "Save endpoint";
    cancel.hidden = false;
    showConfig();
    form.elements.name.focus();
  }

  function callPanel(id) {
    const data = h("textarea", { name: "data" }, "{}");
    const answer = h("div", { "aria-live": "polite" });
    const call = h("form", {
      onsubmit: (event) => {
        event.preventDefault();
        attempt(async () => {
          answer.replaceChildren(h("p", { role: "status" }, `Calling ${id}…`));
          try {
            const got = await api("POST", `${path}/${enc(id)}/call`, parse(data.value, "Data"));
            answer.replaceChildren(h("p", { class: "muted" }, "The target answered:"),
              h("pre", { "aria-label": `Answer of ${id}`, tabindex: "0" }, shownAnswer(got)));
          } catch (error) {
            answer.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
          }
        });
      },
    },
    field(`Data to call ${id} with (JSON)`, data, "empty: no data"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, `Call ${id}`),
      button("Close", () => callBox.replaceChildren(), { class: "secondary" })));
    callBox.replaceChildren(h("section", { class: "panel" }, h("h3", {}, `Call ${id}`), call, answer));
    data.focus();
  }

  async function load() {
    const endpoints = await api("GET", path);
    list.replaceChildren(endpoints.length ? table(["Endpoint", "Type", ["Enabled", "hide-narrow"], ""],
      endpoints.map((e) => h("tr", { "data-endpoint": e.endpoint },
        h("td", {}, e.endpoint, e.name && e.name !== e.endpoint ? h("div", { class: "muted" }, e.name) : null),
        h("td", {}, e.type || ""), h("td", { class: "hide-narrow" }, e.enabled ? "yes" : "no"),
        h("td", { class: "actions" },
          button("Call", () => callPanel(e.endpoint), { "aria-label": `Call endpoint ${e.endpoint}` }),
          button("Edit", () => attempt(() => edit(e.endpoint)),
            { class: "secondary", "aria-label": `Edit endpoint ${e.endpoint}` }),
          confirmButton("Delete", `Delete endpoint ${e.endpoint}?`, () => attempt(async () => {
            await api("DELETE", `${path}/${enc(e.endpoint)}`);
            if (editing === e.endpoint) reset();
            callBox.replaceChildren();
            await load();
          }, `Endpoint ${e.endpoint} deleted`))))))
      : h("p", { class: "muted" }, "No endpoints yet."));
  }

  showConfig();
  main.append(h("h1", {}, "Endpoints"), list, callBox, title, form);
  load().catch((error) => notify(error.message, true));
  return null;
}
