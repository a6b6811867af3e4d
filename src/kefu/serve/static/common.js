/* Shared by the agent desk, admin console and docs: i18n, login (key typed by a person, kept in sessionStorage,
 * never in a URL), the API helper and tiny DOM and SVG helpers. */
"use strict";
var Kefu = (function () {
  var lang = localStorage.getItem("kefu.lang") ||
    ((navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
  var dict = {};
  function t(k) { return (dict[lang] || {})[k] || (dict.en || {})[k] || k; }
  function words(d) { Object.keys(d).forEach(function (l) { dict[l] = Object.assign(dict[l] || {}, d[l]); }); }
  function el(tag, attrs, kids) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (a) {
      if (a.indexOf("on") === 0) n[a] = attrs[a]; else n.setAttribute(a, attrs[a]);
    });
    (Array.isArray(kids) ? kids : kids == null ? [] : [kids]).forEach(function (k) {
      n.appendChild(typeof k === "string" || typeof k === "number" ? document.createTextNode(String(k)) : k);
    });
    return n;
  }
  function key(name) { return sessionStorage.getItem("kefu.key." + name) || ""; }
  async function api(name, path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({"Authorization": "Bearer " + key(name), "Content-Type": "application/json"},
      opts.headers || {});
    var r = await fetch(path, opts);
    var body = await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error((body.error && body.error.message) || ("HTTP " + r.status));
    return body;
  }
  /* Read a server-sent event stream with the key in a header (EventSource cannot send one, and keys never go in
   * URLs); reconnect after a drop, 1 s then up to 10 s apart. onEvent(name, data). Returns {stop()}. */
  function stream(name, path, onEvent) {
    var ctl = null, stopped = false, wait = 1000;
    async function run() {
      while (!stopped) {
        ctl = new AbortController();
        try {
          var r = await fetch(path, {headers: {"Authorization": "Bearer " + key(name)}, signal: ctl.signal});
          if (r.status === 401 || r.status === 403 || r.status === 404) return;
          if (r.ok && r.body) { wait = 1000; await readEvents(r.body, onEvent); }
        } catch (e) { if (stopped) return; }
        await new Promise(function (ok) { setTimeout(ok, wait); });
        wait = Math.min(wait * 2, 10000);
      }
    }
    run();
    return {stop: function () { stopped = true; if (ctl) ctl.abort(); }};
  }
  async function readEvents(body, onEvent) {
    var reader = body.getReader(), dec = new TextDecoder(), buf = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) return;
      buf += dec.decode(chunk.value, {stream: true});
      var parts = buf.split("\n\n");
      buf = parts.pop();
      parts.forEach(function (block) {
        var ev = "message", data = "";
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) ev = line.slice(7);
          else if (line.indexOf("data: ") === 0) data += line.slice(6);
        });
        if (data) onEvent(ev, JSON.parse(data));
      });
    }
  }
  /* Show a login form until a key that passes `probe` is typed in. */
  function login(name, probe, onReady) {
    var root = document.getElementById("app");
    async function tryKey() {
      try { await probe(); onReady(); return true; } catch (e) { return e; }
    }
    function form(err) {
      root.innerHTML = "";
      var input = el("input", {type: "password", id: "key", autocomplete: "off", "data-testid": "key"});
      var f = el("form", {"class": "login card", onsubmit: async function (e) {
        e.preventDefault();
        sessionStorage.setItem("kefu.key." + name, input.value.trim());
        var res = await tryKey();
        if (res !== true) { sessionStorage.removeItem("kefu.key." + name); form(res.message); }
      }}, [el("h2", {}, t("login")), el("label", {"for": "key"}, t("keylabel")), input,
        el("input", {type: "submit", value: t("signin"), "data-testid": "signin"}),
        err ? el("p", {"class": "bad", role: "alert"}, err) : ""]);
      root.appendChild(el("section", {"class": "card login"}, f));
      input.focus();
    }
    if (!key(name)) { form(); return; }
    tryKey().then(function (res) { if (res !== true) { sessionStorage.removeItem("kefu.key." + name); form(); } });
  }
  function logout(name) { sessionStorage.removeItem("kefu.key." + name); location.reload(); }
  function setLang(l) { lang = l; localStorage.setItem("kefu.lang", l); document.documentElement.lang = l === "zh" ? "zh-CN" : "en"; }
  function langButton(onChange) {
    return el("button", {type: "button", onclick: function () { setLang(lang === "zh" ? "en" : "zh"); onChange(); }},
      lang === "zh" ? "English" : "中文");
  }
  /* A bar chart in plain SVG: [[label, value], ...]. */
  function bars(pairs, title) {
    var w = 320, h = 160, pad = 24, max = Math.max.apply(null, pairs.map(function (p) { return p[1]; }).concat([1]));
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title + ": " + pairs.map(function (p) { return p[0] + " " + p[1]; }).join(", "));
    var bw = pairs.length ? (w - pad) / pairs.length : 0;
    pairs.forEach(function (p, i) {
      var bh = (h - 2 * pad) * p[1] / max, x = pad / 2 + i * bw;
      var r = document.createElementNS(ns, "rect");
      [["x", x + 4], ["y", h - pad - bh], ["width", Math.max(bw - 8, 2)], ["height", bh], ["fill", "#4a7bd0"]]
        .forEach(function (a) { r.setAttribute(a[0], a[1]); });
      svg.appendChild(r);
      [[p[0], h - 8], [String(p[1]), h - pad - bh - 4]].forEach(function (lbl) {
        var tx = document.createElementNS(ns, "text");
        tx.setAttribute("x", x + bw / 2); tx.setAttribute("y", lbl[1]); tx.setAttribute("text-anchor", "middle");
        tx.textContent = lbl[0];
        svg.appendChild(tx);
      });
    });
    return svg;
  }
  /* A line chart in plain SVG: {name: [[x, y], ...], ...}; each series its colour, a legend, min/max on the axes. */
  function lines(series, title) {
    var w = 480, h = 220, pad = 36, ns = "http://www.w3.org/2000/svg", colours = ["#4a7bd0", "#d0704a", "#3a9b5c", "#8a5cc0"];
    var names = Object.keys(series), all = [];
    names.forEach(function (n) { all = all.concat(series[n]); });
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    svg.setAttribute("data-points", String(all.length));
    var last = names.map(function (n) { var s = series[n]; return s.length ? n + " " + s[s.length - 1][1].toFixed(4) : n; });
    svg.setAttribute("aria-label", title + ": " + all.length + " points; latest " + last.join(", "));
    if (!all.length) return svg;
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    function X(v) { return pad + (w - 2 * pad) * (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5); }
    function Y(v) { return h - pad - (h - 2 * pad) * (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5); }
    function text(x, y, str, anchor) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "middle"); t.textContent = str;
      svg.appendChild(t);
    }
    var axis = document.createElementNS(ns, "path");
    axis.setAttribute("d", "M" + pad + " " + pad + "V" + (h - pad) + "H" + (w - pad));
    axis.setAttribute("stroke", "#99a"); axis.setAttribute("fill", "none");
    svg.appendChild(axis);
    text(pad - 4, Y(y1) + 4, y1.toPrecision(3), "end"); text(pad - 4, Y(y0) + 4, y0.toPrecision(3), "end");
    text(X(x0), h - pad + 14, String(x0)); text(X(x1), h - pad + 14, String(x1));
    names.forEach(function (n, i) {
      var line = document.createElementNS(ns, "polyline"), colour = colours[i % colours.length];
      line.setAttribute("points", series[n].map(function (p) { return X(p[0]) + "," + Y(p[1]); }).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", colour); line.setAttribute("stroke-width", "2");
      svg.appendChild(line);
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", w - pad); t.setAttribute("y", pad - 8 - 14 * (names.length - 1 - i)); t.setAttribute("text-anchor", "end");
      t.style.fill = colour; t.textContent = n;
      svg.appendChild(t);
    });
    return svg;
  }
  words({
    zh: {login: "登录", keylabel: "API 密钥", signin: "登录", logout: "退出"},
    en: {login: "Sign in", keylabel: "API key", signin: "Sign in", logout: "Sign out"}
  });
  return {t: t, words: words, el: el, api: api, stream: stream, login: login, logout: logout, langButton: langButton, bars: bars, lines: lines,
    get lang() { return lang; }};
})();
