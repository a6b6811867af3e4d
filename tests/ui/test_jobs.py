"""The training page's API against a real gateway and real job processes on a tiny model: a train job runs
prepare -> SFT -> eval (new and live) -> compare, its loss, progress and log are readable while it runs, its
adapter is promoted through the eval gate; bad settings, a second job, other roles and cancel are refused or done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.flywheel.test_cycle import make_project
from tests.serve.conftest import Server, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.cli_gateway import promotion_gate
from kefu.config import load_config
from kefu.serve.app import create_app


def project_gateway(root: Path, model_dir: Path) -> Server:
    """A gateway over a project whose kefu.yaml trains the tiny model (as `kefu serve` in that folder would)."""
    cfg = load_config(make_project(root, model_dir))
    return start(create_app(cfg, ScriptedEngine(), gate=promotion_gate(cfg)))


@pytest.fixture
def gateway(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Server]:
    srv = project_gateway(tmp_path, tiny_model_dir)
    yield srv
    srv.stop()


def call(srv: Server, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


def wait_for(srv: Server, key: str, job_id: str, done: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = call(srv, key, "GET", f"/v1/admin/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if done(job):
            return job
        time.sleep(0.5)
    raise TimeoutError(f"{job_id}: {job['status']}\n{job['log'][-3000:]}")


def test_a_train_job_runs_reports_and_promotes_through_the_gate(gateway: Server) -> None:
    admin = gateway.key("admin", rate_limit=1000)  # the test polls twice a second
    defaults = call(gateway, admin, "GET", "/v1/admin/jobs").json()["defaults"]
    assert defaults["train.max_steps"] == 40 and defaults["train.lr"] == 1e-2  # the project's kefu.yaml
    settings = {"train.max_steps": 12, "train.logging_steps": 2, "eval.limit": 3}
    r = call(gateway, admin, "POST", "/v1/admin/jobs", json={"kind": "train", "settings": settings})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    job = wait_for(gateway, admin, job_id, lambda j: j["status"] != "running")
    assert job["status"] == "done", job["log"][-3000:]
    assert list(job["steps"]) == ["prepare", "train", "eval_new", "eval_live", "compare"]
    assert all(v == "done" for v in job["steps"].values())
    steps = [s for s, _ in job["loss"]["sft loss"]]
    assert steps == [2, 4, 6, 8, 10, 12]  # every logged step of the trainer's log, in order
    assert job["progress"]["train"]["completed"] == 12 == job["progress"]["train"]["total"]
    assert "== compare" in job["log"] and job["report"]["passed"] is True
    labels = {d["metric"] for d in job["report"]["deltas"]}
    assert "fact_accuracy.value" in labels  # the metric table live vs new
    assert Path(job["paths"]["train"][0], "adapter", "adapter_config.json").is_file()

    r = call(gateway, admin, "POST", f"/v1/admin/jobs/{job_id}/promote", json={"name": "v-ui", "percent": 100})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    models = call(gateway, admin, "GET", "/v1/admin/ui/models").json()["data"]
    promoted = next(m for m in models if m["name"] == "v-ui")
    assert promoted["eval_report"]["passed"] is True and promoted["eval_report"]["b"].endswith("eval-new")
    assert set(promoted["eval_metrics"]) >= {"fact_accuracy", "overpromise_rate", "p99_latency_s"}  # the console's
    actions = [e["action"] for e in audit_events(gateway)]
    assert {"jobs.start", "models.register", "models.promote"} <= set(actions)


def audit_events(srv: Server) -> list[dict[str, Any]]:
    return call(srv, srv.key("admin"), "GET", "/v1/admin/ui/audit").json()["data"]


def test_refusals_one_job_at_a_time_and_cancel(gateway: Server) -> None:
    admin, agent = gateway.key("admin", rate_limit=1000), gateway.key("agent")
    assert call(gateway, agent, "GET", "/v1/admin/jobs").status_code == 403
    bad = call(gateway, admin, "POST", "/v1/admin/jobs", json={"settings": {"train.output_dir": 1}})
    assert bad.status_code == 400 and "settings.train.output_dir: not a training page setting" in bad.text
    bad = call(gateway, admin, "POST", "/v1/admin/jobs", json={"settings": {"train.lr": -1}})
    assert bad.status_code == 400 and "settings.train.lr" in bad.text
    assert call(gateway, admin, "GET", "/v1/admin/jobs").json()["data"] == []  # refused starts leave nothing
    long = {"train.max_steps": 100000, "train.logging_steps": 1}
    job_id = call(gateway, admin, "POST", "/v1/admin/jobs", json={"settings": long}).json()["id"]
    second = call(gateway, admin, "POST", "/v1/admin/jobs", json={"kind": "cycle"})
    assert second.status_code == 409 and job_id in second.text
    wait_for(gateway, admin, job_id, lambda j: "sft loss" in (j.get("loss") or {}))  # training, loss logged
    assert call(gateway, admin, "POST", f"/v1/admin/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    job = wait_for(gateway, admin, job_id, lambda j: j["status"] == "cancelled", timeout=10)
    pid = int(Path(job["paths"]["train"][0]).parent.joinpath("pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or b"kefu.flywheel.job" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert call(gateway, admin, "POST", f"/v1/admin/jobs/{job_id}/cancel").status_code == 409
    assert call(gateway, admin, "POST", f"/v1/admin/jobs/{job_id}/promote", json={"name": "x"}).status_code == 409
    assert call(gateway, admin, "GET", "/v1/admin/jobs/job-nope").status_code == 404
    assert "jobs.cancel" in {e["action"] for e in audit_events(gateway)}


def test_a_cycle_job_runs_the_flywheel_and_puts_a_canary_out(gateway: Server) -> None:
    admin = gateway.key("admin", rate_limit=1000)  # the test polls twice a second
    settings = {"flywheel.sft_steps": 6, "train.logging_steps": 2, "eval.limit": 3, "flywheel.canary_percent": 20}
    job_id = call(gateway, admin, "POST", "/v1/admin/jobs", json={"kind": "cycle", "settings": settings}).json()["id"]
    job = wait_for(gateway, admin, job_id, lambda j: j["status"] != "running")
    assert job["status"] == "done", job["log"][-3000:]
    assert [s for s, v in job["steps"].items() if v == "done"] == [
        "export", "prepare", "sft", "dpo", "eval_live", "eval_new", "gate", "canary"
    ]  # fmt: skip
    assert Path(job["paths"]["cycle"]).name.startswith("cycle-") and job["report"]["passed"] is True
    assert [s for s, _ in job["loss"]["sft loss"]] == [2, 4, 6]
    canary = next(
        m for m in call(gateway, admin, "GET", "/v1/admin/ui/models").json()["data"] if m["status"] == "canary"
    )
    assert canary["traffic_percent"] == 20 and canary["name"] == Path(job["paths"]["cycle"]).name
