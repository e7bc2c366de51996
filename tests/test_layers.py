"""Import arrows between the packages point one way only.

    http_api, realtime  ->  reelwire.domain  ->  transcode, cache  ->  storage, pubsub

`loadtest` is a client of the server, not part of it: it imports none of the server's layers
(it finds FFmpeg on its own to make test media).

The composition root (`reelwire.app`, `reelwire.cli`, `reelwire.resources`) may import anything;
nothing below it imports the root. Each rule walks the package's source with `ast` (imports
inside functions count too) and names every offending (file, import) pair.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOT = ("reelwire.app", "reelwire.cli", "reelwire.resources")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement may reach: `from a import b` reaches `a` and `a.b`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def imports_of(package: str) -> Iterator[tuple[str, str, list[str]]]:
    """(file:line, the import as written, the modules it may reach) for every import in every
    module of `package`, those inside functions included."""
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets = _targets(node, module, path.name == "__init__.py")
            if targets:
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                yield where, ast.unparse(node), targets


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offending(package: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (file:line, import) pairs of `package` that reach into `forbidden`."""
    return [
        (where, statement)
        for where, statement, targets in imports_of(package)
        if any(_within(name, forbidden) for name in targets)
    ]


def assert_none(pairs: list[tuple[str, str]], rule: str) -> None:
    for where, statement in pairs:
        print(f"{where}: {statement}  ({rule})")
    assert not pairs, f"{rule}: " + "; ".join(f"{w}: {s}" for w, s in pairs)


def test_storage_and_pubsub_import_no_upper_layer() -> None:
    forbidden = ("realtime", "http_api", "transcode", "reelwire", "cache", "loadtest")
    for package in ("storage", "pubsub"):
        assert_none(offending(package, forbidden), f"{package}/ is the bottom layer")


def test_cache_imports_only_the_bottom_layer() -> None:
    forbidden = ("realtime", "http_api", "transcode", "reelwire", "loadtest")
    assert_none(offending("cache", forbidden), "cache/ sits on pubsub/ and storage/ only")


def test_the_load_tester_is_a_client_of_its_own() -> None:
    forbidden = ("realtime", "http_api", "reelwire", "pubsub", "cache", "storage", "transcode")
    assert_none(offending("loadtest", forbidden), "loadtest/ talks to the server over sockets")


def test_transcode_imports_neither_the_domain_nor_a_transport() -> None:
    forbidden = ("reelwire.domain", "http_api", "realtime", *COMPOSITION_ROOT)
    assert_none(
        offending("transcode", forbidden),
        "transcode/ is handed its job functions, it does not import them",
    )


def test_domain_imports_no_transport_and_not_the_composition_root() -> None:
    forbidden = ("http_api", "realtime", *COMPOSITION_ROOT)
    assert_none(offending("reelwire.domain", forbidden), "reelwire/domain/ is transport-agnostic")


def test_realtime_and_http_api_do_not_import_each_other() -> None:
    assert_none(offending("realtime", ("http_api",)), "realtime/ never imports http_api/")
    assert_none(offending("http_api", ("realtime",)), "http_api/ never imports realtime/")


def test_the_walk_sees_imports() -> None:
    """The rules above are not green because nothing was read."""
    found = {(where.split(":")[0], text) for where, text, _ in imports_of("reelwire.domain")}
    assert (
        "reelwire/domain/processing.py",
        "from transcode.render import render_image, render_video",
    ) in found
    # inside a function
    assert (
        "reelwire/domain/media_access.py",
        "from reelwire.domain.clips import CLIP_LIFETIME",
    ) in found
    # `from package import module` reaches the module
    assert "from reelwire import resources" in [
        s for _, s in offending("reelwire", ("reelwire.resources",))
    ]
