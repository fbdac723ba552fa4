"""Safe, atomic archive extraction: good archives, members_prefix, truncation, and refused members."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

import ddpmseg.data.archive
from ddpmseg.data.archive import extract_archive
from ddpmseg.base.errors import DdpmsegError

FILES = {
    "horse_21/real/train/000.png": b"png of horse 0",
    "horse_21/real/train/000.npy": b"mask of horse 0",
    "horse_21/real/test/001.png": b"png of horse 1" * 5000,
    "cat_15/real/train/000.png": b"png of cat 0",
}


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz", dot_prefix: bool = False) -> Path:
    lead = "./" if dot_prefix else ""
    with tarfile.open(path, mode) as tar:
        if dot_prefix:
            add_dir(tar, ".")
        for folder in sorted({name.split("/")[0] for name in files}):
            add_dir(tar, lead + folder)
        for name, data in files.items():
            add_file(tar, lead + name, data)
    return path


def assert_nothing_left(out: Path, target: Path) -> None:
    """No target, no temporary folder beside it."""
    assert not target.exists()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".tar.gz"), ("w", ".tar")])
def test_good_tar_extracts_everything(tmp_path, mode, suffix):
    archive = make_tar(tmp_path / f"datasets{suffix}", FILES, mode)
    target = tmp_path / "out" / "datasets"
    names = extract_archive(archive, target)
    assert names == list(FILES)
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["datasets"]  # no temporary folder left
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_members_prefix_extracts_one_dataset_relative_to_it(tmp_path):
    archive = make_tar(tmp_path / "datasets.tar.gz", FILES, dot_prefix=True)
    target = tmp_path / "resources" / "horse_21"
    names = extract_archive(archive, target, members_prefix="horse_21/")
    assert names == ["real/train/000.png", "real/train/000.npy", "real/test/001.png"]
    assert (target / "real" / "test" / "001.png").read_bytes() == FILES["horse_21/real/test/001.png"]
    assert not (target / "cat_15").exists() and not (target / "horse_21").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["horse_21"]


def test_extraction_replaces_an_existing_target(tmp_path):
    archive = make_tar(tmp_path / "datasets.tar.gz", FILES)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("from before")
    extract_archive(archive, target, members_prefix="cat_15")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == ["real/train/000.png"]


def test_unknown_prefix_is_an_error(tmp_path):
    archive = make_tar(tmp_path / "datasets.tar.gz", FILES)
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: no files under 'dog_9/'"):
        extract_archive(archive, out / "dog_9", members_prefix="dog_9/")
    assert_nothing_left(out, out / "dog_9")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_tar_gz_is_refused(tmp_path, keep):
    big = {"horse_21/real/train/big.bin": bytes(range(256)) * 20000, **FILES}
    archive = make_tar(tmp_path / "datasets.tar.gz", big)
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep)])
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: .*(corrupt or truncated|truncated)"):
        extract_archive(archive, out / "datasets")
    assert_nothing_left(out, out / "datasets")


@pytest.mark.parametrize("damage", ["cut_trailer", "flip_crc"])
def test_gzip_trailer_is_checked(tmp_path, damage):
    archive = make_tar(tmp_path / "datasets.tar.gz", FILES)
    data = bytearray(archive.read_bytes())
    if damage == "cut_trailer":
        data = data[:-4]  # the member data is complete, the length field is gone
    else:
        data[-8] ^= 0xFF  # CRC32 of the uncompressed data
    archive.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: corrupt or truncated archive"):
        extract_archive(archive, out / "datasets")
    assert_nothing_left(out, out / "datasets")


def test_truncated_plain_tar_is_refused(tmp_path):
    archive = make_tar(tmp_path / "datasets.tar", {"a/big.bin": b"x" * 100_000}, mode="w")
    archive.write_bytes(archive.read_bytes()[:50_000])
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"datasets\.tar"):
        extract_archive(archive, out / "t")
    assert_nothing_left(out, out / "t")


def test_not_an_archive(tmp_path):
    archive = tmp_path / "datasets.tar.gz"
    archive.write_bytes(b"<html>a proxy error page</html>")
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: corrupt or truncated archive"):
        extract_archive(archive, tmp_path / "out" / "t")
    with pytest.raises(DdpmsegError, match="no such archive"):
        extract_archive(tmp_path / "missing.tar.gz", tmp_path / "out" / "t")


def _evil_members(kind: str, tmp_path: Path):
    def build(tar: tarfile.TarFile) -> str:
        add_file(tar, "horse_21/real/train/000.png", b"fine")
        if kind == "dotdot":
            add_file(tar, "horse_21/../../evil", b"escaped")
            return "horse_21/../../evil"
        if kind == "absolute":
            name = str(tmp_path / "absolute_evil")
            add_file(tar, name, b"escaped")
            return name
        info = tarfile.TarInfo("horse_21/link")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path / "outside.txt")
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "horse_21/real/train/000.png"
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info)
        return "horse_21/link"

    return build


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo", "device"])
def test_unsafe_tar_members_are_refused(tmp_path, kind):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = _evil_members(kind, tmp_path)(tar)
    (tmp_path / "outside.txt").write_text("untouched")
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError) as info:
        extract_archive(archive, out / "data")
    message = str(info.value)
    assert message.startswith(f"{archive}: member '{member}'") and "refused" in message
    assert_nothing_left(out, out / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "out", "outside.txt"]
    assert (tmp_path / "outside.txt").read_text() == "untouched"


def test_unsafe_member_outside_prefix_is_still_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        add_file(tar, "horse_21/a.png", b"fine")
        add_file(tar, "cat_15/../../evil", b"escaped")
    with pytest.raises(DdpmsegError, match=r"'\.\.' component"):
        extract_archive(archive, tmp_path / "out" / "horse", members_prefix="horse_21/")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "horse").exists()


def test_good_zip_and_prefix(tmp_path):
    archive = tmp_path / "datasets.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("horse_21/", b"")
        for name, data in FILES.items():
            zf.writestr(name, data)
    names = extract_archive(archive, tmp_path / "all")
    assert names == list(FILES)
    assert (tmp_path / "all" / "cat_15" / "real" / "train" / "000.png").read_bytes() == b"png of cat 0"
    assert extract_archive(archive, tmp_path / "cat", members_prefix="./cat_15/") == ["real/train/000.png"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unsafe_zip_members_are_refused(tmp_path, kind):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        if kind == "dotdot":
            zf.writestr("ok/../../evil", b"escaped")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo("/tmp/absolute_evil"), b"escaped")
        else:
            info = zipfile.ZipInfo("ok/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"evil\.zip: member .*refused"):
        extract_archive(archive, out / "data")
    assert_nothing_left(out, out / "data")
    assert not (tmp_path / "evil").exists()


def test_truncated_zip_is_refused(tmp_path):
    archive = tmp_path / "datasets.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    archive.write_bytes(archive.read_bytes()[:-40])
    out = tmp_path / "out"
    with pytest.raises(DdpmsegError, match=r"datasets\.zip: corrupt or truncated archive"):
        extract_archive(archive, out / "d")
    assert_nothing_left(out, out / "d")


# -- check_archive: the content check of a downloaded archive, before its digest is trusted --


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar", ".zip", ".tar.gz.part", ".zip.part"])
def test_check_archive_lists_every_file_and_writes_nothing(tmp_path, suffix):
    archive = tmp_path / f"datasets{suffix}"
    if ".zip" in suffix:
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("horse_21/", b"")
            for name, data in FILES.items():
                zf.writestr(name, data)
    else:
        make_tar(archive, FILES, "w:gz" if ".gz" in suffix else "w")
    assert ddpmseg.data.archive.check_archive(archive) == list(FILES)
    assert files_under(tmp_path) == [archive.name]


@pytest.mark.parametrize("damage", ["truncated", "flip_crc", "html"])
def test_check_archive_refuses_a_damaged_download(tmp_path, damage):
    big = {"horse_21/real/train/big.bin": bytes(range(256)) * 20000, **FILES}
    archive = make_tar(tmp_path / "datasets.tar.gz", big)
    data = bytearray(archive.read_bytes())
    if damage == "truncated":
        data = data[: int(len(data) * 0.9)]
    elif damage == "flip_crc":
        data[-8] ^= 0xFF
    else:
        data = bytearray(b"<!doctype html><html>quota exceeded</html>")
    archive.write_bytes(bytes(data))
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: .*(corrupt or truncated|truncated)"):
        ddpmseg.data.archive.check_archive(archive)
    assert files_under(tmp_path) == ["datasets.tar.gz"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo", "device"])
def test_check_archive_refuses_unsafe_members(tmp_path, kind):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = _evil_members(kind, tmp_path)(tar)
    with pytest.raises(DdpmsegError) as info:
        ddpmseg.data.archive.check_archive(archive)
    assert str(info.value).startswith(f"{archive}: member '{member}'") and "refused" in str(info.value)
    assert files_under(tmp_path) == ["evil.tar.gz"]


def test_check_archive_refuses_an_empty_archive(tmp_path):
    archive = make_tar(tmp_path / "empty.tar", {}, mode="w")
    with pytest.raises(DdpmsegError, match=r"empty\.tar: no files in the archive"):
        ddpmseg.data.archive.check_archive(archive)
