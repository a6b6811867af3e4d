/* Admin console, training page (as LLaMA-Factory's WebUI offers): start prepare -> train -> eval -> compare, or a
 * flywheel cycle, with the main settings; watch progress, the loss curve and the log live (pushed over SSE from
 * GET /v1/admin/jobs/{id}/events); compare the new eval report with the live version's; promote; cancel. */
"use strict";
(function () {
  var K = Kefu, el = K.el, t = K.t;
  K.words({
    zh: {train: "训练", newjob: "新建训练任务", jobkind: "任务类型", kind_train: "准备数据 → 训练 → 评测 → 对比",
      kind_cycle: "数据飞轮一轮（日志 → 训练 → 评测 → 门禁 → 灰度）", start: "开始", jobs: "训练任务", cancel: "取消任务",
      steps: "步骤", progress: "进度", loss: "损失曲线", log: "日志", report: "新版本与线上版本评测对比",
      metric: "指标", live: "线上版本", fresh: "新版本", delta: "变化", gate: "门禁", passed: "通过", failed: "未通过",
      register: "注册并发布", vname: "版本名称", share: "新版本流量占比 %", status_running: "运行中", status_done: "完成", status_refused: "门禁未通过",
      status_failed: "失败", status_cancelled: "已取消", watch: "查看", none: "暂无任务", started: "已开始",
      "train.max_steps": "训练步数（-1 按轮数）", "train.epochs": "训练轮数", "train.lr": "学习率", "train.lora_r": "LoRA 秩",
      "train.lora_alpha": "LoRA alpha", "train.batch_size": "批大小", "train.grad_accum": "梯度累积",
      "train.logging_steps": "每 N 步记录损失", "train.time_budget_s": "训练时间预算（秒）", "eval.limit": "评测条数上限",
      "flywheel.sft_steps": "飞轮训练步数", "flywheel.canary_percent": "飞轮灰度流量 %"},
    en: {train: "Training", newjob: "New training job", jobkind: "Kind", kind_train: "prepare → train → eval → compare",
      kind_cycle: "flywheel cycle (logs → train → eval → gate → canary)", start: "Start", jobs: "Training jobs",
      cancel: "Cancel job", steps: "Steps", progress: "Progress", loss: "Loss curve", log: "Log",
      report: "New version vs the live version", metric: "Metric", live: "Live", fresh: "New", delta: "Change",
      gate: "Gate", passed: "passed", failed: "failed", register: "Register and promote", vname: "Version name", share: "Traffic share of the new version %",
      status_running: "running", status_done: "done", status_refused: "gate refused", status_failed: "failed",
      status_cancelled: "cancelled", watch: "Watch", none: "No jobs yet", started: "Started",
      "train.max_steps": "Training steps (-1: by epochs)", "train.epochs": "Epochs", "train.lr": "Learning rate",
      "train.lora_r": "LoRA rank", "train.lora_alpha": "LoRA alpha", "train.batch_size": "Batch size",
      "train.grad_accum": "Gradient accumulation", "train.logging_steps": "Log the loss every N steps",
      "train.time_budget_s": "Training time budget (s)", "eval.limit": "Eval cases limit",
      "flywheel.sft_steps": "Cycle training steps", "flywheel.canary_percent": "Cycle canary traffic %"}
  });
  var FIELDS = {train: ["train.max_steps", "train.epochs", "train.lr", "train.lora_r", "train.lora_alpha", "train.batch_size",
    "train.grad_accum", "train.logging_steps", "train.time_budget_s", "eval.limit"],
    cycle: ["flywheel.sft_steps", "train.lr", "train.lora_r", "train.batch_size", "train.logging_steps", "eval.limit",
      "flywheel.canary_percent"]};
  var watching = null;  // the open event stream of the job shown

  function card(title, body) { return el("section", {"class": "card"}, [el("h2", {}, title)].concat(body)); }
  function say(text) { document.getElementById("announce").textContent = text; }
  function statusText(s) { return t("status_" + s); }

  async function view(main) {
    if (watching) { watching.stop(); watching = null; }
    var got = await K.api("admin", "/v1/admin/jobs");
    var kind = el("select", {id: "jobkind", "data-testid": "jobkind"}, ["train", "cycle"].map(function (k) {
      return el("option", {value: k}, t("kind_" + k)); }));
    var fields = el("div", {"class": "fields"});
    function drawFields() {
      fields.innerHTML = "";
      FIELDS[kind.value].forEach(function (name) {
        var id = "set-" + name.replace(".", "-"), v = got.defaults[name];
        fields.appendChild(el("p", {}, [el("label", {"for": id}, t(name)), el("br"),
          el("input", {type: "number", step: "any", id: id, name: name, value: v == null ? "" : String(v), "data-testid": id})]));
      });
    }
    kind.onchange = drawFields;
    drawFields();
    var form = el("form", {onsubmit: async function (e) {
      e.preventDefault();
      var settings = {};
      fields.querySelectorAll("input").forEach(function (i) {
        if (i.value !== "" && Number(i.value) !== got.defaults[i.name]) settings[i.name] = Number(i.value);
      });
      try {
        var job = await K.api("admin", "/v1/admin/jobs", {method: "POST", body: JSON.stringify({kind: kind.value, settings: settings})});
        say(t("started") + ": " + job.id);
        watch(main, job.id);
        refreshList(main);
      } catch (err) { say(err.message); }
    }}, [el("p", {}, [el("label", {"for": "jobkind"}, t("jobkind")), " ", kind]), fields,
      el("input", {type: "submit", value: t("start"), "data-testid": "start-job"})]);
    main.appendChild(el("div", {id: "job"}));  // the job watched, above the form: what matters while one runs
    main.appendChild(el("div", {"class": "grid"}, [card(t("newjob"), [form]), card(t("jobs"), [el("div", {id: "joblist"})])]));
    showList(main, got.data);
    var running = got.data.filter(function (j) { return j.status === "running"; })[0];
    if (running) watch(main, running.id);
  }

  async function refreshList(main) { showList(main, (await K.api("admin", "/v1/admin/jobs")).data); }
  function showList(main, jobs) {
    var box = main.querySelector("#joblist");
    if (!box) return;
    box.innerHTML = "";
    var rows = jobs.map(function (j) {
      return [j.id, t("kind_" + j.kind).split(" ")[0], statusText(j.status), j.created_at,
        el("button", {type: "button", "class": "act secondary", onclick: function () { watch(main, j.id); }}, t("watch"))];
    });
    box.appendChild(rows.length ? table(["id", t("jobkind"), "", "", ""], rows) : el("p", {"class": "muted"}, t("none")));
  }

  function table(heads, rows) {
    return el("table", {}, [el("thead", {}, el("tr", {}, heads.map(function (h) { return el("th", {scope: "col"}, h); }))),
      el("tbody", {}, rows.map(function (r) { return el("tr", {}, r.map(function (c) { return el("td", {}, c == null ? "" : c); })); }))]);
  }

  /* The job's panel, filled by the pushed updates: each carries the whole state but only the new log text. */
  function watch(main, id) {
    if (watching) watching.stop();
    var box = main.querySelector("#job");
    box.innerHTML = "";
    var head = el("h2", {"data-testid": "job-status"}, id);
    var cancel = el("button", {type: "button", "class": "act secondary", "data-testid": "cancel-job", onclick: async function () {
      try { await K.api("admin", "/v1/admin/jobs/" + id + "/cancel", {method: "POST"}); } catch (e) { say(e.message); }
    }}, t("cancel"));
    var steps = el("ol", {"data-testid": "job-steps"}), bars = el("div"), chart = el("div", {"data-testid": "loss-chart"});
    var log = el("pre", {"class": "log", "data-testid": "job-log", tabindex: "0", "aria-label": t("log")});
    var report = el("div", {"data-testid": "job-report"});
    box.appendChild(el("section", {"class": "card"}, [head, cancel,
      el("div", {"class": "grid"}, [el("div", {}, [el("h3", {}, t("steps")), steps, el("h3", {}, t("progress")), bars]),
        el("div", {}, [el("h3", {}, t("loss")), chart])]), el("h3", {}, t("log")), log, report]));
    var handle = K.stream("admin", "/v1/admin/jobs/" + id + "/events", function (name, d) {
      if (name !== "update") return;
      head.textContent = id + " · " + statusText(d.status) + (d.error ? " · " + d.error : "");
      cancel.hidden = d.status !== "running";
      steps.innerHTML = "";
      Object.keys(d.steps).forEach(function (s) { steps.appendChild(el("li", {}, s + (d.steps[s] === "done" ? " ✓" : " …"))); });
      bars.innerHTML = "";
      Object.keys(d.progress).forEach(function (task) {
        var p = d.progress[task];
        bars.appendChild(el("p", {}, [el("label", {}, [task + " " + p.completed + (p.total ? "/" + p.total : "") + " " + (p.info || ""), el("br"),
          el("progress", {max: String(p.total || 1), value: String(p.completed)})])]));
      });
      if (d.loss) { chart.innerHTML = ""; chart.appendChild(K.lines(d.loss, t("loss"))); }
      if (d.log) {
        var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = (log.textContent + d.log).slice(-64000);
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
      if (d.report && !report.dataset.shown) { report.dataset.shown = "1"; report.appendChild(reportView(id, d)); }
      if (d.status !== "running") {  // it ended: no reconnect; the list shows the new status
        handle.stop(); say(id + ": " + statusText(d.status)); refreshList(main);
      }
    });
    watching = handle;
  }

  function fmt(v) { return v == null ? "–" : typeof v === "number" ? (Math.abs(v) < 10 ? v.toFixed(3) : v.toFixed(1)) : String(v); }

  function reportView(id, d) {
    var r = d.report;
    var rows = r.deltas.map(function (x) {
      return [x.label, fmt(x.a), fmt(x.b), el("span", {"class": x.improved == null ? "" : x.improved ? "ok" : "bad"}, fmt(x.delta))];
    });
    var verdict = el("p", {"class": r.passed ? "ok" : "bad", "data-testid": "gate"},
      t("gate") + ": " + (r.passed ? t("passed") : t("failed") + " · " + r.failures.join("; ")));
    var kids = [el("h3", {}, t("report") + (d.live ? " (" + d.live.name + ")" : "")), verdict,
      table([t("metric"), t("live"), t("fresh"), t("delta")], rows)];
    if (d.kind === "train" && r.passed) kids.push(promoteForm(id));
    return el("div", {}, kids);
  }

  function promoteForm(id) {
    var name = el("input", {type: "text", id: "vname", required: "required", pattern: "[A-Za-z0-9._-]+", value: id.replace("job-", "v"), "data-testid": "vname"});
    var pct = el("input", {type: "range", id: "vpct", min: "1", max: "100", value: "100", "aria-label": t("share")});
    var out = el("output", {"for": "vpct"}, "100");
    pct.oninput = function () { out.textContent = pct.value; };
    return el("form", {onsubmit: async function (e) {
      e.preventDefault();
      try {
        var v = await K.api("admin", "/v1/admin/jobs/" + id + "/promote", {method: "POST", body: JSON.stringify({name: name.value, percent: Number(pct.value)})});
        say(v.name + ": " + v.status + " " + v.traffic_percent + "%");
      } catch (err) { say(err.message); }
    }}, [el("label", {"for": "vname"}, t("vname")), " ", name, " ", pct, " ", out, "% ",
      el("input", {type: "submit", value: t("register"), "data-testid": "promote-job"})]);
  }

  K.adminViews = Object.assign(K.adminViews || {}, {train: view});
  K.leaveAdminView = function () { if (watching) { watching.stop(); watching = null; } };
})();
