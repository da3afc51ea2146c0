"""Every file path and ``python -m`` module named in the README and docs/ exists in the repository."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "scripts").rglob("*.md"))]
TOP = ("scripts", "tests", "docs", "common", "models", "training", "evals", "diffusion_models", "datasets")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w\.(?:py|sh|md|png|json|csv|npz))" % "|".join(TOP))
MODULE = re.compile(r"python -m ([a-z_]+(?:\.[a-z_]+)*)")


def named_paths(doc: Path) -> set[str]:
    return set(PATH.findall(doc.read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_path_a_document_names_exists(doc):
    text = doc.read_text()
    missing = sorted(p for p in named_paths(doc) if not (REPO / p).exists() and not (doc.parent / p).exists())
    assert not missing, f"{doc.relative_to(REPO)} names files that do not exist: {missing}"
    modules = {m for m in MODULE.findall(text) if m.split(".")[0] in TOP}
    absent = sorted(m for m in modules if not (REPO / (m.replace(".", "/") + ".py")).exists()
                    and not (REPO / m.replace(".", "/") / "__main__.py").exists())
    assert not absent, f"{doc.relative_to(REPO)} runs modules that do not exist: {absent}"


def test_the_scan_finds_paths_and_would_catch_a_missing_one(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("run `bash scripts/demo.sh` then `python scripts/no_such_script.py` (see docs/gpu.md)")
    assert named_paths(doc) == {"scripts/demo.sh", "scripts/no_such_script.py", "docs/gpu.md"}
