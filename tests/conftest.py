import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker (and per process it starts, unless portable numerics pin their
    # own): the workers already keep every core busy, and tiny models gain nothing from
    # more threads but contention. Set before anything imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The stage processes the tests start pin their own threads (portable numerics: 2), so
    # two workers' processes share 2 cores: OpenMP threads that wait should sleep, not
    # spin on a core another process needs. Scheduling only; the numbers are the same.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def repo_copy(tmp_path):
    """The project's pipeline files in a fresh git repo under tmp_path."""
    return make_repo(tmp_path / "repo")


def make_repo(dst: Path) -> Path:
    """The project's pipeline files in a fresh git repo at ``dst``."""
    dst.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "stages", ".dvc",
                 "experiments/numerics"):  # the committed CPU's fingerprint: a train dep
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


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, by whichever pytest-xdist worker asks
    first (the others wait on a lock); returns the folder."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers
    root = base / name
    with FileLock(str(base / f"{name}.lock")):
        if not (root / ".built").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            build(root)
            (root / ".built").touch()
    return root


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """(repo, log): the tiny pipeline (``test_pipeline.tiny_params``) after ``dvc repro``,
    its results committed. Built once per test session; read it, or change a
    ``copy_repo`` of it."""
    from test_pipeline import build_tiny_pipeline

    def build(root):
        (root / "log.txt").write_text(build_tiny_pipeline(make_repo(root / "repo")))

    root = built_once(tmp_path_factory, "tiny-pipeline", build)
    return root / "repo", (root / "log.txt").read_text()


def one_tiny_dataset(repo, **train):
    """params.yaml for 200 cartoon faces at 32 px and a tiny model; ``train`` overrides
    the train section (epochs 2, batch 8, 1 thread)."""
    import yaml

    p = yaml.safe_load((repo / "params.yaml").read_text())
    p.update(image_size=32, latent_dim=4)
    p["datasets"] = {"cartoon": {**p["datasets"]["cartoon"], "count": 200, "raw_size": 64}}
    p["preprocess"].update(val_fraction=0.1, test_fraction=0.1, min_side=16)
    p["model"]["channels"] = [8, 8, 16, 16]
    p["train"].update({"epochs": 2, "batch_size": 8, "threads": 1, **train})
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def dvc_env():
    """The environment for DVC: this Python's ``dvc`` (and ``python``) first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                DVC_NO_ANALYTICS="1")


def commit(repo, message):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


@pytest.fixture(scope="session")
def _one_prepared_dataset(tmp_path_factory):
    def build(root):
        repo = make_repo(root / "repo")
        one_tiny_dataset(repo)
        commit(repo, "one tiny dataset")
        run([sys.executable, "-m", "dvc", "repro", "preprocess@cartoon"], repo, env=dvc_env())
        commit(repo, "prepared")

    return built_once(tmp_path_factory, "one-prepared-dataset", build) / "repo"


@pytest.fixture
def prepared_repo(_one_prepared_dataset, tmp_path):
    """A copy of a repo whose one tiny dataset (``one_tiny_dataset``) is downloaded and
    prepared, committed: for the tests that train it. Its preprocessing is shared by the
    session; change train params with ``one_tiny_dataset(repo, ...)``."""
    return copy_repo(_one_prepared_dataset, tmp_path / "repo")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """60 synthetic cartoon faces prepared at 32 px (48/6/6 train/val/test): for the tests
    that train or read a tiny model in process."""
    from toonvae.prepare import prepare
    from toonvae.sources.synthetic import generate

    root = tmp_path_factory.mktemp("data")
    generate("cartoon", root / "raw", 60, seed=0, size=64, workers=1)
    prepare(root / "raw", root / "prepared", image_size=32, crop="center", box=None,
            val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)
    return root / "prepared"


def copy_repo(repo: Path, dst: Path) -> Path:
    """A copy of a pipeline repo, its git history, DVC cache, data and models included."""
    shutil.copytree(repo, dst, symlinks=True)
    return dst


def pytest_collection_modifyitems(config, items):
    """The order of the queue pytest-xdist hands out one test at a time (``--dist load
    --maxschedchunk 1``, pyproject's addopts): the slow tests first and the quick ones
    last, so that both workers finish at about the same time.

    The first test that needs the shared tiny pipeline goes first, so one worker builds the
    pipeline at once; the pipeline's other users come after every other slow test, so the
    other worker never waits on the build's lock."""
    users = [item for item in items if "tiny_pipeline" in getattr(item, "fixturenames", ())]
    slow = [item for item in items if item.get_closest_marker("slow") and item not in users]
    quick = [item for item in items if not item.get_closest_marker("slow") and item not in users]
    items[:] = users[:1] + slow + users[1:] + quick
