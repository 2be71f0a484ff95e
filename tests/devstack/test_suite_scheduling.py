"""``make test`` hands its work units to the xdist workers slowest first, each whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.scheduling import SLOWEST_FIRST

ROOT = Path(__file__).resolve().parents[2]
#: A tree of work units: three that SLOWEST_FIRST ranks (one a shared directory of two
#: files) and an unranked file with the most tests, which xdist's own order would put first.
UNITS = {
    "tests/seeder/test_cli.py": 1,
    "tests/docs/test_pages.py": 2,
    "tests/docs/test_browser.py": 1,
    "tests/e2e/test_make_run.py": 1,
    "tests/many/test_many.py": 30,
}
TEST = """
def test_{n}(request):
    with open({log!r}, "a") as log:
        log.write(request.node.nodeid.split("::")[0] + "\\n")
"""


def test_every_ranked_unit_exists() -> None:
    assert [unit for unit in SLOWEST_FIRST if not (ROOT / unit).exists()] == []


def test_units_run_slowest_first_and_whole_not_by_their_number_of_tests(tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    for path, count in UNITS.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("".join(TEST.format(n=n, log=str(log)) for n in range(count)))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.scheduling", "-n", "1",
         "--dist", "loadfile", "--import-mode=importlib", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path / "tests")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ran = log.read_text().split()
    units = [path.rsplit("/", 1)[0] if path.startswith("tests/docs/") else path for path in ran]
    order = list(dict.fromkeys(units))
    assert order == ["tests/docs", "tests/e2e/test_make_run.py", "tests/seeder/test_cli.py",
                     "tests/many/test_many.py"]  # fmt: skip
    assert len(ran) == sum(UNITS.values())
    assert units == sorted(units, key=order.index)  # each unit in one piece
