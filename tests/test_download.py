"""Downloads from a loopback HTTP server: success, wrong digest, 404, dropped connection, and
the faults of tests/faults_http.py (no length, stale .part files, server errors)."""

import hashlib

import pytest
from faults_http import ChunkedServer, NoLengthServer, StatusServer
from loopback import FileServer, etag_of
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
    assert leftovers(tmp_path) == [".data.bin.part", ".data.bin.part.validator"]
    download(f"{server.url}/data.bin", dest, sha256=hashlib.sha256(BODY).hexdigest(), backoff=0)
    assert dest.read_bytes() == BODY
    assert leftovers(tmp_path) == ["data.bin"]
    assert server.requests[-1][1] == f"bytes={len(BODY) // 2}-"


HALF = len(BODY) // 2
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def no_length():
    files = NoLengthServer()
    files.files["/data.bin"] = BODY
    with files.running():
        yield files


# --- Fault 1: a body cut short must never be accepted ---------------------------------------


def test_body_shorter_than_its_content_length_is_refused(server, tmp_path):
    server.drop_once.add("/data.bin")
    with pytest.raises(DownloadError, match=f"connection closed after {HALF} of {len(BODY)}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", retries=0, backoff=0)
    assert "data.bin" not in leftovers(tmp_path)


def test_body_without_length_cut_short_is_detected_and_resumed(no_length, tmp_path):
    no_length.cut_short = 1
    dest = tmp_path / "data.bin"
    digests = download(f"{no_length.url}/data.bin", dest, backoff=0)
    assert dest.read_bytes() == BODY and digests.sha256 == SHA
    assert leftovers(tmp_path) == ["data.bin"]
    # The size came from a ranged request for the first byte; the rest was resumed.
    assert no_length.requests == [
        ("/data.bin", None),
        ("/data.bin", "bytes=0-0"),
        ("/data.bin", f"bytes={HALF}-"),
    ]
    assert no_length.if_ranges[-1] == etag_of(BODY)


def test_unpinned_body_without_any_reported_size_is_refused(no_length, tmp_path):
    no_length.reports_size = False
    no_length.cut_short = 1
    url = f"{no_length.url}/data.bin"
    with pytest.raises(DownloadError, match="without a Content-Length") as err:
        download(url, tmp_path / "data.bin", backoff=0)
    message = str(err.value)
    assert url in message and str(tmp_path / "data.bin") in message
    assert "Pin the file's sha256 in the config" in message and "retry" in message
    assert leftovers(tmp_path) == []


def test_pinned_body_without_any_reported_size_is_left_to_its_digest(no_length, tmp_path):
    no_length.reports_size = False
    url = f"{no_length.url}/data.bin"
    download(url, tmp_path / "data.bin", sha256=SHA, backoff=0)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    no_length.cut_short = 1
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        download(url, tmp_path / "cut.bin", sha256=SHA, backoff=0)
    assert "may have been cut short; retry the download" in str(err.value)
    assert leftovers(tmp_path) == ["data.bin"]


def test_empty_body_without_length_is_sized_by_a_416_answer(no_length, tmp_path):
    no_length.files["/empty.bin"] = b""
    digests = download(f"{no_length.url}/empty.bin", tmp_path / "empty.bin", backoff=0)
    assert digests.size == 0 and leftovers(tmp_path) == ["empty.bin"]


def test_chunked_body_cut_short_is_resumed_without_a_size_probe(tmp_path):
    chunked = ChunkedServer()
    chunked.files["/data.bin"] = BODY
    chunked.cut_short = 1
    with chunked.running():
        download(f"{chunked.url}/data.bin", tmp_path / "data.bin", backoff=0)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in chunked.requests] == [None, f"bytes={HALF}-"]


# --- Fault 2: a .part file is resumed only against the version it holds --------------------


def test_stale_part_without_a_recorded_validator_is_discarded(server, tmp_path):
    (tmp_path / ".data.bin.part").write_bytes(b"stale content from elsewhere" * 1000)
    dest = tmp_path / "data.bin"
    digests = download(f"{server.url}/data.bin", dest, backoff=0)
    assert dest.read_bytes() == BODY and digests.sha256 == SHA
    assert server.requests == [("/data.bin", None)]
    assert leftovers(tmp_path) == ["data.bin"]


def test_part_of_an_older_version_is_restarted_when_if_range_does_not_match(server, tmp_path):
    server.drop_once.add("/data.bin")
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="next attempt resumes"):
        download(f"{server.url}/data.bin", dest, retries=0, backoff=0)
    new = BODY[::-1]
    server.files["/data.bin"] = new
    digests = download(f"{server.url}/data.bin", dest, backoff=0)
    assert dest.read_bytes() == new and digests.sha256 == hashlib.sha256(new).hexdigest()
    assert server.requests[-1] == ("/data.bin", f"bytes={HALF}-")
    assert server.if_ranges[-1] == etag_of(BODY)
    assert leftovers(tmp_path) == ["data.bin"]


def test_resume_answered_with_another_version_is_not_spliced(server, tmp_path):
    server.ignore_if_range = True  # answers 206 for the new content despite the old If-Range
    server.drop_once.add("/data.bin")
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="next attempt resumes"):
        download(f"{server.url}/data.bin", dest, retries=0, backoff=0)
    new = BODY[::-1]
    server.files["/data.bin"] = new
    download(f"{server.url}/data.bin", dest, backoff=0)
    assert dest.read_bytes() == new
    assert [r for _, r in server.requests[1:]] == [f"bytes={HALF}-", None]


def test_part_without_validator_after_exhausted_retries_is_not_kept(no_length, tmp_path):
    no_length.etag = False
    no_length.cut_short = 1
    with pytest.raises(DownloadError, match="next attempt starts from the beginning"):
        download(f"{no_length.url}/data.bin", tmp_path / "data.bin", retries=0, backoff=0)
    assert leftovers(tmp_path) == []


# --- Fault 3: server errors are reported as such ------------------------------------------


@pytest.mark.parametrize(
    ("status", "says", "requests"),
    [
        (500, "server error: HTTP 500", 2),
        (503, "server error: HTTP 503", 2),
        (404, "HTTP error 404", 1),
    ],
)
def test_http_error_messages_say_what_to_do(tmp_path, status, says, requests):
    failing = StatusServer(status)
    with failing.running():
        url = f"{failing.url}/data.bin"
        with pytest.raises(DownloadError, match=says) as err:
            download(url, tmp_path / "data.bin", retries=1, backoff=0)
    message = str(err.value)
    assert url in message and str(tmp_path / "data.bin") in message
    if status >= 500:
        assert "retry later" in message and "Check the URL" not in message
    else:
        assert "Check the URL in the config" in message
    assert len(failing.requests) == requests
    assert leftovers(tmp_path) == []


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


@pytest.mark.workflow
def test_download_rule_refuses_a_truncated_unpinned_file_and_records_no_digest(tmp_path):
    no_length = NoLengthServer()
    no_length.files["/data.bin"] = BODY
    no_length.reports_size = False
    no_length.cut_short = 10
    with no_length.running():
        result = download_workflow(
            tmp_path,
            no_length,
            {"data.bin": {"url": f"{no_length.url}/data.bin", "sha256": None}},
        )
    assert result.returncode != 0
    log = (tmp_path / "resources" / "logs" / "data.bin.log").read_text()
    assert "Pin the file's sha256 in the config" in log
    resources = sorted(p.name for p in (tmp_path / "resources").iterdir())
    assert resources == ["benchmarks", "logs"]  # no data.bin, no data.bin.json, no digests.tsv
