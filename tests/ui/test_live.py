"""Live pushes against a real gateway: the customer's stream gets the agent's reply and the status change, the
desk's stream gets new tickets, in-process (SQLite) and across two gateways sharing PostgreSQL and Redis."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import Server, make_cfg, pg_url, redis_prefix, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve.app import create_app

__all__ = ["pg_url", "redis_prefix"]  # fixtures shared with tests/serve


class Stream:
    """An SSE stream read on a thread: (event, data) pairs in a queue, as a browser's fetch reader sees them."""

    def __init__(self, url: str, key: str) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.held: list[tuple[str, Any]] = []
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=60))
        self._resp = self.client.send(
            self.client.build_request("GET", url, headers={"Authorization": f"Bearer {key}"}), stream=True
        )
        assert self._resp.status_code == 200, self._resp.read()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name = "message"
        try:
            for line in self._resp.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.put((name, json.loads(line[6:])))
        except httpx.HTTPError:
            pass  # closed by the test

    def next(self, event: str, timeout: float = 5.0) -> Any:
        """The next `event`; events of other kinds that come first are kept for later calls."""
        for i, (name, data) in enumerate(self.held):
            if name == event:
                del self.held[i]
                return data
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            name, data = self.events.get(timeout=left)
            if name == event:
                return data
            self.held.append((name, data))
        raise TimeoutError(event)

    def close(self) -> None:
        self._resp.close()
        self.client.close()


def _post(srv: Server, key: str, path: str, **kw: Any) -> Any:
    r = httpx.post(srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10, **kw)
    assert r.status_code < 300, r.text
    return r.json()


def _ask_for_human(srv: Server, key: str, cid: str) -> None:
    body = {"model": "kefu", "messages": [{"role": "user", "content": "我要转人工"}],
            "kefu": {"conversation_id": cid, "handoff": True}}  # fmt: skip
    _post(srv, key, "/v1/chat/completions", json=body)


def _handoff_round_trip(customer_srv: Server, agent_srv: Server) -> None:
    """Desk on one gateway, customer on another (or the same): ticket, claim, reply, release, all pushed."""
    client, agent = customer_srv.key("client"), agent_srv.key("agent")
    desk = Stream(agent_srv.url + "/v1/agent/events", agent)
    try:
        assert desk.next("tickets") == []
        _ask_for_human(customer_srv, client, "c-live")
        ticket = desk.next("tickets")[0]
        assert ticket["conversation_id"] == "c-live" and ticket["status"] == "open"
        chat = Stream(customer_srv.url + "/v1/conversations/c-live/events", client)
        try:
            assert chat.next("status") == {"status": "handoff"}
            stored = [chat.next("message"), chat.next("message")]  # what was stored before the stream opened
            assert [m["role"] for m in stored] == ["user", "assistant"]  # the question, the handoff notice
            _post(agent_srv, agent, f"/v1/agent/tickets/{ticket['id']}/claim")
            assert desk.next("tickets")[0]["status"] == "claimed"
            t0 = time.monotonic()
            _post(agent_srv, agent, f"/v1/agent/tickets/{ticket['id']}/reply", json={"text": "您好，我是客服小王。"})
            reply = chat.next("message")
            assert time.monotonic() - t0 < 2.0  # pushed, not found by a heartbeat's re-read
            assert reply["author"].startswith("agent:") and reply["content"] == "您好，我是客服小王。"
            _post(agent_srv, agent, f"/v1/agent/tickets/{ticket['id']}/release")
            assert chat.next("status") == {"status": "bot"}
            assert desk.next("tickets") == []
        finally:
            chat.close()
    finally:
        desk.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Server]:
    srv = start(create_app(make_cfg(tmp_path), ScriptedEngine()))
    yield srv
    srv.stop()


def test_agent_reply_and_new_tickets_are_pushed_in_process(gateway: Server) -> None:
    _handoff_round_trip(gateway, gateway)


def test_a_reconnect_gets_what_it_missed_and_strangers_get_404(gateway: Server) -> None:
    client = gateway.key("client")
    _ask_for_human(gateway, client, "c-resume")
    chat = Stream(gateway.url + "/v1/conversations/c-resume/events?after=999999", client)
    try:
        chat.next("status")
        time.sleep(0.3)
        assert chat.events.empty() and not chat.held  # nothing after that id
    finally:
        chat.close()
    other = gateway.key("client")
    r = httpx.get(gateway.url + "/v1/conversations/c-resume/events", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404
    assert httpx.get(gateway.url + "/v1/agent/events", headers={"Authorization": f"Bearer {client}"}).status_code == 403


def test_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    srv = start(create_app(make_cfg(tmp_path), ScriptedEngine()))
    desk = Stream(srv.url + "/v1/agent/events", srv.key("agent"))
    desk.next("tickets")
    t0 = time.monotonic()
    srv.stop()
    assert not srv.thread.is_alive() and time.monotonic() - t0 < 5  # the open stream did not hold shutdown
    desk.close()


def test_two_gateways_share_events_through_redis(tmp_path: Path, pg_url: str, redis_prefix: str) -> None:
    """Several `kefu serve` processes behind a balancer: an agent on gateway A answers a customer on gateway B."""
    from tests.serve.conftest import REDIS_URL

    shared = [f"serve.db_url={pg_url}", f"serve.redis_url={REDIS_URL}", f"serve.redis_prefix={redis_prefix}"]
    a = start(create_app(make_cfg(tmp_path / "a", *shared), ScriptedEngine()))
    b = start(create_app(make_cfg(tmp_path / "b", *shared), ScriptedEngine()))
    try:
        _handoff_round_trip(b, a)
    finally:
        a.stop()
        b.stop()
