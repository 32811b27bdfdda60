"""Download helper against a local HTTP server on 127.0.0.1 (never the network)."""

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minissd.data import VOCDataset
from minissd.data.download import (
    VOC_ARCHIVES,
    Archive,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_file,
    download_voc,
    md5sum,
    safe_extract,
)
from minissd.data.synthetic import make_synthetic_voc

PAYLOAD = bytes(range(256)) * 1000  # 256 kB


class Server:
    """Serves ``files`` (name -> bytes); honours Range unless ``ranges`` is False."""

    def __init__(self, files, ranges=True):
        self.files, self.ranges, self.requests = files, ranges, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                if header and outer.ranges:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def start(files, ranges=True):
        servers.append(Server(files, ranges))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_published_checksums():
    assert {k: a.md5 for k, a in VOC_ARCHIVES.items()} == {
        "2007-trainval": "c52e279531787c972589f7e41ab4ae64",
        "2007-test": "b6e924de25625d8de591ea690078ad9f",
        "2012-trainval": "6cd6e144f989b92b3379bac3b3de84fd",
    }
    assert VOC_ARCHIVES["2007-test"].url() == (
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar"
    )
    assert VOC_ARCHIVES["2012-trainval"].url("https://m.example/files/") == (
        "https://m.example/files/VOCtrainval_11-May-2012.tar"
    )


def test_fresh_download(tmp_path, server):
    s = server({"f.tar": PAYLOAD})
    path = download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD and md5sum(path) == MD5
    assert not (tmp_path / "f.tar.part").exists() and s.requests == [("/f.tar", None)]
    # already there and verified: no request at all
    download_file("http://127.0.0.1:9/unreachable", path, MD5, progress=False)
    assert len(s.requests) == 1


def test_resume_with_range(tmp_path, server):
    s = server({"f.tar": PAYLOAD})
    (tmp_path / "f.tar.part").write_bytes(PAYLOAD[:100_000])
    path = download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert s.requests == [("/f.tar", "bytes=100000-")]


def test_server_ignoring_range_restarts(tmp_path, server):
    s = server({"f.tar": PAYLOAD}, ranges=False)
    (tmp_path / "f.tar.part").write_bytes(b"x" * 5000)
    path = download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_complete_part_file_answered_416(tmp_path, server):
    s = server({"f.tar": PAYLOAD})
    (tmp_path / "f.tar.part").write_bytes(PAYLOAD)
    path = download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD and s.requests == [("/f.tar", f"bytes={len(PAYLOAD)}-")]


def test_checksum_mismatch_deletes_and_raises(tmp_path, server):
    s = server({"f.tar": PAYLOAD[:-1] + b"!"})
    with pytest.raises(ChecksumError, match=f"f.tar: MD5 .* differs from the published {MD5}"):
        download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_final_file_is_repaired(tmp_path, server):
    s = server({"f.tar": PAYLOAD})
    (tmp_path / "f.tar").write_bytes(PAYLOAD[:1000] + b"garbage")
    with pytest.raises(ChecksumError):  # resuming after garbage cannot match...
        download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    path = download_file(f"{s.url}/f.tar", tmp_path / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD  # ...but the next run starts clean


def test_http_errors_name_the_url(tmp_path, server):
    s = server({})
    with pytest.raises(DownloadError, match=r"missing\.tar: HTTP 404"):
        download_file(f"{s.url}/missing.tar", tmp_path / "m.tar", progress=False)


def test_file_url(tmp_path):
    source = tmp_path / "src.tar"
    source.write_bytes(PAYLOAD)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f.tar.part").write_bytes(b"stale")  # file:// has no ranges
    path = download_file(source.as_uri(), tmp_path / "out" / "f.tar", MD5, progress=False)
    assert path.read_bytes() == PAYLOAD


def make_tar(path, entries):
    """entries: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def symlink_info(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


@pytest.mark.parametrize(
    "entry, match",
    [
        (file_info("../evil.txt", b"x"), "contains '..'"),
        (file_info("a/../../evil.txt", b"x"), "contains '..'"),
        (file_info("/tmp/evil.txt", b"x"), "absolute path"),
        (symlink_info("link", "/etc"), "link or special file"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_unsafe_archives_are_refused(tmp_path, entry, match):
    tar = make_tar(tmp_path / "bad.tar", [file_info("ok.txt", b"fine"), entry])
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(tar, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()


def test_not_a_tar(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"nope" * 100)
    with pytest.raises(DownloadError, match="not a readable tar"):
        safe_extract(tmp_path / "x.tar", tmp_path / "out")


def test_download_voc_end_to_end(tmp_path, server):
    """A tiny VOCdevkit tar served locally, fetched, verified, extracted and read."""
    names = make_synthetic_voc(tmp_path / "src/VOCdevkit/VOC2007", 3, 2, image_size=32)
    tar_path = tmp_path / "tiny.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tmp_path / "src/VOCdevkit", arcname="VOCdevkit")
    archive = Archive(
        "tiny.tar", md5sum(tar_path), "unused/tiny.tar", "VOCdevkit/VOC2007/ImageSets/Main/test.txt"
    )
    s = server({"tiny.tar": tar_path.read_bytes()})
    devkit = download_voc(
        tmp_path / "dl", [archive], mirror=s.url + "/", keep_archives=False, progress=False
    )
    assert devkit == tmp_path / "dl/VOCdevkit" and not (tmp_path / "dl/tiny.tar").exists()
    assert len(VOCDataset(devkit, "test", 2007, class_names=names)) == 2
    download_voc(tmp_path / "dl", [archive], mirror=s.url, progress=False)  # marker: no-op
    assert len(s.requests) == 1
    with pytest.raises(ValueError, match="unknown '2010'"):
        download_voc(tmp_path / "dl", ["2010"])
