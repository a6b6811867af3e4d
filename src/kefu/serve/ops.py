"""What the CLI's serve, db, keys, models and audit commands run."""

from __future__ import annotations

from typing import Any

from kefu.config import KefuConfig
from kefu.serve import audit, keys, versions
from kefu.serve.db import Store


def open_store(cfg: KefuConfig) -> Store:
    """The configured store, migrated to the newest schema."""
    return Store(cfg.serve.db_url, cfg.root)


def run_serve(
    cfg: KefuConfig, host: str | None = None, port: int | None = None, gate: versions.Gate | None = None
) -> None:
    """Run the gateway with uvicorn until SIGINT/SIGTERM; in-flight streams get serve.shutdown_timeout_s to end.
    `gate` checks eval runs given to the admin API's promote."""
    import uvicorn

    from kefu.serve.app import create_app

    app = create_app(cfg, gate=gate)
    config = uvicorn.Config(
        app, host=host or cfg.serve.host, port=port or cfg.serve.port, log_level="info",
        timeout_graceful_shutdown=cfg.serve.shutdown_timeout_s,
    )  # fmt: skip
    server = uvicorn.Server(config)
    exit_handler = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        # Live UI streams never end by themselves: end them now, or shutdown waits shutdown_timeout_s for them.
        app.state.kefu.events.close()
        exit_handler(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run()


def run_db_upgrade(cfg: KefuConfig) -> str:
    store = open_store(cfg)
    store.dispose()
    return store.url.split("@")[-1]  # never print a password from the URL


def run_keys_create(cfg: KefuConfig, role: str, name: str = "", rate_limit: int | None = None) -> str:
    return keys.create(open_store(cfg), role, name, rate_limit, actor="cli")


def run_keys_list(cfg: KefuConfig) -> list[dict[str, Any]]:
    return keys.list_keys(open_store(cfg))


def run_keys_revoke(cfg: KefuConfig, key_id: str) -> None:
    keys.revoke(open_store(cfg), key_id, actor="cli")


def run_models_list(cfg: KefuConfig) -> list[versions.Version]:
    store = open_store(cfg)
    versions.ensure_base(store, cfg.serve.upstream_model if cfg.serve.engine == "upstream" else None)
    return versions.list_versions(store)


def run_models_register(cfg: KefuConfig, name: str, kind: str, path: str | None) -> versions.Version:
    store = open_store(cfg)
    versions.ensure_base(store, cfg.serve.upstream_model if cfg.serve.engine == "upstream" else None)
    return versions.register(store, name, kind, path, actor="cli")


def run_models_promote(
    cfg: KefuConfig,
    name: str,
    percent: int = 100,
    eval_a: str | None = None,
    eval_b: str | None = None,
    gate: versions.Gate | None = None,
) -> versions.Version:
    """Promote `name`; with both eval runs only when `gate` passes them (one run alone is refused)."""
    dirs = versions.check_eval_dirs(eval_a, eval_b)
    dirs = (str(cfg.resolve(dirs[0])), str(cfg.resolve(dirs[1]))) if dirs else None
    return versions.promote(open_store(cfg), name, percent, dirs, gate, actor="cli")


def run_models_rollback(cfg: KefuConfig) -> str:
    return versions.rollback(open_store(cfg), actor="cli")


def run_audit_verify(cfg: KefuConfig) -> audit.Verdict:
    return audit.verify(open_store(cfg))
