"""Downloads from a loopback HTTP server: success, wrong digest, 404, dropped connection."""

import hashlib

import pytest
from loopback import FileServer
from test_workflow import MINI, snakemake, write_yaml

from coar_workflow.download import DownloadError, download

BODY = bytes(range(256)) * 4096  # 1 MiB, several read chunks


@pytest.fixture
def server():
    files = FileServer()
    files.files["/data.bin"] = BODY
    with files.running():
        yield files


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_download_with_the_right_digest(server, tmp_path):
    dest = tmp_path / "data.bin"
    digests = download(
        f"{server.url}/data.bin",
        dest,
        sha256=hashlib.sha256(BODY).hexdigest(),
        md5=hashlib.md5(BODY).hexdigest(),
        backoff=0,
    )
    assert dest.read_bytes() == BODY
    assert digests.sha256 == hashlib.sha256(BODY).hexdigest() and digests.size == len(BODY)
    assert leftovers(tmp_path) == ["data.bin"]


def test_unpinned_download_reports_its_digest(server, tmp_path, caplog):
    digests = download(f"{server.url}/data.bin", tmp_path / "data.bin", backoff=0)
    assert digests.sha256 == hashlib.sha256(BODY).hexdigest()
    assert f"its sha256 is {digests.sha256}" in caplog.text


def test_torchvision_style_hash_prefix_is_checked(server, tmp_path):
    prefix = hashlib.sha256(BODY).hexdigest()[:8]
    download(f"{server.url}/data.bin", tmp_path / "ok.bin", sha256_prefix=prefix, backoff=0)
    with pytest.raises(DownloadError, match="sha256 prefix"):
        download(f"{server.url}/data.bin", tmp_path / "bad.bin", sha256_prefix="0" * 8, backoff=0)
    assert leftovers(tmp_path) == ["ok.bin"]


def test_wrong_digest_fails_and_leaves_no_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=wrong, backoff=0)
    message = str(err.value)
    assert wrong in message and hashlib.sha256(BODY).hexdigest() in message
    assert "data.bin" in message
    assert leftovers(tmp_path) == []


def test_404_fails_without_retrying_and_leaves_no_file(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP error 404") as err:
        download(f"{server.url}/missing.bin", tmp_path / "missing.bin", backoff=0)
    assert "/missing.bin" in str(err.value)
    assert leftovers(tmp_path) == []
    assert [path for path, _ in server.requests] == ["/missing.bin"]


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.drop_once.add("/data.bin")
    dest = tmp_path / "data.bin"
    download(f"{server.url}/data.bin", dest, sha256=hashlib.sha256(BODY).hexdigest(), backoff=0)
    assert dest.read_bytes() == BODY
    assert leftovers(tmp_path) == ["data.bin"]
    (first_path, first_range), (second_path, second_range) = server.requests
    assert first_path == second_path == "/data.bin"
    assert first_range is None
    assert second_range == f"bytes={len(BODY) // 2}-"


def test_exhausted_retries_keep_only_a_hidden_part_file_that_the_next_call_resumes(
    server, tmp_path
):
    server.drop_once.add("/data.bin")
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="failed after 1 attempts"):
        download(f"{server.url}/data.bin", dest, retries=0, backoff=0)
    assert leftovers(tmp_path) == [".data.bin.part"]
    download(f"{server.url}/data.bin", dest, sha256=hashlib.sha256(BODY).hexdigest(), backoff=0)
    assert dest.read_bytes() == BODY
    assert leftovers(tmp_path) == ["data.bin"]
    assert server.requests[-1][1] == f"bytes={len(BODY) // 2}-"


def download_workflow(tmp_path, server, downloads):
    """Snakemake's download rules (embedded default + a downloads block) for `downloads`."""
    config = {"downloads": downloads, "downloads_dir": "resources"}
    overlay = write_yaml(tmp_path / "downloads.yaml", config)
    return snakemake(tmp_path, MINI, overlay, args=["--", "all_downloads"])


@pytest.mark.workflow
def test_download_rules_record_and_report_digests(server, tmp_path):
    sha = hashlib.sha256(BODY).hexdigest()
    server.files["/other.bin"] = BODY[::-1]
    result = download_workflow(
        tmp_path,
        server,
        {
            "data.bin": {"url": f"{server.url}/data.bin", "sha256": sha},
            "other.bin": {"url": f"{server.url}/other.bin", "sha256": None},
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resources = tmp_path / "resources"
    assert (resources / "data.bin").read_bytes() == BODY
    table = (resources / "digests.tsv").read_text()
    other_sha = hashlib.sha256(BODY[::-1]).hexdigest()
    assert f"data.bin\t{len(BODY)}\t{sha}\tsha256" in table
    assert f"other.bin\t{len(BODY)}\t{other_sha}\tnone" in table
    assert (
        f"other.bin:\n    sha256: {other_sha}" in (resources / "logs" / "digests.log").read_text()
    )


@pytest.mark.workflow
def test_download_rule_with_a_wrong_digest_fails_and_leaves_nothing(server, tmp_path):
    result = download_workflow(
        tmp_path, server, {"data.bin": {"url": f"{server.url}/data.bin", "sha256": "0" * 64}}
    )
    assert result.returncode != 0
    assert "checksum mismatch" in (tmp_path / "resources" / "logs" / "data.bin.log").read_text()
    assert sorted(p.name for p in (tmp_path / "resources").iterdir()) == ["benchmarks", "logs"]
