"""Real sources against local fixtures in the real layouts: an HTTP server on 127.0.0.1,
kagglehub's own cache layout, and hand-made malicious archives."""

import hashlib
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from httpserver import FileServer
from toonvae import sources
from toonvae.errors import ToonvaeError
from toonvae.params import DatasetParams
from toonvae.prepare import prepare
from toonvae.sources.synthetic import generate
from toonvae.sources.url import fetch


def cartoon_tree(root: Path, n: int, layout: str) -> Path:
    """The Cartoon Set's layouts: flat cartoonset10k/csN.png + .csv, or cartoonset100k/0..9/."""
    scratch = root / "scratch"
    generate("cartoon", scratch, n, seed=5, size=64, workers=1)
    top = root / ("cartoonset10k" if layout == "flat" else "cartoonset100k")
    for i, png in enumerate(sorted((scratch / "cartoonset").glob("*.png"))):
        folder = top if layout == "flat" else top / str(i % 10)
        folder.mkdir(parents=True, exist_ok=True)
        for f in (png, png.with_suffix(".csv")):
            shutil.copy(f, folder / f.name)
    shutil.rmtree(scratch)
    return top


def tgz(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return dest


def url_ds(url, **kw):
    return DatasetParams(source="url", crop="box", url=url, **kw)


def kaggle_anime_zip(root: Path) -> Path:
    """The Kaggle Anime Face Dataset's zip: images/N_YEAR.jpg, some of them 0 bytes."""
    tree = root / "anime"
    generate("anime", tree, 18, seed=4, size=100, workers=1)
    for name in ("70000_2019.jpg", "70001_2019.jpg"):
        (tree / "images" / name).write_bytes(b"")
    return Path(shutil.make_archive(str(root / "animefacedataset"), "zip", tree))


def kaggle_mirror_zip(root: Path) -> Path:
    """The Kaggle mirror of the Cartoon Set: JPGs in cartoonset100k_jpg/0..9/."""
    tree = root / "mirror"
    for i in range(20):
        d = tree / "cartoonset100k_jpg" / str(i % 10)
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (120, 120), (i * 12, 90, 200)).save(d / f"cs{i}.jpg")
    return Path(shutil.make_archive(str(root / "cartoonfaces"), "zip", tree))


LAYOUTS = {  # name: (build the archive, images, skipped, has attributes)
    "cartoonset10k-flat": (lambda r: tgz(cartoon_tree(r, 20, "flat"), r / "cs.tgz"), 20, 0, True),
    "cartoonset100k-0..9": (lambda r: tgz(cartoon_tree(r, 20, "100k"), r / "cs.tgz"), 20, 0, True),
    "kaggle-anime-zip": (kaggle_anime_zip, 20, 2, False),
    "kaggle-cartoon-mirror-zip": (kaggle_mirror_zip, 20, 0, False),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_url_source_serves_each_real_layout(tmp_path, layout, capfd):
    build, n_images, n_skipped, has_attributes = LAYOUTS[layout]
    archive = build(tmp_path / "src")
    out = tmp_path / "raw"
    with FileServer(archive.parent) as server:
        n = sources.download(url_ds(f"{server.url}/{archive.name}"), out, seed=0,
                             downloads=tmp_path / "dl")
    assert n == n_images
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert digest in capfd.readouterr().err  # no sha256 pinned: it is printed
    m = prepare(out, tmp_path / "prep", image_size=32, crop="box", box=(0.1, 0.08, 0.9, 0.88),
                val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=1)
    assert sum(m["counts"].values()) == n_images - n_skipped
    assert len(m["skipped"]) == n_skipped
    assert ("hair_color" in m["attributes"]) == has_attributes


def test_sha256_is_verified_and_a_mismatch_removes_the_file(tmp_path):
    serve = tmp_path / "www"
    serve.mkdir()
    payload = os.urandom(50_000)
    (serve / "a.bin").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    with FileServer(serve) as server:
        assert fetch(f"{server.url}/a.bin", tmp_path / "ok.bin", good) == good
        with pytest.raises(ToonvaeError, match="sha256 mismatch.*partial file was removed"):
            fetch(f"{server.url}/a.bin", tmp_path / "bad.bin", "0" * 64)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.part").exists()


def test_a_download_cut_off_midway_is_resumed_with_range(tmp_path):
    serve = tmp_path / "www"
    serve.mkdir()
    payload = os.urandom(300_000)
    (serve / "big.tgz").write_bytes(payload)
    with FileServer(serve) as server:
        server.cut_first = 100_000
        digest = fetch(f"{server.url}/big.tgz", tmp_path / "big.tgz", backoff=0)
        ranges = [r["range"] for r in server.requests]
    assert (tmp_path / "big.tgz").read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()
    assert ranges == [None, "bytes=100000-"]


def test_a_killed_download_resumes_from_its_part_file(tmp_path):
    serve = tmp_path / "www"
    serve.mkdir()
    payload = os.urandom(120_000)
    (serve / "x.zip").write_bytes(payload)
    (tmp_path / "x.zip.part").write_bytes(payload[:70_000])  # what a SIGKILL leaves behind
    with FileServer(serve) as server:
        fetch(f"{server.url}/x.zip", tmp_path / "x.zip")
        assert [r["range"] for r in server.requests] == ["bytes=70000-"]
    assert (tmp_path / "x.zip").read_bytes() == payload


def test_server_errors_are_retried_then_reported_and_404_is_not(tmp_path):
    serve = tmp_path / "www"
    serve.mkdir()
    (serve / "f").write_bytes(b"x" * 10)
    with FileServer(serve) as server:
        server.fail_next = 1
        fetch(f"{server.url}/f", tmp_path / "f", backoff=0)
        server.fail_next = 10
        with pytest.raises(ToonvaeError, match="failed after 3 tries"):
            fetch(f"{server.url}/f", tmp_path / "g", retries=2, backoff=0)
        server.fail_next = 0
        before = len(server.requests)
        with pytest.raises(ToonvaeError, match="HTTP 404"):
            fetch(f"{server.url}/missing", tmp_path / "h", backoff=0)
        assert len(server.requests) == before + 1
    assert not list(tmp_path.glob("*.part"))


# ------------------------------------------------------------------ malicious archives
def _tar_with(dest, member: tarfile.TarInfo, data: bytes = b""):
    with tarfile.open(dest, "w:gz") as tf:
        ok = tarfile.TarInfo("faces/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(member, io.BytesIO(data) if data else None)
    return dest


def _member(name, kind=tarfile.REGTYPE, size=0, link=""):
    m = tarfile.TarInfo(name)
    m.type, m.size, m.linkname = kind, size, link
    return m


EVIL = {
    "traversal": (lambda d: _tar_with(d / "a.tgz", _member("../escaped.txt", size=4), b"evil"),
                  "climbs out"),
    "absolute": (lambda d: _tar_with(d / "a.tgz", _member("/tmp/toonvae-escaped.txt", size=4),
                                     b"evil"), "absolute path"),
    "symlink": (lambda d: _tar_with(d / "a.tgz", _member("faces/link", tarfile.SYMTYPE,
                                                          link="../../../etc")), "link"),
    "hardlink": (lambda d: _tar_with(d / "a.tgz", _member("faces/hard", tarfile.LNKTYPE,
                                                           link="/etc/passwd")), "link"),
    "device": (lambda d: _tar_with(d / "a.tgz", _member("faces/dev", tarfile.CHRTYPE)),
               "device"),
    "oversize": (lambda d: _tar_with(d / "a.tgz", _member("faces/big.bin", size=5000),
                                     b"\0" * 5000), "more than 1,000 bytes"),
    "zip-traversal": (lambda d: _zip_with(d / "a.zip", "../escaped.txt"), "climbs out"),
    "zip-symlink": (lambda d: _zip_with(d / "a.zip", "faces/link", symlink=True), "symbolic link"),
}


def _zip_with(dest, name, symlink=False):
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("faces/ok.txt", "ok")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd" if symlink else "evil")
    return dest


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("kind", sorted(EVIL))
def test_malicious_archives_are_refused_and_nothing_is_written(tmp_path, kind):
    make, reason = EVIL[kind]
    work = tmp_path / "work"
    (work / "data" / "raw").mkdir(parents=True)
    archive = make(tmp_path)
    before = _tree(tmp_path)
    ds = DatasetParams(source="folder", crop="center", path=str(archive), max_bytes=1000)
    with pytest.raises(ToonvaeError, match=reason) as err:
        sources.download(ds, work / "data" / "raw" / "evil", seed=0)
    assert "\n" not in str(err.value)
    assert _tree(tmp_path) == before  # no output folder, no temp folder, nothing outside
    assert not Path("/tmp/toonvae-escaped.txt").exists()


# ------------------------------------------------------------------ kaggle
@pytest.fixture
def kaggle_cache(tmp_path, monkeypatch):
    """kagglehub's cache in tmp_path, and its API pointed at a closed localhost port."""
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")  # http://localhost:7777: nothing there
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    def lay_out(handle: str) -> Path:
        h = parse_dataset_handle(handle)
        root = Path(Cache().get_path(h))
        root.mkdir(parents=True)
        return root, lambda: Cache().mark_as_complete(h)

    return lay_out


def test_kaggle_anime_layout_from_the_cache_with_empty_files(tmp_path, kaggle_cache):
    root, done = kaggle_cache("splcher/animefacedataset/versions/3")
    generate("anime", root, 12, seed=2, size=100, workers=1)
    (root / "images" / "99999_2020.jpg").write_bytes(b"")  # the real set has 0-byte files
    done()
    ds = DatasetParams(source="kaggle", crop="center", handle="splcher/animefacedataset/versions/3")
    out = tmp_path / "raw"
    assert sources.download(ds, out, seed=0) == 13
    assert len(list((out / "images").glob("*.jpg"))) == 13
    m = prepare(out, tmp_path / "prep", image_size=32, crop="center", box=None,
                val_fraction=0.0, test_fraction=0.0, min_side=16, seed=0, workers=1)
    assert m["counts"]["train"] == 12 and m["skipped_by_reason"] == {"empty file": 1}


def test_kaggle_cartoon_mirror_layout(tmp_path, kaggle_cache):
    handle = "brendanartley/cartoon-faces-googles-cartoon-set/versions/1"
    root, done = kaggle_cache(handle)
    for i in range(20):
        d = root / "cartoonset100k_jpg" / str(i % 10)
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (80, 80), (i * 10, 100, 200)).save(d / f"cs{i}.jpg")
    done()
    out = tmp_path / "raw"
    n = sources.download(DatasetParams(source="kaggle", crop="box", handle=handle), out, seed=0)
    assert n == 20 and len(list(out.rglob("*.jpg"))) == 20


def test_kaggle_without_cache_or_network_says_what_to_do(tmp_path, kaggle_cache):
    ds = DatasetParams(source="kaggle", crop="center", handle="nobody/nothing/versions/1")
    with pytest.raises(ToonvaeError, match="set Kaggle credentials.*source: synthetic") as err:
        sources.download(ds, tmp_path / "raw", seed=0)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "raw").exists() and not (tmp_path / "raw.tmp").exists()


# ------------------------------------------------------------------ folder
def test_folder_source_with_glob_and_bad_files(tmp_path):
    faces = tmp_path / "myfaces"
    generate("cartoon", faces, 30, seed=9, size=64, workers=1)
    for name in ("empty.png", "notes.txt"):
        (faces / "cartoonset" / name).write_bytes(b"")
    (faces / "cartoonset" / "truncated.png").write_bytes(
        (faces / "cartoonset" / "cs00000000.png").read_bytes()[:300])
    Image.new("RGB", (10, 10)).save(faces / "cartoonset" / "tiny.png")
    shutil.copy(faces / "cartoonset" / "cs00000001.png", faces / "cartoonset" / "copy.png")
    out = tmp_path / "raw"
    ds = DatasetParams(source="folder", crop="center", path=str(faces), glob="**/*.png")
    assert sources.download(ds, out, seed=0) == 34  # images; the .txt does not match
    assert (out / "cartoonset" / "cs00000000.csv").is_file()  # sidecar attributes come along
    m = prepare(out, tmp_path / "prep", image_size=32, crop="center", box=None,
                val_fraction=0.1, test_fraction=0.1, min_side=16, seed=0, workers=2)
    assert m["skipped_by_reason"] == {"empty file": 1, "too small": 1, "truncated": 1}
    assert [d["file"] for d in m["duplicates"]] == ["cartoonset/cs00000001.png"]
    assert sum(m["counts"].values()) == 30


def test_folder_source_from_a_zip_and_a_missing_path(tmp_path):
    faces = tmp_path / "faces"
    generate("anime", faces, 8, seed=1, size=64, workers=1)
    archive = shutil.make_archive(str(tmp_path / "faces"), "zip", faces)
    out = tmp_path / "raw"
    ds = DatasetParams(source="folder", crop="center", path=archive)
    assert sources.download(ds, out, seed=0) == 8
    assert len(list((out / "images").glob("*.jpg"))) == 8
    missing = DatasetParams(source="folder", crop="center", path=str(tmp_path / "nope"))
    with pytest.raises(ToonvaeError, match="does not exist"):
        sources.download(missing, tmp_path / "raw2", seed=0)
