/* Admin console: overview charts (plain SVG), conversations with filters, feedback with "use as training data",
 * model versions (eval metrics, A/B split, promote, rollback), KB versions with rollback, audit/guard log + verify,
 * and the training page (training.js). */
"use strict";
(function () {
  var K = Kefu, el = K.el, t = K.t;
  K.words({
    zh: {title: "管理控制台", overview: "总览", conversations: "对话", feedback: "反馈", models: "模型版本", kb: "知识库",
      audit: "审计与护栏", volume: "每日回答量", resolved: "未转人工解决", escalations: "转人工（按原因）",
      guards: "护栏命中（按类型）", latency: "延迟 (ms)", thumbs: "点赞 / 点踩", convs: "对话总数",
      status: "状态", version: "模型版本", search: "搜索", filter: "筛选", any: "全部", question: "问题", answer: "回答",
      rating: "评价", comment: "留言", correction: "纠正", training: "用作训练数据", marked: "已加入训练数据",
      name: "名称", kind: "类型", traffic: "流量 %", eval: "评测", promote: "发布", rollback: "回滚到上一版本",
      split: "A/B 分流（新版本占比）", verify: "校验审计链", action: "动作", actor: "操作者", time: "时间",
      chunks: "片段数", active: "当前", kbrollback: "回滚知识库", gate: "门禁", docs: "API 文档", refresh: "刷新", guardonly: "只看护栏命中", up: "有帮助", down: "没帮助"},
    en: {title: "Admin console", overview: "Overview", conversations: "Conversations", feedback: "Feedback",
      models: "Model versions", kb: "Knowledge base", audit: "Audit & guards", volume: "Answers per day",
      resolved: "Resolved without handoff", escalations: "Escalations by reason", guards: "Guard hits by kind",
      latency: "Latency (ms)", thumbs: "Thumbs up / down", convs: "Conversations", status: "Status",
      version: "Model version", search: "Search", filter: "Filter", any: "any", question: "Question", answer: "Answer",
      rating: "Rating", comment: "Comment", correction: "Correction", training: "Use as training data",
      marked: "In training data", name: "Name", kind: "Kind", traffic: "Traffic %", eval: "Eval",
      promote: "Promote", rollback: "Roll back to the previous version", split: "A/B split (share of the new version)",
      verify: "Verify audit chain", action: "Action", actor: "Actor", time: "Time", chunks: "Chunks", active: "Active",
      kbrollback: "Roll back KB", gate: "Gate", docs: "API docs", refresh: "Refresh", guardonly: "Guard hits only", up: "Helpful", down: "Not helpful"}
  });
  var TABS = ["overview", "conversations", "feedback", "models", "train", "kb", "audit"];
  var tab = "overview";

  function render() {
    var app = document.getElementById("app");
    app.innerHTML = "";
    app.appendChild(el("header", {"class": "top"}, [el("h1", {}, t("title")),
      el("a", {href: "/ui/docs", style: "color:#fff"}, t("docs")), K.langButton(render),
      el("button", {type: "button", onclick: function () { K.logout("admin"); }}, t("logout"))]));
    var nav = el("nav", {"class": "tabs", role: "tablist"});
    TABS.forEach(function (name) {
      nav.appendChild(el("button", {type: "button", role: "tab", "aria-selected": String(name === tab), "data-tab": name,
        onclick: function () { tab = name; render(); }}, t(name)));
    });
    nav.onkeydown = function (e) {  // arrow keys move between tabs, as WAI-ARIA tabs do
      var i = TABS.indexOf(tab) + (e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0);
      if (i !== TABS.indexOf(tab) && i >= 0 && i < TABS.length) { tab = TABS[i]; render(); document.querySelector("[data-tab=" + tab + "]").focus(); }
    };
    app.appendChild(nav);
    var main = el("main", {role: "tabpanel", id: "panel"});
    app.appendChild(main);
    if (K.leaveAdminView) K.leaveAdminView();  // a page's live stream stops when another page is drawn
    Object.assign(VIEWS, K.adminViews || {});
    VIEWS[tab](main).catch(function (e) { main.appendChild(el("p", {"class": "bad", role: "alert"}, e.message)); });
  }

  function card(title, body) { return el("section", {"class": "card"}, [el("h2", {}, title)].concat(body)); }
  function table(heads, rows) {
    return el("table", {}, [el("thead", {}, el("tr", {}, heads.map(function (h) { return el("th", {scope: "col"}, h); }))),
      el("tbody", {}, rows.map(function (r) { return el("tr", {}, r.map(function (c) { return el("td", {}, c == null ? "" : c); })); }))]);
  }
  function pairs(obj) { return Object.keys(obj).map(function (k) { return [k, obj[k]]; }); }
  function say(text) { document.getElementById("announce").textContent = text; }

  var VIEWS = {
    overview: async function (main) {
      var o = await K.api("admin", "/v1/admin/ui/overview");
      var vol = pairs(o.volume).map(function (p) { return [p[0].slice(5), p[1]]; });
      main.appendChild(el("div", {"class": "grid"}, [
        card(t("volume"), [K.bars(vol, t("volume"))]),
        card(t("resolved"), [el("p", {"class": "stat", "data-testid": "resolved"}, o.resolved_without_handoff + " / " + o.conversations)]),
        card(t("escalations"), [K.bars(pairs(o.escalations), t("escalations"))]),
        card(t("guards"), [K.bars(pairs(o.guard_hits), t("guards"))]),
        card(t("latency"), [K.bars([["P50", o.latency_ms.p50 || 0], ["P99", o.latency_ms.p99 || 0]], t("latency"))]),
        card(t("thumbs"), [K.bars([[t("up"), o.thumbs.up], [t("down"), o.thumbs.down]], t("thumbs"))])]));
    },
    conversations: async function (main) {
      var q = el("input", {type: "search", id: "cq", "aria-label": t("search")});
      var st = el("select", {id: "cs", "aria-label": t("status")}, ["", "bot", "handoff"].map(function (s) { return el("option", {value: s}, s || t("any")); }));
      var ver = el("input", {type: "text", id: "cv", "aria-label": t("version"), placeholder: t("version")});
      var out = el("div");
      async function load() {
        var url = "/v1/admin/ui/conversations?q=" + encodeURIComponent(q.value) + "&status=" + st.value + "&version=" + encodeURIComponent(ver.value);
        var rows = (await K.api("admin", url)).data;
        out.innerHTML = "";
        out.appendChild(table(["id", t("status"), t("version"), "#", t("question")], rows.map(function (c) {
          return [c.id, c.status, c.model_version, c.messages, c.first]; })));
      }
      main.appendChild(card(t("conversations"), [el("form", {onsubmit: function (e) { e.preventDefault(); load(); }},
        [q, " ", st, " ", ver, " ", el("input", {type: "submit", value: t("filter")})]), out]));
      await load();
    },
    feedback: async function (main) {
      var rows = (await K.api("admin", "/v1/admin/ui/feedback")).data;
      main.appendChild(card(t("feedback"), [table([t("rating"), t("question"), t("answer"), t("correction"), t("comment"), ""],
        rows.map(function (f) { return [f.rating, f.question, f.answer, f.correction, f.text, trainButton(f)]; }))]));
    },
    models: async function (main) {
      var rows = (await K.api("admin", "/v1/admin/ui/models")).data;
      main.appendChild(card(t("models"), [table([t("name"), t("kind"), t("status"), t("traffic"), t("eval"), t("promote")],
        rows.map(function (v) { return [v.name, v.kind, v.status, String(v.traffic_percent), evalCell(v), promoteForm(v)]; })),
        el("p", {}, el("button", {type: "button", "class": "act", "data-testid": "rollback", onclick: rollback}, t("rollback")))]));
    },
    kb: async function (main) {
      var rows = (await K.api("admin", "/v1/admin/ui/kb")).data;
      main.appendChild(card(t("kb"), [table(["id", t("time"), t("chunks"), t("active"), ""], rows.map(function (v) {
        return [String(v.id), v.created_at, String(v.n_chunks), v.active ? "✓" : "", v.active ? "" :
          el("button", {type: "button", "class": "act secondary", onclick: async function () {
            await K.api("admin", "/v1/admin/ui/kb/rollback?version=" + v.id, {method: "POST"}); render(); }}, t("kbrollback") + " → " + v.id)]; }))]));
    },
    audit: async function (main) {
      var verdict = el("p", {"data-testid": "verdict"});
      var only = el("input", {type: "checkbox", id: "go"});
      var out = el("div");
      async function load() {
        var rows = (await K.api("admin", "/v1/admin/ui/audit")).data;
        if (only.checked) rows = rows.filter(function (r) { var g = r.payload.guard; return g && ((g.input || []).length || (g.output || []).length); });
        out.innerHTML = "";
        out.appendChild(table(["#", t("time"), t("actor"), t("action"), ""], rows.map(function (r) {
          return [String(r.id), r.ts.slice(0, 19), r.actor, r.action, el("pre", {}, JSON.stringify(r.payload.guard || r.payload))]; })));
      }
      only.onchange = load;
      main.appendChild(card(t("audit"), [el("p", {}, [el("button", {type: "button", "class": "act", "data-testid": "verify", onclick: async function () {
        var v = await K.api("admin", "/v1/admin/audit/verify");
        verdict.className = v.ok ? "ok" : "bad";
        verdict.textContent = (v.ok ? "✓ " : "✗ ") + v.rows + " rows" + (v.ok ? "" : " · #" + v.bad_id + " " + v.problem);
      }}, t("verify")), " ", only, el("label", {"for": "go"}, t("guardonly"))]), verdict, out]));
      await load();
    }
  };

  function trainButton(f) {
    if (f.training) return el("span", {"class": "ok"}, "✓ " + t("marked"));
    if (!f.correction && f.rating !== "up") return "";
    var b = el("button", {type: "button", "class": "act", "data-testid": "train", onclick: async function () {
      await K.api("admin", "/v1/admin/ui/feedback/" + f.id + "/training", {method: "POST"});
      b.replaceWith(el("span", {"class": "ok"}, "✓ " + t("marked")));
      say(t("marked"));
    }}, t("training"));
    return b;
  }

  function evalCell(v) {
    if (!v.eval_report) return "";
    var r = v.eval_report, m = v.eval_metrics || {};
    var lines = Object.keys(m).map(function (k) { return k + " " + (Math.abs(m[k]) < 10 ? m[k].toFixed(3) : m[k].toFixed(1)); });
    return el("div", {"data-testid": "eval-" + v.name}, [
      el("span", {"class": r.passed ? "ok" : "bad"}, t("gate") + " " + (r.passed ? "✓" : "✗ " + (r.failures || []).join("; "))),
      lines.length ? el("pre", {}, lines.join("\n")) : ""]);
  }

  function promoteForm(v) {
    if (v.status === "active") return "";
    var id = "split-" + v.name;
    var out = el("output", {"for": id}, "100");
    var slider = el("input", {type: "range", id: id, min: "1", max: "100", value: "100", "aria-label": t("split") + " " + v.name,
      oninput: function () { out.textContent = slider.value; }});
    return el("form", {onsubmit: async function (e) {
      e.preventDefault();
      try { await K.api("admin", "/v1/admin/models/" + encodeURIComponent(v.name) + "/promote", {method: "POST", body: JSON.stringify({percent: Number(slider.value)})}); }
      catch (err) { say(err.message); return; }
      render();
    }}, [el("label", {"for": id}, t("split")), " ", slider, " ", out, "% ", el("input", {type: "submit", value: t("promote"), "data-testid": "promote-" + v.name})]);
  }

  async function rollback() {
    try { var r = await K.api("admin", "/v1/admin/models/rollback", {method: "POST"}); say(r.result); }
    catch (e) { say(e.message); }
    render();
  }

  K.login("admin", function () { return K.api("admin", "/v1/admin/models"); }, render);
})();
