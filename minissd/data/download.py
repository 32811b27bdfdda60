"""Fetch PASCAL VOC2007 and VOC2012 into a VOCdevkit folder: resumable, checksummed, safe.

    python -m minissd.data.download data/            # VOC2007 trainval+test, VOC2012 trainval
    python -m minissd.data.download data/ --archives 2007-test --mirror https://.../

    from minissd.data.download import download_voc
    devkit = download_voc("data")          # -> data/VOCdevkit (VOC2007/, VOC2012/)
    VOCDataset(devkit, [("2007", "trainval"), ("2012", "trainval")])

Each archive is downloaded to ``<root>/<name>.tar.part``; an interrupted download
resumes where it stopped with an HTTP ``Range`` request (a server that ignores the
range restarts it from zero). The MD5 of the finished file is checked against the
published value before it is renamed to ``<name>.tar``; a mismatch deletes the
partial file and raises :class:`ChecksumError`. Extraction refuses absolute paths,
``..`` components, links and device files (:class:`UnsafeArchiveError`), so a
tampered archive cannot write outside ``root``. Archives already downloaded and
verified are not fetched again; an archive whose marker file already exists under
``root`` is not extracted again.

Sizes: VOC2007 trainval 439 MB, VOC2007 test 431 MB, VOC2012 trainval 1.9 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

__all__ = [
    "Archive",
    "VOC_ARCHIVES",
    "OFFICIAL_BASE_URL",
    "PJREDDIE_MIRROR",
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "md5sum",
    "download_file",
    "safe_extract",
    "download_voc",
    "main",
]

#: Where the VOC organisers host the archives (``<base>voc2007/<file>``).
OFFICIAL_BASE_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"
#: A widely used mirror holding the same files in one flat folder.
PJREDDIE_MIRROR = "https://pjreddie.com/media/files/"

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416


@dataclasses.dataclass(frozen=True)
class Archive:
    """One downloadable tar: where it lives, its MD5, and a file proving it is extracted."""

    filename: str
    md5: str
    official_path: str  # relative to OFFICIAL_BASE_URL
    marker: str  # a path inside the archive, relative to the extraction root

    def url(self, mirror: str | None = None) -> str:
        """The official URL, or ``<mirror>/<filename>`` (mirrors are flat folders)."""
        if mirror is None:
            return OFFICIAL_BASE_URL + self.official_path
        return mirror.rstrip("/") + "/" + self.filename


#: The official archives and their published MD5s (also in torchvision's VOC loader).
VOC_ARCHIVES = {
    "2007-trainval": Archive(
        "VOCtrainval_06-Nov-2007.tar",
        "c52e279531787c972589f7e41ab4ae64",
        "voc2007/VOCtrainval_06-Nov-2007.tar",
        "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt",
    ),
    "2007-test": Archive(
        "VOCtest_06-Nov-2007.tar",
        "b6e924de25625d8de591ea690078ad9f",
        "voc2007/VOCtest_06-Nov-2007.tar",
        "VOCdevkit/VOC2007/ImageSets/Main/test.txt",
    ),
    "2012-trainval": Archive(
        "VOCtrainval_11-May-2012.tar",
        "6cd6e144f989b92b3379bac3b3de84fd",
        "voc2012/VOCtrainval_11-May-2012.tar",
        "VOCdevkit/VOC2012/ImageSets/Main/trainval.txt",
    ),
}


class DownloadError(RuntimeError):
    """A download failed; the message names the URL."""


class ChecksumError(DownloadError):
    """A downloaded file's MD5 is not the published one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder, or is a link/device."""


def md5sum(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float):
    """Open ``url`` from byte ``offset``; returns (response or None, offset really used).

    ``None`` means the server says the range starts at or past the end: the partial
    file is already complete.
    """
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)  # fmt: skip
    except urllib.error.HTTPError as exc:
        if offset and exc.code == HTTP_RANGE_NOT_SATISFIABLE:
            return None, offset
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    if offset:
        content_range = response.headers.get("Content-Range", "")
        match = re.match(r"bytes (\d+)-", content_range)
        status = getattr(response, "status", None)  # file:// responses have none
        if status != HTTP_PARTIAL_CONTENT or not match or int(match.group(1)) != offset:
            offset = 0  # the server sent the whole file: start again
    return response, offset


def download_file(
    url: str,
    path: str | Path,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT_SECONDS,
) -> Path:
    """Download ``url`` to ``path``, resuming ``path.part`` and checking ``md5``.

    An existing ``path`` with the right MD5 is returned without any network access.
    Raises :class:`DownloadError` or :class:`ChecksumError` (naming the URL).
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    if path.is_file():
        if md5 is None or md5sum(path) == md5:
            return path
        path.rename(part)  # wrong content: treat it as a partial download to resume
    path.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    response, offset = _open(url, offset, timeout)
    if response is not None:
        with response, open(part, "ab" if offset else "wb") as out:
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                      desc=path.name, disable=not progress) as bar:  # fmt: skip
                try:
                    for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(block)
                        bar.update(len(block))
                except OSError as exc:
                    raise DownloadError(
                        f"{url}: interrupted after {out.tell()} bytes ({exc}); run again to "
                        f"resume from {part}"
                    ) from exc
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise ChecksumError(
                f"{url}: MD5 {got} differs from the published {md5}; the download was "
                f"deleted, run again"
            )
    part.replace(path)
    return path


def _check_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    name = member.name
    where = f"{archive}: member {name!r}"
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a link or special file; refusing to extract")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{where} has an absolute path; refusing to extract")
    if ".." in re.split(r"[/\\]", name):
        raise UnsafeArchiveError(f"{where} contains '..'; refusing to extract")
    target = (dest / name).resolve()
    if target != dest and dest not in target.parents:
        raise UnsafeArchiveError(f"{where} would land outside {dest}; refusing to extract")


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a tar into ``dest`` after checking every member (see the module docstring)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, dest, archive)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover
                tar.extractall(dest, members=members)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive}: not a readable tar archive ({exc})") from exc


def download_voc(
    root: str | Path,
    archives: Sequence[str | Archive] = tuple(VOC_ARCHIVES),
    mirror: str | None = None,
    keep_archives: bool = True,
    progress: bool = True,
) -> Path:
    """Download, verify and extract VOC archives under ``root``; return ``root/VOCdevkit``.

    ``archives``: names from :data:`VOC_ARCHIVES` or :class:`Archive` objects.
    ``mirror``: a base URL holding the tar files by name, instead of the official host.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for item in archives:
        if isinstance(item, str):
            if item not in VOC_ARCHIVES:
                raise ValueError(f"archives: unknown {item!r}; known: {', '.join(VOC_ARCHIVES)}")
            item = VOC_ARCHIVES[item]
        if (root / item.marker).is_file():
            continue
        tar_path = download_file(item.url(mirror), root / item.filename, item.md5, progress)
        safe_extract(tar_path, root)
        if not (root / item.marker).is_file():
            raise DownloadError(f"{tar_path}: extracted, but {item.marker} is not in it")
        if not keep_archives:
            tar_path.unlink()
    return root / "VOCdevkit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``download`` options (shared by ``minissd download`` and ``python -m
    minissd.data.download``)."""
    parser.add_argument("root", help="folder to hold the tar files and VOCdevkit/")
    parser.add_argument("--archives", nargs="+", default=list(VOC_ARCHIVES),
                        choices=list(VOC_ARCHIVES),
                        help="which archives (default: all)")  # fmt: skip
    parser.add_argument("--mirror", help=f"base URL of a mirror, e.g. {PJREDDIE_MIRROR} "
                                         f"(default: the official host)")
    parser.add_argument("--delete-archives", action="store_true",
                        help="delete each tar after extracting it")  # fmt: skip


def run(args) -> None:
    """Download as ``args`` (from ``add_arguments``) say."""
    devkit = download_voc(args.root, args.archives, args.mirror, not args.delete_archives)
    print(f"VOC is in {devkit}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minissd.data.download",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
