// 登录: POST /api/v1/session {name, password}. The answer's csrf_token is kept in memory (api.js).

import { api, explain } from "./api.js";
import { field, fill, h } from "./dom.js";

export default {
  title: "登录",
  isPublic: true,
  render(main, route, ctx) {
    const name = h("input", {
      name: "name",
      autocomplete: "username",
      required: true,
      autocapitalize: "off",
      spellcheck: "false",
    });
    name.id = "login-name";
    const password = h("input", {
      type: "password",
      name: "password",
      autocomplete: "current-password",
      required: true,
    });
    password.id = "login-password";
    const error = h("div", { class: "msg msg-error", role: "alert", id: "login-error", hidden: true });
    const submit = h("button", { type: "submit", class: "primary wide" }, "登录");
    const form = h(
      "form",
      { class: "card login-card", novalidate: true },
      h("h1", null, "预警发布值班台"),
      h("p", { class: "sub" }, "请使用您的值班账号登录"),
      field("用户名", name),
      field("密码", password),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      if (!name.value.trim() || !password.value) {
        error.textContent = "请输入用户名和密码。";
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      submit.textContent = "正在登录…";
      try {
        const { data } = await api("/api/v1/session", {
          method: "POST",
          body: { name: name.value.trim(), password: password.value },
        });
        ctx.login(data);
        ctx.go(route.hash); // logged in now: the router moves on to ?next= (or the board)
      } catch (failure) {
        password.value = "";
        error.textContent = failure.status === 401 ? "用户名或密码错误，请重新输入。" : explain(failure);
        error.hidden = false;
        password.focus();
      } finally {
        submit.disabled = false;
        submit.textContent = "登录";
      }
    });
    fill(main, h("section", { class: "page login-page" }, form));
    name.focus();
  },
};
