"""`kefu init`: start a project from the bundled sample shop (kefu.yaml, data/, kb/), or a blank one to fill in."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from kefu.errors import KefuError
from kefu.io import atomic_dir

_SKIP = {"__pycache__", "__init__.py"}
# A blank project's folders: the template ships only kefu.yaml (package data cannot hold an empty folder).
_BLANK_FOLDERS = ("kb", "data")


def _bundled(name: str) -> Traversable:
    folder = resources.files("kefu") / "samples" / name
    if not folder.is_dir():
        raise KefuError(f"the {name} template is missing from this kefu installation (kefu/samples/{name})")
    return folder


def sample_shop() -> Traversable:
    """The sample shop folder inside the installed package (works from a wheel or a source checkout)."""
    return _bundled("shop")


def blank_template() -> Traversable:
    """The blank project's kefu.yaml (empty persona, no policy limits) inside the installed package."""
    return _bundled("blank")


def _copy(src: Traversable, dst: Path) -> None:
    # Traversable rather than shutil.copytree: package data need not be a real folder (zip imports).
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.name in _SKIP or child.name.endswith(".pyc"):
            continue
        if child.is_dir():
            _copy(child, dst / child.name)
        else:
            (dst / child.name).write_bytes(child.read_bytes())


def init_project(directory: str | Path, blank: bool = False) -> Path:
    """Write the sample shop (or, with blank, an empty project to fill in) into `directory`, created if needed;
    refuses a non-empty folder. Returns the folder."""
    target = Path(directory).expanduser()
    if target.exists() and not target.is_dir():
        raise KefuError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise KefuError(f"{target}: folder is not empty; choose a new or empty folder so nothing is overwritten")
    with atomic_dir(target) as tmp:
        _copy(blank_template() if blank else sample_shop(), tmp)
        for name in _BLANK_FOLDERS if blank else ():
            (tmp / name).mkdir()
    return target.resolve()
