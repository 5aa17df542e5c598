// Small DOM helpers: elements are built with h(), never from HTML strings, so no value from the
// server is ever parsed as markup.

let uid = 0;

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "checked") { el.checked = value; el.defaultChecked = value; } // kept by reset()
    else if (name === "value") {
      el.value = value;
      if (el.tagName !== "SELECT") el.defaultValue = value; // kept by reset()
    }
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// a labelled form field; `input` is an element, given an id when it has none
export function field(label, input, hint) {
  if (!input.id) input.id = nextId("f");
  const isCheck = input.type === "checkbox";
  const labelEl = h("label", { for: input.id }, label);
  const parts = isCheck ? [input, labelEl] : [labelEl, input];
  if (hint) {
    const hintEl = h("small", { class: "muted", id: `${input.id}-hint` }, hint);
    input.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return h("div", { class: isCheck ? "field check" : "field" }, parts);
}

export function input(name, attrs = {}) {
  return h("input", { name, ...attrs });
}

export function button(text, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, text);
}

const noticeEl = () => document.getElementById("notice");

export function notify(message, isError = false) {
  const el = noticeEl();
  clear(el, h("div", { class: isError ? "notice error" : "notice" }, message));
  if (!isError) setTimeout(() => { if (el.textContent === message) clear(el); }, 4000);
}

export function clearNotice() { clear(noticeEl()); }

// runs an action of a button or form; shows the server's message on failure
export async function attempt(action, okMessage) {
  try {
    const result = await action();
    if (okMessage) notify(okMessage);
    return result;
  } catch (error) {
    notify(error.message || String(error), true);
    return undefined;
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    notify("Copied to the clipboard");
  } catch {
    // no clipboard (plain HTTP on another host): select the text for a manual copy
    notify("Copy it by hand: the clipboard is not available here", true);
  }
}

// a value with its copy button: secrets, curl commands
export function copyable(label, text) {
  const pre = h("pre", { "aria-label": label, tabindex: "0" }, text);
  return h("div", { class: "secret" }, pre, button("Copy", () => copyText(text), {
    class: "secondary", "aria-label": `Copy ${label}`,
  }));
}

// headers: text, or [text, class] ("hide-narrow": a column left out on a phone)
export function table(headers, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => (Array.isArray(t)
      ? h("th", { scope: "col", class: t[1] }, t[0])
      : h("th", { scope: "col" }, t))))),
    h("tbody", {}, rows)));
}

export function when(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

export function bytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

// the curl equivalent of an API call, with $TOKEN standing for the access token
export function curl(method, path, body) {
  const url = new URL(path, location.href).toString();
  const parts = ["curl -s"];
  if (method !== "GET" || body !== undefined) parts.push(`-X ${method}`);
  parts.push("-H \"Authorization: Bearer $TOKEN\"");
  if (body !== undefined) {
    parts.push("-H 'Content-Type: application/json'");
    parts.push(`-d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`);
  }
  parts.push(`'${url}'`);
  return parts.join(" ");
}

export function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}
