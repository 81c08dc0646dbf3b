import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def repo_copy(tmp_path):
    """The project's pipeline files in a fresh git repo under tmp_path."""
    dst = tmp_path / "repo"
    dst.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore", "stages", ".dvc"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("tmp", "cache", "__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    # The stages depend on the library sources; the venv imports the editable install.
    shutil.copytree(ROOT / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(["git", "init", "-q"], dst)
    run(["git", "config", "user.email", "test@example.com"], dst)
    run(["git", "config", "user.name", "test"], dst)
    return dst


def run(cmd, cwd, check=True, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
