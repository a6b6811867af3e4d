/* API docs drawn from GET /openapi.json (admin key): every route, its parameters and body schema. Offline: no
 * Swagger UI from a CDN. The raw schema stays at /openapi.json for code generators. */
"use strict";
(function () {
  var K = Kefu, el = K.el;
  K.words({zh: {apidocs: "API 文档", params: "参数", body: "请求体"}, en: {apidocs: "API docs", params: "Parameters", body: "Body"}});

  function ref(schema, spec) {
    if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()];
    return schema;
  }

  async function render() {
    var spec = await K.api("admin", "/openapi.json");
    var app = document.getElementById("app");
    app.innerHTML = "";
    app.appendChild(el("header", {"class": "top"}, [el("h1", {}, K.t("apidocs") + " · " + spec.info.title + " " + spec.info.version),
      el("a", {href: "/ui/admin", style: "color:#fff"}, "admin"), K.langButton(render)]));
    var main = el("main");
    Object.keys(spec.paths).sort().forEach(function (path) {
      Object.keys(spec.paths[path]).forEach(function (method) {
        main.appendChild(operation(method, path, spec.paths[path][method], spec));
      });
    });
    app.appendChild(main);
  }

  function operation(method, path, op, spec) {
    var params = (op.parameters || []).filter(function (p) { return p.in !== "header"; }).map(function (p) {
      return el("li", {}, p.name + " (" + p.in + (p.required ? ", required" : "") + ")"); });
    var body = op.requestBody && ref(op.requestBody.content["application/json"].schema, spec);
    var kids = [el("h2", {}, [el("code", {}, method.toUpperCase() + " " + path)]), el("p", {}, op.summary || ""),
      op.description ? el("p", {"class": "muted"}, op.description) : ""];
    if (params.length) kids.push(el("h3", {}, K.t("params")), el("ul", {}, params));
    if (body) kids.push(el("h3", {}, K.t("body")), el("pre", {}, JSON.stringify(body.properties || body, null, 1)));
    return el("section", {"class": "card"}, kids);
  }

  K.login("admin", function () { return K.api("admin", "/openapi.json"); }, render);
})();
