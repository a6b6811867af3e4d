"""A tiny shop knowledge base written by the tests: zh/en Markdown, FAQ csv/jsonl, HTML and a hand-made PDF."""

from __future__ import annotations

from pathlib import Path

RETURNS_MD = """# 退货政策

青禾支持七天无理由退货。

## 退货期限

自签收次日起 7 天内可以申请无理由退货。超过 7 天不再支持无理由退货！质量问题 15 天内可以退换。

## 运费谁出

无理由退货的寄回运费由买家承担；质量问题由我们承担，补偿上限 20 元。
"""

SHIPPING_EN_MD = """# Shipping

## Carriers

ZTO Express is the default carrier. You can upgrade to SF Express for 12 yuan at checkout.

## Fees

Orders of 99 yuan or more ship free; otherwise the fee is 8 yuan.
"""

FAQ_CSV = """question,answer
发票多久能开好？,电子发票在申请后 3 个工作日内发送到您的邮箱。
可以用花呗分期吗？,支持花呗分期，实付满 300 元可享 3 期免息。
"""

FAQ_JSONL = (
    '{"question": "How do I delete my account?", "answer": "Go to Settings > Account security > Delete account."}\n'
)

FAQ_HTML = """<html><head><title>FAQ</title><style>h1 {color: red}</style></head><body>
<script>var secret = "do not index";</script>
<h1>常见问题</h1>
<h2>账号</h2>
<h3>密码输错被锁定怎么办？</h3>
<p>密码连续输错 5 次，账号锁定 30 分钟。</p>
<ul><li>可以改用验证码登录；</li><li>也可以重置密码。</li></ul>
</body></html>
"""

PDF_LINES = ["Price protection", "Within 15 days of payment, if the price drops, we refund the difference."]


def make_pdf(path: Path, lines: list[str]) -> None:
    """A one-page PDF with Helvetica text, written byte by byte (offsets in the xref table must be exact)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def write_project(root: Path, db: str = "kb.sqlite", extra_kb: str = "") -> Path:
    """Documents under root/kb and a kefu.yaml pointing at them; returns the config path."""
    kb = root / "kb"
    (kb / "en").mkdir(parents=True, exist_ok=True)
    (kb / "returns.md").write_text(RETURNS_MD, encoding="utf-8")
    (kb / "en" / "shipping.md").write_text(SHIPPING_EN_MD, encoding="utf-8")
    (kb / "faq.csv").write_text(FAQ_CSV, encoding="utf-8")
    (kb / "faq.jsonl").write_text(FAQ_JSONL, encoding="utf-8")
    (kb / "faq.html").write_text(FAQ_HTML, encoding="utf-8")
    make_pdf(kb / "price.pdf", PDF_LINES)
    cfg = root / "kefu.yaml"
    cfg.write_text(
        "kb:\n"
        '  sources: ["kb/**/*.md", "kb/faq.*", "kb/*.pdf"]\n'
        f"  db: {db}\n"
        "  chunk_chars: 120\n"
        "  overlap_chars: 20\n" + extra_kb,
        encoding="utf-8",
    )
    return cfg
