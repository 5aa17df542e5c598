// Login: the OAuth password grant. The server's message is shown as it is; a 429 says when to
// retry (its Retry-After).

import { session } from "../api.js";
import { field, h, input } from "../ui.js";

export function loginPage(main, done) {
  const message = h("p", { class: "error", role: "alert", id: "login-error" });
  const user = input("username", { autocomplete: "username", required: true, autofocus: true });
  const password = input("password", {
    type: "password", autocomplete: "current-password", required: true,
  });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", {
    "aria-describedby": "login-error",
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      message.textContent = "";
      try {
        await session.login(user.value, password.value);
        await done();
      } catch (error) {
        let text = error.message;
        if (error.status === 429 && error.retryAfter !== null) {
          const at = new Date(Date.now() + error.retryAfter * 1000).toLocaleTimeString();
          text += ` (you may retry at ${at})`;
        }
        message.textContent = text;
        password.select();
      } finally {
        submit.disabled = false;
      }
    },
  }, field("User name", user), field("Password", password), submit, message);
  main.append(h("div", { class: "login" }, h("h1", {}, "Log in to Roost"), form));
  user.focus();
}
