/* kefu chat widget. A shop pastes one tag:
 *   <script src="https://kefu.example.com/ui/widget.js" data-key="YOUR_PUBLISHABLE_CLIENT_KEY" defer></script>
 * data-key: a publishable *client* key (chat + feedback only, rate-limited, revocable) - never an agent/admin key.
 * data-lang: zh | en (default: the browser's language; the customer can switch).
 * data-mount: a CSS selector to render inline (the hosted /ui/chat page does); without it a floating button opens
 * the chat. Plain JS, no dependencies, nothing loaded from elsewhere: it works offline and behind firewalls.
 * Rendering happens in a shadow root so the shop's CSS and ours never mix. */
(function () {
  "use strict";
  var script = document.currentScript;
  var KEY = script.getAttribute("data-key") || "";
  var BASE = script.getAttribute("data-base") || new URL(script.src, location.href).origin;
  var MOUNT = script.getAttribute("data-mount");
  var STORE = "kefu.conversation." + BASE;
  var T = {
    zh: {title: "在线客服", placeholder: "请输入您的问题…", send: "发送", human: "转人工", thinking: "正在输入…",
      sources: "参考资料", up: "有帮助", down: "没帮助", comment: "补充说明（可选）", submit: "提交", thanks: "感谢反馈",
      handoff: "已为您转接人工客服，请稍候。", agent: "人工客服", bot: "智能客服", you: "您", open: "打开客服对话",
      close: "关闭", lang: "English", newchat: "新对话", error: "抱歉，暂时无法回复，请稍后再试。",
      askHuman: "我想转人工客服", nokey: "客服尚未配置（缺少 data-key）。", message: "输入消息"},
    en: {title: "Customer service", placeholder: "Type your question…", send: "Send", human: "Talk to a human",
      thinking: "Typing…", sources: "Sources", up: "Helpful", down: "Not helpful", comment: "Comment (optional)",
      submit: "Submit", thanks: "Thanks for the feedback", handoff: "A human agent will join shortly.",
      agent: "Agent", bot: "Assistant", you: "You", open: "Open customer service chat", close: "Close", lang: "中文",
      newchat: "New chat", error: "Sorry, we cannot answer right now. Please try again later.",
      askHuman: "I would like to talk to a human agent", nokey: "Chat is not configured (no data-key).",
      message: "Message"}
  };
  var lang = script.getAttribute("data-lang") || localStorage.getItem("kefu.lang") ||
    ((navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
  var cid = localStorage.getItem(STORE) || "";
  var lastId = 0, listening = null, busy = false;
  var host = document.createElement("div");
  host.className = "kefu-widget-host";
  var root = host.attachShadow({mode: "open"});
  var el = {};

  function t(k) { return (T[lang] || T.zh)[k]; }
  function make(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (a) { n.setAttribute(a, attrs[a]); });
    if (text != null) n.textContent = text;
    return n;
  }
  function newId() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "conv-" + Array.prototype.map.call(b, function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
  }
  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({"Authorization": "Bearer " + KEY, "Content-Type": "application/json"},
      opts.headers || {});
    return fetch(BASE + path, opts);
  }

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:'Noto Sans CJK SC','Noto Sans SC','PingFang SC','Microsoft YaHei',system-ui,sans-serif}",
    ".panel{display:flex;flex-direction:column;background:#fff;color:#1a1a1a;border:1px solid #ccd;border-radius:12px;",
    "overflow:hidden;font-size:15px;line-height:1.5}",
    ".float .panel{position:fixed;right:20px;bottom:84px;width:360px;height:540px;max-height:80vh;box-shadow:0 6px 24px #0003;z-index:2147483000}",
    ".inline .panel{width:100%;height:100%;min-height:480px}",
    ".launch{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:28px;border:0;background:#0a58ca;",
    "color:#fff;font-size:15px;cursor:pointer;z-index:2147483000}",
    "header{display:flex;gap:8px;align-items:center;padding:10px 12px;background:#0a58ca;color:#fff}",
    "header h2{flex:1;margin:0;font-size:16px}",
    "header button{background:#ffffff26;color:#fff;border:1px solid #fff8;border-radius:6px;padding:2px 8px;cursor:pointer}",
    ".log{flex:1;overflow:auto;padding:12px;display:flex;flex-direction:column;gap:10px}",
    ".msg{max-width:85%;padding:8px 12px;border-radius:10px;white-space:pre-wrap;word-break:break-word}",
    ".user{align-self:flex-end;background:#0a58ca;color:#fff}",
    ".assistant{align-self:flex-start;background:#f0f2f5}",
    ".agent{align-self:flex-start;background:#fff4d6;border:1px solid #e6c35c}",
    ".who{display:block;font-size:12px;opacity:.75}",
    ".cites{margin:6px 0 0;padding:0;list-style:none;font-size:12px;color:#334}",
    ".fb{display:flex;gap:6px;margin-top:6px;flex-wrap:wrap}",
    ".fb button{font-size:12px;padding:2px 8px;border:1px solid #99a;border-radius:6px;background:#fff;cursor:pointer}",
    ".fb button[aria-pressed=true]{background:#dde6ff;border-color:#0a58ca}",
    ".fb input{font-size:12px;flex:1;min-width:120px}",
    ".notice{align-self:center;font-size:13px;color:#555}",
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #dde}",
    "form textarea{flex:1;resize:none;height:42px;padding:8px;border:1px solid #99a;border-radius:8px;font-size:15px}",
    "form button{border:0;border-radius:8px;padding:0 12px;background:#0a58ca;color:#fff;cursor:pointer}",
    "form button.human{background:#fff;color:#0a58ca;border:1px solid #0a58ca}",
    "button:focus-visible,textarea:focus-visible,input:focus-visible{outline:3px solid #ffb400;outline-offset:2px}",
    "button:disabled{opacity:.5;cursor:default}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}"
  ].join("");

  function build() {
    root.innerHTML = "";
    root.appendChild(make("style", {}, CSS));
    var wrap = make("div", {"class": MOUNT ? "inline" : "float"});
    var panel = make("section", {"class": "panel", "role": "region", "aria-label": t("title"), lang: lang === "zh" ? "zh-CN" : "en"});
    var head = make("header");
    head.appendChild(make("h2", {}, t("title")));
    el.langBtn = make("button", {type: "button", "data-testid": "lang"}, t("lang"));
    el.langBtn.onclick = function () { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("kefu.lang", lang); rebuild(); };
    el.newBtn = make("button", {type: "button"}, t("newchat"));
    el.newBtn.onclick = function () { localStorage.removeItem(STORE); localStorage.removeItem(STORE + ".cites"); cid = ""; lastId = 0; stopListening(); rebuild(); };
    head.appendChild(el.newBtn);
    head.appendChild(el.langBtn);
    panel.appendChild(head);
    el.log = make("div", {"class": "log", "role": "log", "aria-live": "polite", "data-testid": "log"});
    panel.appendChild(el.log);
    panel.appendChild(buildForm());
    wrap.appendChild(panel);
    if (!MOUNT) addLauncher(wrap, panel);
    root.appendChild(wrap);
    if (!KEY) notice(t("nokey"));
  }

  function buildForm() {
    var form = make("form");
    var label = make("label", {"for": "kefu-input", "class": "sr"}, t("message"));
    el.input = make("textarea", {id: "kefu-input", placeholder: t("placeholder"), "data-testid": "input"});
    el.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    el.send = make("button", {type: "submit", "data-testid": "send"}, t("send"));
    el.human = make("button", {type: "button", "class": "human", "data-testid": "human"}, t("human"));
    el.human.onclick = function () { ask(t("askHuman"), true); };
    form.onsubmit = function (e) {
      e.preventDefault();
      var text = el.input.value.trim();
      if (text) { el.input.value = ""; ask(text, false); }
    };
    [label, el.input, el.send, el.human].forEach(function (n) { form.appendChild(n); });
    return form;
  }

  function addLauncher(wrap, panel) {
    var open = localStorage.getItem("kefu.open") === "1";
    var btn = make("button", {type: "button", "class": "launch", "aria-label": t("open"), "aria-expanded": String(open)}, lang === "zh" ? "客服" : "Chat");
    panel.hidden = !open;
    btn.onclick = function () {
      panel.hidden = !panel.hidden;
      btn.setAttribute("aria-expanded", String(!panel.hidden));
      localStorage.setItem("kefu.open", panel.hidden ? "0" : "1");
      if (!panel.hidden) el.input.focus();
    };
    wrap.appendChild(btn);
  }

  function notice(text) { el.log.appendChild(make("p", {"class": "notice"}, text)); scroll(); }
  function scroll() { el.log.scrollTop = el.log.scrollHeight; }

  function bubble(role, author, text) {
    var kind = role === "user" ? "user" : (author && author.indexOf("agent:") === 0 ? "agent" : "assistant");
    var b = make("div", {"class": "msg " + kind, "data-role": kind});
    b.appendChild(make("span", {"class": "who"}, kind === "user" ? t("you") : kind === "agent" ? t("agent") : t("bot")));
    var body = make("span", {"class": "body"}, text || "");
    b.appendChild(body);
    el.log.appendChild(b);
    scroll();
    return {node: b, body: body};
  }

  function showCitations(b, cites) {
    if (!cites || !cites.length) return;
    var list = make("ul", {"class": "cites", "aria-label": t("sources"), "data-testid": "citations"});
    cites.forEach(function (c) {
      list.appendChild(make("li", {}, "[" + c.n + "] " + c.source + (c.heading ? " · " + c.heading : "")));
    });
    b.node.appendChild(list);
  }

  function feedbackBar(b, messageId) {
    var bar = make("div", {"class": "fb"});
    var comment = make("input", {type: "text", "aria-label": t("comment"), placeholder: t("comment"), hidden: ""});
    var submit = make("button", {type: "button", hidden: ""}, t("submit"));
    var rating = null;
    [["up", "▲ "], ["down", "▼ "]].forEach(function (r) {
      var btn = make("button", {type: "button", "aria-pressed": "false", "data-testid": "thumb-" + r[0]}, r[1] + t(r[0]));
      btn.onclick = function () {
        rating = r[0];
        bar.querySelectorAll("button[aria-pressed]").forEach(function (x) { x.setAttribute("aria-pressed", "false"); });
        btn.setAttribute("aria-pressed", "true");
        comment.hidden = submit.hidden = false;
        comment.focus();
      };
      bar.appendChild(btn);
    });
    submit.onclick = function () {
      var body = {conversation_id: cid, message_id: messageId, rating: rating, text: comment.value.trim() || null};
      api("/v1/feedback", {method: "POST", body: JSON.stringify(body)}).then(function (r) {
        if (r.ok) { bar.textContent = t("thanks"); }
      });
    };
    bar.appendChild(comment);
    bar.appendChild(submit);
    b.node.appendChild(bar);
  }

  function parseEvents(buffer, onEvent) {
    var parts = buffer.split("\n\n");
    var rest = parts.pop();
    parts.forEach(function (p) {
      p.split("\n").forEach(function (line) {
        if (line.indexOf("data: ") === 0 && line.slice(6) !== "[DONE]") onEvent(JSON.parse(line.slice(6)));
      });
    });
    return rest;
  }

  async function ask(text, handoff) {
    if (busy || !KEY) return;
    busy = true;
    el.send.disabled = el.human.disabled = true;
    if (!cid) { cid = newId(); localStorage.setItem(STORE, cid); }
    bubble("user", "customer", text);
    var b = bubble("assistant", "bot", "");
    b.body.textContent = t("thinking");
    var ext = null;
    try {
      ext = await stream(text, handoff, b);
    } catch (e) {
      b.body.textContent = t("error");
    }
    busy = false;
    el.send.disabled = el.human.disabled = false;
    await afterAnswer(b, ext);
  }

  async function stream(text, handoff, b) {
    var body = {model: "kefu", stream: true, messages: [{role: "user", content: text}],
      kefu: {conversation_id: cid, handoff: handoff}};
    var r = await api("/v1/chat/completions", {method: "POST", body: JSON.stringify(body)});
    if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
    var reader = r.body.getReader(), dec = new TextDecoder(), buf = "", got = "", ext = null;
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buf = parseEvents(buf + dec.decode(chunk.value, {stream: true}), function (ev) {
        if (ev.error) throw new Error(ev.error.message);
        var c = ev.choices && ev.choices[0];
        if (c && c.delta && c.delta.content) { got += c.delta.content; b.body.textContent = got; scroll(); }
        if (ev.kefu) ext = ev.kefu;
      });
    }
    if (!got) b.node.remove();
    return ext;
  }

  async function afterAnswer(b, ext) {
    if (ext) showCitations(b, ext.citations);
    var known = lastId;
    var msgs = await history();
    var mine = msgs.filter(function (m) { return m.role === "assistant" && m.id > known && m.author === "bot"; });
    if (ext && b.node.isConnected && mine.length) {
      var id = mine[mine.length - 1].id;
      feedbackBar(b, id);
      if (ext.citations && ext.citations.length) saveCitations(id, ext.citations);
    }
    if (ext && ext.handoff) { notice(t("handoff")); startListening(); }
  }

  // Citations are not part of the stored history: the widget keeps them per message so a reload shows them.
  function citeStore() { return JSON.parse(localStorage.getItem(STORE + ".cites") || "{}"); }
  function saveCitations(id, cites) {
    var all = citeStore();
    all[id] = cites;
    localStorage.setItem(STORE + ".cites", JSON.stringify(all));
  }

  async function history() {
    var r = await api("/v1/conversations/" + encodeURIComponent(cid) + "/messages?after=" + lastId);
    if (!r.ok) return [];
    var data = await r.json();
    data.messages.forEach(function (m) { lastId = Math.max(lastId, m.id); });
    if (data.status === "handoff") startListening(); else stopListening();
    return data.messages;
  }

  // While a human has the conversation, the server pushes each new message (SSE over fetch, the key in a header):
  // the agent's reply appears as soon as it is sent. A dropped stream reconnects from the last message it saw.
  function startListening() {
    if (listening) return;
    listening = new AbortController();
    listen(listening);
  }
  async function listen(ctl) {
    var wait = 1000;
    while (listening === ctl) {
      try {
        var r = await api("/v1/conversations/" + encodeURIComponent(cid) + "/events?after=" + lastId, {signal: ctl.signal});
        if (r.status === 401 || r.status === 403 || r.status === 404) break;
        if (r.ok && r.body) { wait = 1000; await readStream(r.body, onLive); }
      } catch (e) { if (listening !== ctl) return; }
      await new Promise(function (ok) { setTimeout(ok, wait); });
      wait = Math.min(wait * 2, 10000);
    }
  }
  async function readStream(body, onEvent) {
    var reader = body.getReader(), dec = new TextDecoder(), buf = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) return;
      buf += dec.decode(chunk.value, {stream: true});
      var parts = buf.split("\n\n");
      buf = parts.pop();
      parts.forEach(function (block) {
        var name = "message", data = "";
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) name = line.slice(7);
          else if (line.indexOf("data: ") === 0) data += line.slice(6);
        });
        if (data) onEvent(name, JSON.parse(data));
      });
    }
  }
  function onLive(name, data) {
    if (name === "status" && data.status !== "handoff") { stopListening(); return; }
    if (name !== "message" || data.id <= lastId) return;
    lastId = data.id;
    if (data.author.indexOf("agent:") === 0) bubble(data.role, data.author, data.content);
  }
  function stopListening() { if (listening) { var c = listening; listening = null; c.abort(); } }

  async function restore() {
    if (!cid || !KEY) return;
    lastId = 0;
    var msgs = await history();
    msgs.forEach(function (m) {
      var b = bubble(m.role, m.author, m.content);
      if (m.author !== "bot") return;
      showCitations(b, citeStore()[m.id]);
      feedbackBar(b, m.id);
    });
  }

  function rebuild() { build(); restore(); }

  function start() {
    var target = MOUNT ? document.querySelector(MOUNT) : document.body;
    target.appendChild(host);
    rebuild();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
