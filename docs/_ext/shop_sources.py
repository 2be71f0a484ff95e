"""Facts about the code base that the docs are generated from, found by reading the source.

Nothing here imports the service packages: the source files are parsed with
:mod:`ast`, so a half-written package cannot break the scan. Used by the
Sphinx extension :mod:`shop_docs` and by ``docs/export_openapi.py``.

* :func:`error_codes` finds every problem ``code`` the services can answer
  with: ``ProblemError(status, "code", ...)`` and ``problem_body(...)`` calls,
  ``Conflict("code", ...)``, ``code="..."`` keywords, the defaults of the
  error classes, ``DEFAULT_CODES`` and status tables such as the sales
  service's ``FAILURE_STATUS``.
* :func:`environment_variables` finds every environment variable read with
  ``os.environ``, ``os.getenv``, the ``_env*()`` helpers of
  :mod:`shopkit.config` or a click ``envvar=``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Service name → package (the same table as :data:`shopkit.stack.PACKAGES`).
SERVICES = {
    "customers": "customers_service",
    "inventory": "inventory_service",
    "sales": "sales_service",
    "reviews": "reviews_service",
}
#: Packages whose code runs in (or next to) the services.
CODE_PACKAGES = ["shopkit", *SERVICES.values(), "seeder", "storefront"]
#: Where environment variables may also be read: tools, benchmarks, the test harness.
TOOL_PATHS = ["bench", "tests"]
SKIPPED_PARTS = {"migrations", "__pycache__", "_build", "_generated"}

_CODE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def package_dir(package: str) -> Path | None:
    """The directory of ``package`` if it is a regular package in this checkout."""
    path = ROOT / package
    return path if (path / "__init__.py").is_file() else None


def present_services() -> dict[str, str]:
    """Service name → package for the service packages that exist in this checkout.

    Same rule as the test suite: a regular package with its ``migrations``
    directory (a half-created directory does not count).
    """
    found = {}
    for name, package in SERVICES.items():
        path = package_dir(package)
        if path is not None and (path / "migrations").is_dir():
            found[name] = package
    return found


def is_importable(module: str) -> bool:
    """True when ``module`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def python_files(*relative: str) -> Iterator[Path]:
    """Every ``.py`` file under the given paths (relative to the root), migrations excluded."""
    for rel in relative:
        base = ROOT / rel
        if base.is_file() and base.suffix == ".py":
            yield base
            continue
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = set(path.relative_to(ROOT).parts)
            if parts & SKIPPED_PARTS or path.relative_to(ROOT).parts[:2] == ("tests", "docs"):
                continue
            yield path


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None  # a file being edited right now: skip it, the next build sees it


def _text(node: ast.expr | None) -> str:
    """A string literal, or an f-string with its ``{placeholders}``; ``""`` otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                out.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                out.append("{" + _placeholder(value.value) + "}")
        return "".join(out)
    return ""


def _placeholder(node: ast.expr) -> str:
    """``sale_id`` or ``debit.amount`` as written; ``…`` for any other expression."""
    if isinstance(node, ast.Name | ast.Attribute) and re.fullmatch(r"[\w.]+", ast.unparse(node)):
        return ast.unparse(node)
    return "…"


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _int(node: ast.expr | None) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """``(name, value)`` of a simple ``NAME = value`` or ``NAME: T = value`` statement."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, value = node.targets[0], node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target, value = node.target, node.value
    else:
        return None, None
    return (target.id, value) if isinstance(target, ast.Name) else (None, None)


def _is_status(value: int | None) -> bool:
    return value is not None and 400 <= value <= 599


# --- error codes -----------------------------------------------------------------------------


@dataclass
class ErrorCode:
    """One problem ``code``: its HTTP statuses, example details and where it is raised."""

    code: str
    statuses: set[int] = field(default_factory=set)
    details_by_place: list[tuple[str, str]] = field(default_factory=list)
    places: list[str] = field(default_factory=list)

    def add(self, status: int | None, detail: str, place: str) -> None:
        """Record one more place that answers with this code."""
        if status is not None:
            self.statuses.add(status)
        if detail and detail not in self.details:
            self.details_by_place.append((place, detail))
        if place not in self.places:
            self.places.append(place)

    @property
    def details(self) -> list[str]:
        """The distinct ``detail`` sentences sent with it, in first-seen order."""
        return [detail for _, detail in self.details_by_place]

    @property
    def packages(self) -> list[str]:
        """The packages that raise it, in first-seen order."""
        seen: list[str] = []
        for place in self.places:
            package = place.split("/", 1)[0]
            if package not in seen:
                seen.append(package)
        return seen


class _ErrorVisitor(ast.NodeVisitor):
    def __init__(self, rel: str, found: dict[str, ErrorCode], tree: ast.Module) -> None:
        self.rel = rel
        self.found = found
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.conditions: list[ast.expr] = []
        self.sentences = self._sentence_tables(tree)

    @staticmethod
    def _sentence_tables(tree: ast.Module) -> dict[str, str]:
        """Module-level ``{"code": "A sentence."}`` tables (e.g. ``FAILURE_DETAIL``)."""
        table: dict[str, str] = {}
        for node in tree.body:
            _, value = _assignment(node)
            if isinstance(value, ast.Dict):
                for key, item in zip(value.keys, value.values, strict=True):
                    text = _text(item)
                    if isinstance(key, ast.Constant) and isinstance(key.value, str) and " " in text:
                        table.setdefault(key.value, text)
        return table

    def _record(self, code: str, status: int | None, detail: str, node: ast.AST) -> None:
        if not _CODE_RE.match(code):
            return
        if status is None:
            status = self._status_from_conditions()
        entry = self.found.setdefault(code, ErrorCode(code))
        entry.add(status, detail, f"{self.rel}:{getattr(node, 'lineno', 0)}")

    def _status_from_conditions(self) -> int | None:
        """``if status == 400 and ...:`` around the code tells its status."""
        for test in reversed(self.conditions):
            for node in ast.walk(test):
                if (
                    isinstance(node, ast.Compare)
                    and isinstance(node.left, ast.Name)
                    and node.left.id == "status"
                    and isinstance(node.ops[0], ast.Eq)
                    and _is_status(_int(node.comparators[0]))
                ):
                    return _int(node.comparators[0])
        return None

    def _default_of(self, name: str) -> ast.expr | None:
        """The default value of parameter ``name`` of the enclosing function."""
        if not self.functions:
            return None
        args = self.functions[-1].args
        positional = args.posonlyargs + args.args
        for arg, default in zip(
            positional[len(positional) - len(args.defaults) :], args.defaults, strict=True
        ):
            if arg.arg == name:
                return default
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if arg.arg == name:
                return default
        return None

    def _resolve(self, node: ast.expr | None) -> ast.expr | None:
        if isinstance(node, ast.Name):
            return self._default_of(node.id)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]  # noqa: N815

    def visit_If(self, node: ast.If) -> None:
        self.conditions.append(node.test)
        self.generic_visit(node)
        self.conditions.pop()

    def visit_Module(self, node: ast.Module) -> None:
        # Module-level status tables: {404: "not_found", ...} (DEFAULT_CODES) and
        # {"insufficient_stock": 409, ...} (the sales service's FAILURE_STATUS).
        for statement in node.body:
            target, value = _assignment(statement)
            if target is None or not target.isupper() or not isinstance(value, ast.Dict):
                continue
            pairs = list(zip(value.keys, value.values, strict=True))
            if pairs and all(_is_status(_int(k)) and _text(v) for k, v in pairs):
                for key, item in pairs:
                    self._record(_text(item), _int(key), "", value)
            elif pairs and all(_text(k) and _is_status(_int(v)) for k, v in pairs):
                for key, item in pairs:
                    code = _text(key)
                    self._record(code, _int(item), self.sentences.get(code, ""), value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # code, detail = "malformed_json", "The request body is not valid JSON."
        target = node.targets[0]
        if (
            isinstance(target, ast.Tuple)
            and isinstance(node.value, ast.Tuple)
            and target.elts
            and isinstance(target.elts[0], ast.Name)
            and target.elts[0].id == "code"
        ):
            code = _text(node.value.elts[0])
            detail = _text(node.value.elts[1]) if len(node.value.elts) > 1 else ""
            self._record(code, None, detail, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        callee = _callee(node)
        args = node.args
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        status = _int(args[0]) if args else None
        if _is_status(status) and len(args) >= 2:
            # ProblemError(409, "code", detail), problem_body(...), super().__init__(...)
            code = self._resolve(args[1])
            detail = self._resolve(args[2]) if len(args) > 2 else None
            self._record(_text(code), status, _text(detail), node)
        elif callee == "Conflict" and args:
            detail = args[1] if len(args) > 1 else keywords.get("detail")
            self._record(_text(args[0]), 409, _text(detail), node)
        elif "code" in keywords and _text(keywords["code"]):
            # Unauthorized("...", code="invalid_token")
            status = 401 if callee == "Unauthorized" else _int(keywords.get("status"))
            detail = args[0] if args else keywords.get("detail")
            self._record(_text(keywords["code"]), status, _text(detail), node)
        elif (
            callee == "get"
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "DEFAULT_CODES"
            and len(args) == 2
        ):
            # DEFAULT_CODES.get(status, "http_error"): a status with no code of its own
            self._record(_text(args[1]), None, "", node)
        self.generic_visit(node)


def error_codes(packages: list[str] | None = None) -> dict[str, ErrorCode]:
    """Every problem ``code`` raised in ``packages`` (default: shopkit, services, seeder)."""
    found: dict[str, ErrorCode] = {}
    for path in python_files(*(packages or CODE_PACKAGES)):
        tree = _parse(path)
        if tree is not None:
            _ErrorVisitor(path.relative_to(ROOT).as_posix(), found, tree).visit(tree)
    return dict(sorted(found.items()))


# --- environment variables ------------------------------------------------------------------


@dataclass
class EnvVar:
    """One environment variable: the defaults in the source and where it is read."""

    name: str
    defaults: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    #: ``Class.attribute`` the value lands in, when read in a class body.
    targets: list[str] = field(default_factory=list)

    def add(self, default: str, place: str, target: str = "") -> None:
        """Record one more place that reads the variable."""
        if default and default not in self.defaults:
            self.defaults.append(default)
        if place not in self.places:
            self.places.append(place)
        if target and target not in self.targets:
            self.targets.append(target)


def _class_attribute(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    """``Config.duration_s`` when ``node`` is inside that class attribute's definition."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.ClassDef):
            target, _ = _assignment(child) if isinstance(child, ast.stmt) else (None, None)
            return f"{parent.name}.{target}" if target else ""
        child, parent = parent, parents.get(parent)
    return ""


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "VALUE"`` constants (e.g. ``CRASH_AFTER_ENV``)."""
    table = {}
    for node in tree.body:
        name, value = _assignment(node)
        if name and isinstance(value, ast.Constant) and isinstance(value.value, str):
            table[name] = value.value
    return table


def _is_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _default_text(node: ast.expr | None) -> str:
    if node is None:
        return ""
    if isinstance(node, ast.Constant):
        return "" if node.value is None else str(node.value)
    return ast.unparse(node)


def environment_variables(paths: list[str] | None = None) -> dict[str, EnvVar]:
    """Every environment variable read under ``paths`` (default: code, tools and tests)."""
    found: dict[str, EnvVar] = {}
    for path in python_files(*(paths or [*CODE_PACKAGES, *TOOL_PATHS])):
        tree = _parse(path)
        if tree is None:
            continue
        constants = _module_strings(tree)
        rel = path.relative_to(ROOT).as_posix()

        def name_of(node: ast.expr, constants: dict[str, str] = constants) -> str:
            if isinstance(node, ast.Name):
                return constants.get(node.id, "")
            return _text(node) if isinstance(node, ast.Constant) else ""

        parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        for node in ast.walk(tree):
            hits: list[tuple[str, ast.expr | None]] = []
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                default = node.args[1] if len(node.args) > 1 else None
                if (
                    (
                        isinstance(func, ast.Attribute)
                        and func.attr == "get"
                        and _is_environ(func.value)
                    )
                    or (isinstance(func, ast.Attribute) and func.attr == "getenv")
                    or (isinstance(func, ast.Name) and func.id.startswith("_env"))
                ):
                    hits.append((name_of(node.args[0]), default))
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "envvar":
                        values = (
                            kw.value.elts
                            if isinstance(kw.value, ast.List | ast.Tuple)
                            else [kw.value]
                        )
                        hits.extend((name_of(value), None) for value in values)
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and _is_environ(node.value)
            ):
                hits.append((name_of(node.slice), None))
            for name, default in hits:
                if _ENV_RE.match(name):
                    entry = found.setdefault(name, EnvVar(name))
                    place = f"{rel}:{getattr(node, 'lineno', 0)}"
                    entry.add(_default_text(default), place, _class_attribute(node, parents))
    return dict(sorted(found.items()))


# --- the README -------------------------------------------------------------------------------


def readme_section(title: str, readme: Path = ROOT / "README.md") -> str:
    """The Markdown body of the README's ``## <title>`` section (without its heading)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    body: list[str] = []
    inside = False
    fence = False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            if inside:
                break
            inside = line[3:].strip().lower() == title.lower()
            continue
        if inside:
            body.append(line)
    if not inside and not body:
        raise LookupError(f"README.md has no '## {title}' section")
    return "\n".join(body).strip() + "\n"
