"""Package layering (docs/ARCHITECTURE.md, "Import direction") and imports that do no work.

The arrows run one way: ``common`` <- ``datasets`` <- ``diffusion_models``; ``common`` <-
``models``; ``training`` may use all of these and ``evals``; ``evals`` uses all but ``training``.
Every import counts, also one inside a function: a deferred import hides a cycle, it does not
remove it.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "datasets", "models", "diffusion_models", "training", "evals")
ENTRY_POINTS = ("train", "eval", "diffusion_models.train_eval_ddpm")
FORBIDDEN = {  # package -> the packages it must not import
    "common": {"datasets", "models", "diffusion_models", "training", "evals"},
    "datasets": {"models", "diffusion_models", "training", "evals"},
    "models": {"datasets", "diffusion_models", "training", "evals"},
    "diffusion_models": {"models", "training", "evals"},
    "evals": {"training"},
    "training": set(),
}


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Every module ``path`` imports, at any depth of its syntax tree, relative imports resolved."""
    name = module_name(path, root).split(".")
    package = name if path.name == "__init__.py" else name[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def package_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_package_files_are_found():
    names = {module_name(p) for p in package_files()}
    assert {"common.shifts", "common.augment", "evals.features", "training.validate"} <= names


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    wrong = []
    for path in (REPO / package).rglob("*.py"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in FORBIDDEN[package] or module in ENTRY_POINTS:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    (tmp_path / "evals").mkdir()
    source = tmp_path / "evals" / "x.py"
    source.write_text("def f():\n    from training.views import make_views\n\nfrom . import csi_score\n")
    assert {"training.views", "evals.csi_score"} <= imported_modules(source, root=tmp_path)


def test_importing_the_packages_does_not_import_medmnist(tmp_path):
    """medmnist creates ~/.medmnist and costs seconds at import; only a MedMNIST run needs it."""
    check = "; ".join(f"import {m}; assert 'medmnist' not in sys.modules, '{m}'"
                      for m in ("datasets", "training.run", "evals.run", "evals.predict"))
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", f"import sys; {check}"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".medmnist").exists()
