"""Every third-party module the project imports is on the GPU machine or in scripts/gpu/device_wheels.sh.

The GPU machine has no network: what its package list does not name must arrive as a wheel. The test reads
that list from ../shared/docs/GPU.md beside the repository, and skips where it is absent.
"""
import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_MD = REPO.parent / "shared" / "docs" / "GPU.md"
SKIP_DIRS = {".venv", ".git", ".whl", "runs", "logs", "logs_s", "results", "device_data", "__pycache__"}
# Declared by a wheel but never imported on the target's Python 3.12 (diffusers reads importlib.metadata there).
NOT_NEEDED_ON_312 = {"importlib-metadata"}
ALIASES = {"PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "pyyaml",
           "cv2": "opencv-python-headless"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_packages() -> set[str]:
    if not GPU_MD.is_file():
        pytest.skip(f"{GPU_MD} is absent (the shared docs travel next to the repository)")
    text = GPU_MD.read_text().split("Python packages already on that machine", 1)[1].split(":", 1)[1]
    return {normalize(n.strip().rstrip(".")) for n in text.split(",") if n.strip()}


def wheel_packages() -> dict[str, str]:
    """name -> pinned version, from the WHEELS array of scripts/gpu/device_wheels.sh."""
    line = re.search(r"^WHEELS=\((.*)\)$", (REPO / "scripts" / "gpu" / "device_wheels.sh").read_text(), re.M).group(1)
    return {normalize(item.split("==")[0]): item.split("==")[1] for item in line.split()}


def project_sources() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(REPO).parts)]


def third_party_imports() -> dict[str, Path]:
    """Top-level module -> one file importing it (lazy imports inside functions included)."""
    sources = project_sources()
    # importable project names: top-level packages and modules, and the script/test folders' own modules
    # (they put their folder on sys.path); datasets/medmnist.py is not `import medmnist`
    local = {Path(p.relative_to(REPO).parts[0]).stem for p in sources}
    local |= {p.stem for p in sources if p.relative_to(REPO).parts[0] in ("scripts", "tests")}
    found: dict[str, Path] = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                    found.setdefault(top, path)
    return found


def distribution(module: str) -> str:
    dists = metadata.packages_distributions().get(module)
    return normalize(dists[0] if dists else ALIASES.get(module, module))


def test_every_third_party_import_is_on_the_gpu_machine_or_in_the_wheels():
    available = gpu_packages() | set(wheel_packages())
    imports = third_party_imports()
    assert {"torch", "diffusers", "kornia", "medmnist"} <= set(imports)  # the scan sees the project
    missing = {m: str(p.relative_to(REPO)) for m, p in imports.items() if distribution(m) not in available}
    assert not missing, f"imported, but neither in GPU.md's list nor in scripts/gpu/device_wheels.sh: {missing}"


def test_the_wheels_bring_what_they_need():
    available = gpu_packages() | set(wheel_packages()) | NOT_NEEDED_ON_312
    markers = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
               "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "extra": ""}
    from packaging.requirements import Requirement

    missing = {}
    for name, version in wheel_packages().items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here, so its requirements cannot be read")
        assert dist.version == version, f"device_wheels.sh pins {name}=={version}, the venv has {dist.version}"
        for req in map(Requirement, dist.requires or []):
            if (req.marker is None or req.marker.evaluate(markers)) and normalize(req.name) not in available:
                missing.setdefault(name, []).append(req.name)
    assert not missing, f"wheel requirements the GPU machine lacks: {missing}"


def test_wheels_are_pinned_to_requirements_txt():
    lines = [line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
             if "==" in line and not line.startswith("#")]
    pins = {normalize(name): version.strip() for name, version in lines}
    for name, version in wheel_packages().items():
        if name in pins:
            assert pins[name] == version, f"{name}: requirements.txt {pins[name]}, device_wheels.sh {version}"
