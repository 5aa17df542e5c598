// Users, for administrators (GET/POST /v1/users, PUT /v1/users/{u}, PUT .../password): list,
// create, enable or disable, reset a password.

import { api, enc } from "../api.js";
import {
  attempt, button, copyable, field, formValues, h, input, notify, table, when,
} from "../ui.js";
import { randomSecret } from "./devices.js";

export function usersPage(main) {
  const list = h("div");
  const shown = h("div", { "aria-live": "polite" });

  function showPassword(user, password) {
    shown.replaceChildren(h("div", { class: "panel" },
      h("p", {}, `New password of ${user} (shown this once):`),
      copyable(`new password of ${user}`, password),
      button("Done", () => shown.replaceChildren(), { class: "secondary" })));
  }

  async function load() {
    const users = await api("GET", "/v1/users");
    list.replaceChildren(table(["User", "Role", "Enabled", ["Created", "hide-narrow"], ""], users.map((u) =>
      h("tr", { "data-user": u.user },
        h("td", {}, u.user), h("td", {}, u.role), h("td", {}, u.enabled ? "yes" : "no"),
        h("td", { class: "hide-narrow" }, when(u.created)),
        h("td", { class: "actions" },
          button(u.enabled ? "Disable" : "Enable", () => attempt(async () => {
            await api("PUT", `/v1/users/${enc(u.user)}`, { enabled: !u.enabled });
            await load();
          }, `User ${u.user} ${u.enabled ? "disabled" : "enabled"}`), {
            class: "secondary", "aria-label": `${u.enabled ? "Disable" : "Enable"} ${u.user}`,
          }),
          button("Reset password", () => attempt(async () => {
            const password = randomSecret();
            await api("PUT", `/v1/users/${enc(u.user)}/password`, { password });
            showPassword(u.user, password);
          }), { class: "secondary", "aria-label": `Reset the password of ${u.user}` }))))));
  }

  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const v = formValues(form);
      attempt(async () => {
        await api("POST", "/v1/users", { user: v.user, password: v.password, role: v.role });
        form.reset();
        await load();
      }, "User created");
    },
  },
  field("User name", input("user", { required: true, autocomplete: "off" })),
  field("Password", input("password", {
    type: "password", required: true, minlength: 6, maxlength: 72, autocomplete: "new-password",
  }), "6 to 72 characters"),
  field("Role", h("select", { name: "role" },
    ["user", "admin"].map((r) => h("option", { value: r }, r)))),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create user")));

  main.append(h("h1", {}, "Users"), list, shown, h("h2", {}, "New user"), form);
  load().catch((error) => notify(error.message, true));
  return null;
}
