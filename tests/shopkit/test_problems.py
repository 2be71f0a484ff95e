"""The problem-code registry: every code the code base can answer is declared in it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shopkit.errors import DEFAULT_CODES, Conflict, ProblemError, Unauthorized
from shopkit.problems import MEMBERS, PROBLEMS, UnregisteredProblem, problem_spec
from shopkit.registry import packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shopkit", *packages().values())


def _literal(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _raised_codes() -> list[tuple[str, int | None, str]]:
    """``(code, status or None, place)`` of every literal code passed to an error constructor."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                place = f"{path.relative_to(ROOT)}:{node.lineno}"
                args = node.args
                keywords = {k.arg: k.value for k in node.keywords}
                if name in {"ProblemError", "problem_body"} and len(args) >= 2:
                    code, status = _literal(args[1]), _literal(args[0])
                    if isinstance(code, str):
                        found.append((code, status if isinstance(status, int) else None, place))
                elif name == "Conflict" and args and isinstance(_literal(args[0]), str):
                    found.append((str(_literal(args[0])), 409, place))
                elif name == "Unauthorized" and isinstance(_literal(keywords.get("code")), str):
                    found.append((str(_literal(keywords["code"])), 401, place))
    return found


def test_every_code_raised_in_the_code_base_is_registered_for_its_status() -> None:
    raised = _raised_codes()
    assert len(raised) > 40, "the scan found too few error constructors"
    wrong = []
    for code, status, place in raised:
        try:
            problem_spec(code, status)
        except UnregisteredProblem as exc:
            wrong.append(f"{place}: {exc}")
    assert not wrong, "\n".join(wrong)


def test_the_default_code_of_every_status_is_registered() -> None:
    for status, code in DEFAULT_CODES.items():
        assert status in problem_spec(code).statuses


def test_an_unregistered_code_or_status_cannot_be_raised() -> None:
    with pytest.raises(UnregisteredProblem):
        ProblemError(409, "made_up_code", "Nobody declared this.")
    with pytest.raises(UnregisteredProblem):
        ProblemError(404, "insufficient_funds", "Registered for 409 only.")
    with pytest.raises(UnregisteredProblem):
        Conflict("not_declared", "Nope.")
    assert Unauthorized("x", code="token_expired").status == 401


def test_every_member_a_code_names_is_described() -> None:
    for spec in PROBLEMS.values():
        assert spec.title.strip(), spec.code
        for member in spec.members:
            assert member in MEMBERS, f"{spec.code} names undescribed member {member}"
    used = {member for spec in PROBLEMS.values() for member in spec.members}
    assert used == set(MEMBERS), f"described but never used: {set(MEMBERS) - used}"
