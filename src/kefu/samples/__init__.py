"""The shipped sample shop (青禾生活馆 / Qinghe Living): config, policy documents, training and eval data."""

from __future__ import annotations

from pathlib import Path

# Shipped inside the package so `kefu init` / `kefu demo` find it after a plain pip install.
SHOP_DIR: Path = Path(__file__).resolve().parent / "shop"
SHOP_CONFIG: Path = SHOP_DIR / "kefu.yaml"
