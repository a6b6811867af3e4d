/* Agent desk: the escalation queue (pushed by the server over SSE, GET /v1/agent/events: new tickets highlighted
 * and announced without a reload), claim, reply as a human, release to the bot, conversation history with search. */
"use strict";
(function () {
  var K = Kefu, el = K.el, t = K.t;
  K.words({
    zh: {title: "坐席工作台", queue: "待处理工单", claim: "接单", release: "交还机器人", reply: "回复客户",
      send: "发送", search: "搜索对话", history: "对话记录", none: "暂无工单", open: "待接", claimed: "已接",
      closed: "已关闭", newticket: "新工单", pick: "选择左侧的工单或搜索结果查看对话", customer: "客户", bot: "机器人",
      agent: "人工", correct: "纠正此回答", save: "保存纠正", saved: "已保存为纠正"},
    en: {title: "Agent desk", queue: "Escalation queue", claim: "Claim", release: "Release to bot", reply: "Reply to the customer",
      send: "Send", search: "Search conversations", history: "Conversation", none: "No tickets", open: "open",
      claimed: "claimed", closed: "closed", newticket: "New ticket", pick: "Pick a ticket or a search result",
      customer: "Customer", bot: "Bot", agent: "Agent", correct: "Correct this answer", save: "Save correction",
      saved: "Saved as a correction"}
  });
  var seen = null, current = null, feed = null, tickets = [];

  function render() {
    var app = document.getElementById("app");
    app.innerHTML = "";
    document.title = "kefu · " + t("title");
    app.appendChild(el("header", {"class": "top"}, [el("h1", {}, t("title")), K.langButton(render),
      el("button", {type: "button", onclick: function () { K.logout("agent"); }}, t("logout"))]));
    var queue = el("section", {"class": "card", "aria-labelledby": "qh"}, [el("h2", {id: "qh"}, t("queue")),
      el("div", {id: "tickets", "data-testid": "tickets"})]);
    var searchBox = el("input", {type: "search", id: "q", "aria-label": t("search"), placeholder: t("search")});
    var search = el("section", {"class": "card"}, [el("h2", {}, t("search")),
      el("form", {role: "search", onsubmit: function (e) { e.preventDefault(); doSearch(searchBox.value); }},
        [searchBox, " ", el("input", {type: "submit", value: t("search")})]), el("div", {id: "results"})]);
    var conv = el("section", {"class": "card", id: "conv", "aria-live": "polite"}, el("p", {"class": "muted"}, t("pick")));
    app.appendChild(el("main", {"class": "desk"}, [el("div", {}, [queue, search]), conv]));
    showTickets(tickets, false);
    if (!feed) feed = K.stream("agent", "/v1/agent/events", onEvent);
  }

  function onEvent(name, data) {
    if (name === "tickets") showTickets(data, true);
    else if (name === "conversation" && current && data.conversation_id === current.conversation_id) {
      showConversation(current.conversation_id, current);
    }
  }

  /* Draw the queue; `announce`: say which tickets are new since the last list (not on the first one). */
  function showTickets(data, announce) {
    tickets = data;
    var live = data.filter(function (x) { return x.status !== "closed"; }).reverse();
    var box = document.getElementById("tickets");
    if (!box) return;
    var fresh = seen && announce ? live.filter(function (x) { return seen.indexOf(x.id) < 0; }) : [];
    if (fresh.length) {
      document.getElementById("announce").textContent = t("newticket") + ": #" + fresh.map(function (x) { return x.id; }).join(", #");
    }
    if (announce || seen) seen = (seen || []).concat(live.map(function (x) { return x.id; }));
    box.innerHTML = "";
    if (!live.length) box.appendChild(el("p", {"class": "muted"}, t("none")));
    live.forEach(function (x) { box.appendChild(ticketCard(x, fresh.indexOf(x) >= 0)); });
    if (current) {
      current = live.filter(function (x) { return x.id === current.id; })[0] || current;
      showConversation(current.conversation_id, current);
    }
  }

  function ticketCard(x, isNew) {
    var open = el("button", {type: "button", "class": "act secondary", onclick: function () { current = x; showConversation(x.conversation_id, x); }},
      "#" + x.id + " · " + t(x.status));
    return el("div", {"class": "ticket" + (isNew ? " new" : ""), "data-testid": "ticket", "data-ticket": x.id},
      [open, el("p", {}, x.summary), el("p", {"class": "muted"}, x.reason + " · " + x.created_at.slice(0, 19))]);
  }

  async function act(ticket, what) {
    try { await K.api("agent", "/v1/agent/tickets/" + ticket.id + "/" + what, {method: "POST"}); }
    catch (e) { alertMsg(e.message); return; }
    if (what === "release") current = null;
    else showConversation(ticket.conversation_id, current);  // the queue itself comes back over the stream
  }

  function alertMsg(text) { document.getElementById("announce").textContent = text; }

  async function showConversation(cid, ticket) {
    var data = await K.api("agent", "/v1/agent/conversations/" + encodeURIComponent(cid) + "/messages");
    var box = document.getElementById("conv");
    var typing = box.querySelector("textarea");
    var draft = typing ? typing.value : "";
    var hadFocus = typing && document.activeElement === typing;
    if (box.dataset.cid === cid && box.dataset.n === String(data.messages.length) && box.dataset.st === (ticket ? ticket.status : "")) return;
    box.innerHTML = "";
    box.dataset.cid = cid; box.dataset.n = String(data.messages.length); box.dataset.st = ticket ? ticket.status : "";
    box.appendChild(el("h2", {}, t("history") + " " + cid));
    data.messages.forEach(function (m) { box.appendChild(messageView(cid, m)); });
    if (ticket) box.appendChild(ticketActions(ticket, draft, hadFocus));
  }

  function messageView(cid, m) {
    var kind = m.role === "user" ? "user" : m.author.indexOf("agent:") === 0 ? "agent" : "bot";
    var who = kind === "user" ? t("customer") : kind === "agent" ? t("agent") : t("bot");
    var node = el("div", {"class": "msg " + kind, "data-testid": "msg-" + kind}, [el("span", {"class": "who"}, who), m.content]);
    if (kind === "bot") node.appendChild(correction(cid, m));
    return node;
  }

  function correction(cid, m) {
    var area = el("textarea", {rows: "2", "aria-label": t("correct") + " #" + m.id, "data-testid": "correction"});
    var d = el("details", {}, [el("summary", {}, t("correct")), area,
      el("button", {type: "button", "class": "act", onclick: async function () {
        await K.api("agent", "/v1/feedback", {method: "POST", body: JSON.stringify({conversation_id: cid, message_id: m.id,
          rating: "down", correction: area.value})});
        d.replaceWith(el("p", {"class": "ok"}, t("saved")));
      }}, t("save"))]);
    return d;
  }

  function ticketActions(ticket, draft, hadFocus) {
    var area = el("textarea", {id: "reply", rows: "3", style: "width:100%", "data-testid": "reply"});
    area.value = draft;
    var claim = el("button", {type: "button", "class": "act", "data-testid": "claim", onclick: function () { act(ticket, "claim"); }}, t("claim"));
    var release = el("button", {type: "button", "class": "act secondary", "data-testid": "release", onclick: function () { act(ticket, "release"); }}, t("release"));
    var form = el("form", {onsubmit: async function (e) {
      e.preventDefault();
      if (!area.value.trim()) return;
      try {
        await K.api("agent", "/v1/agent/tickets/" + ticket.id + "/reply", {method: "POST", body: JSON.stringify({text: area.value})});
        area.value = "";
      } catch (err) { alertMsg(err.message); }
      showConversation(ticket.conversation_id, ticket);
    }}, [el("label", {"for": "reply"}, t("reply")), area, el("input", {type: "submit", value: t("send"), "data-testid": "send-reply"})]);
    if (hadFocus) setTimeout(function () { area.focus(); }, 0);
    return el("div", {}, [claim, " ", release, form]);
  }

  async function doSearch(q) {
    var data = (await K.api("agent", "/v1/agent/ui/conversations?q=" + encodeURIComponent(q))).data;
    var box = document.getElementById("results");
    box.innerHTML = "";
    data.forEach(function (c) {
      box.appendChild(el("div", {"class": "ticket"}, [el("button", {type: "button", "class": "act secondary",
        onclick: function () { current = null; showConversation(c.id, null); }}, c.id.slice(0, 18)),
        el("p", {}, c.first), el("p", {"class": "muted"}, c.status + " · " + c.messages)]));
    });
  }

  K.login("agent", function () { return K.api("agent", "/v1/agent/tickets?status=open"); }, render);
})();
