"""The sample shop's data in SQLite, seeded deterministically: the same seed gives the same rows, byte for byte.

Customers C1001..., each with orders DD<date><seq> (shipping to the customer's address); shipped orders have a
shipment with tracking events, some delivered orders a return, and a few coupons. `changes` records every write
the backend makes (cancel, address change, new return). Names, phones and addresses are there on purpose: the
backend returns them like a real shop would, and kefu must keep them out of answers.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, phone TEXT, address TEXT);
CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT REFERENCES customers(id), status TEXT, total REAL,
                     item TEXT, created_at TEXT, address TEXT);
CREATE TABLE shipments (order_id TEXT PRIMARY KEY REFERENCES orders(id), carrier TEXT, tracking_no TEXT);
CREATE TABLE tracking_events (order_id TEXT REFERENCES orders(id), seq INTEGER, time TEXT, location TEXT,
                              text TEXT, text_en TEXT, PRIMARY KEY (order_id, seq));
CREATE TABLE returns (id TEXT PRIMARY KEY, order_id TEXT REFERENCES orders(id), status TEXT, reason TEXT,
                      refund REAL, created_at TEXT);
CREATE TABLE coupons (code TEXT PRIMARY KEY, discount REAL, min_spend REAL, valid_until TEXT);
CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT, customer_id TEXT, order_id TEXT,
                      kind TEXT, detail TEXT);
"""

_SURNAMES = "王李张刘陈杨赵黄周吴"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "婷", "杰", "丽")
_CITIES = ("上海", "北京", "杭州", "广州", "深圳", "成都", "武汉", "南京")
_ITEMS = ("纯棉T恤", "运动鞋", "保温杯", "蓝牙耳机", "双肩包", "羽绒服", "台灯", "毛巾套装")
_CARRIERS = (("顺丰速运", "SF"), ("中通快递", "ZT"), ("圆通速递", "YT"))
_STATUSES = ("paid", "shipped", "shipped", "delivered", "delivered", "cancelled")
# (Chinese, English) tracking steps; {city} is the customer's city.
_STEPS = (
    ("商家已发货，快件已揽收", "Parcel picked up by the carrier", "发货仓"),
    ("快件已到达转运中心", "Arrived at the sorting centre", "转运中心"),
    ("快件已发往{city}", "On its way to {city}", "转运中心"),
    ("快件已到达{city}分拨中心", "Arrived at the {city} hub", "{city}"),
    ("快件正在派送中，派送员电话请见短信", "Out for delivery", "{city}"),
    ("快件已签收，感谢使用", "Delivered", "{city}"),
)
EPOCH = dt.datetime(2026, 11, 20, 9, 0)
# The reference shop's clock: "now" for the seeded data (hours since the last tracking update, write timestamps), so
# the same seed always has the same late parcels whatever day it is run.
NOW = dt.datetime(2026, 12, 7, 12, 0)


def _customers(rng: random.Random, n: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for i in range(n):
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        address = f"{rng.choice(_CITIES)}市{rng.choice('东西南北')}区{rng.randint(1, 300)}号{rng.randint(1, 30)}室"
        rows.append((f"C{1001 + i}", name, phone, address))
    return rows


def _events(rng: random.Random, order_id: str, start: dt.datetime, city: str, delivered: bool) -> list[tuple]:
    count = len(_STEPS) if delivered else rng.randint(1, len(_STEPS) - 1)
    rows, t = [], start
    for seq, (zh, en, where) in enumerate(_STEPS[:count]):
        t += dt.timedelta(hours=rng.randint(3, 20), minutes=rng.randint(0, 59))
        loc = where.format(city=city)
        rows.append((order_id, seq, t.strftime("%Y-%m-%d %H:%M"), loc, zh.format(city=city), en.format(city=city)))
    return rows


def _orders(con: sqlite3.Connection, rng: random.Random, customers: list[tuple[str, str, str, str]]) -> None:
    seq = 0
    for cid, _name, _phone, address in customers:
        city = address.split("市")[0]
        for _ in range(rng.randint(2, 3)):
            seq += 1
            created = EPOCH + dt.timedelta(days=rng.randint(0, 14), hours=rng.randint(0, 12))
            oid = f"DD{created:%Y%m%d}{seq:05d}"
            status = rng.choice(_STATUSES)
            total = round(rng.uniform(19, 899), 2)
            order = (oid, cid, status, total, rng.choice(_ITEMS), f"{created:%Y-%m-%d %H:%M}", address)
            con.execute("INSERT INTO orders VALUES (?,?,?,?,?,?,?)", order)
            if status in ("shipped", "delivered"):
                carrier, prefix = rng.choice(_CARRIERS)
                tracking = prefix + "".join(rng.choice("0123456789") for _ in range(12))
                con.execute("INSERT INTO shipments VALUES (?,?,?)", (oid, carrier, tracking))
                con.executemany("INSERT INTO tracking_events VALUES (?,?,?,?,?,?)",
                                _events(rng, oid, created, city, status == "delivered"))  # fmt: skip
            if status == "delivered" and rng.random() < 0.4:
                state = rng.choice(("requested", "approved", "refunded"))
                asked = f"{created + dt.timedelta(days=5):%Y-%m-%d}"
                row = (f"TH{seq:06d}", oid, state, "尺码不合适", total, asked)
                con.execute("INSERT INTO returns VALUES (?,?,?,?,?,?)", row)


def _coupons(con: sqlite3.Connection) -> None:
    con.executemany("INSERT INTO coupons VALUES (?,?,?,?)", [
        ("NEW20", 20.0, 99.0, "2027-03-31"), ("VIP50", 50.0, 299.0, "2027-01-31"), ("OLD10", 10.0, 59.0, "2026-10-31"),
    ])  # fmt: skip


def seed(db: Path, customers: int = 20, seed_value: int = 7) -> Path:
    """Write a fresh seeded shop database to `db` (replaced whole: written to a temp file, then renamed)."""
    rng = random.Random(seed_value)
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(SCHEMA)
        rows = _customers(rng, customers)
        con.executemany("INSERT INTO customers VALUES (?,?,?,?)", rows)
        _orders(con, rng, rows)
        _coupons(con)
        con.commit()
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, db)
    return db
