"""Repositories from directories, archives, tables and site-packages; binary/huge/vendored files marked, not lost."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.code.filters import InputIssueFilter
from curation.code.reader import CodeRepositoryReader, InputLimits, git_blob_sha1, path_issue
from curation.code.sources import RepositoriesSource, SitePackagesSource, TableSource, distribution_files
from curation.decisions import DecisionsWriter
from nano2.contracts.shards import step_decisions_dir
from nano2.errors import Nano2Error


def read_all(source, limits: InputLimits | None = None, rank: int = 0, world_size: int = 1) -> dict[str, dict]:
    reader = CodeRepositoryReader(source, limits or InputLimits(max_file_bytes=1000))
    return {d.id: {"text": d.text, **d.metadata} for d in reader.run(None, rank, world_size)}


@pytest.fixture
def repos_root(tmp_path):
    root = tmp_path / "repos"
    plain = root / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "LICENSE").write_text("MIT License\n")
    (plain / "src" / "main.py").write_text("print('hello')\n")
    (plain / "src" / "blob.py").write_bytes(b"abc\0def")
    (plain / "src" / "huge.py").write_text("x = 1\n" * 400)
    (plain / "src" / "logo.png").write_bytes(b"\x89PNG....")
    (plain / "node_modules" / "dep").mkdir(parents=True)
    (plain / "node_modules" / "dep" / "index.js").write_text("module.exports = 1\n")
    (plain / "app.min.js").write_text("var a=1;\n")
    (plain / "latin1.c").write_bytes("/* caf\xe9 cr\xe8me br\xfbl\xe9e: d\xe9j\xe0 vu */ int x;\n".encode("latin-1"))
    (plain / ".git").mkdir()
    (plain / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    with tarfile.open(root / "tarred-1.0.tar.gz", "w:gz") as tar:
        for name, data in [("tarred-1.0/COPYING", b"GPL\n"), ("tarred-1.0/lib/a.c", b"int a;\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(root / "zipped.zip", "w") as zf:
        zf.writestr("zipped-main/README.md", "# zipped\n")
        zf.writestr("zipped-main/pkg/mod.py", "y = 2\n")
    (root / "broken.tar.gz").write_bytes(b"not a tarball")
    return root


def test_directories_and_archives_are_repositories(repos_root):
    docs = read_all(RepositoriesSource(kind="repositories", root=str(repos_root)))
    by_repo = {}
    for doc in docs.values():
        by_repo.setdefault(doc["repo"], set()).add(doc["path"])
    assert by_repo["tarred-1.0"] == {"COPYING", "lib/a.c"}  # the single top folder is stripped
    assert by_repo["zipped"] == {"README.md", "pkg/mod.py"}
    assert ".git/HEAD" not in by_repo["plain"]
    main = docs["plain/src/main.py"]
    assert main["text"] == "print('hello')\n" and main["input_issue"] is None
    assert main["blob_hash"] == git_blob_sha1(b"print('hello')\n") and main["size"] == 15


def test_binary_huge_vendored_and_generated_files_are_marked(repos_root):
    docs = read_all(RepositoriesSource(kind="repositories", root=str(repos_root)))
    assert docs["plain/src/blob.py"]["input_issue"] == "binary"
    assert docs["plain/src/huge.py"]["input_issue"] == "too_large" and docs["plain/src/huge.py"]["text"] == ""
    assert docs["plain/src/logo.png"]["input_issue"] == "binary"
    assert docs["plain/node_modules/dep/index.js"]["input_issue"] == "vendored_path"
    assert docs["plain/app.min.js"]["input_issue"] == "generated_file"
    assert "crème" in docs["plain/latin1.c"]["text"]  # not UTF-8, decoded by its detected encoding
    broken = docs["broken.tar.gz"]
    assert broken["input_issue"] == "unreadable" and "ReadError" in broken["input_detail"]


def test_binary_and_huge_files_are_dropped_with_reasons_in_the_decisions_table(repos_root, tmp_path):
    reader = CodeRepositoryReader(RepositoriesSource(kind="repositories", root=str(repos_root)), InputLimits(1000))
    out = tmp_path / "out"
    step = InputIssueFilter(exclusion_writer=DecisionsWriter(str(out), "input"))
    kept = {d.id for d in step.run(reader.run(None))}
    assert "plain/src/main.py" in kept and "plain/src/blob.py" not in kept
    files = step_decisions_dir(out, "input").glob("*.parquet")  # beside `out`, never inside it
    rows = {r["doc_id"]: r for f in files for r in pq.read_table(f).to_pylist()}
    assert rows["plain/src/blob.py"]["reason"] == "binary"
    assert rows["plain/src/huge.py"]["reason"] == "too_large"
    assert json.loads(rows["plain/src/huge.py"]["scores"])["size"] == 2400
    assert rows["plain/node_modules/dep/index.js"]["reason"] == "vendored_path"
    assert step.stats["dropped_binary"].total == 2


def test_units_are_shared_out_by_rank(repos_root):
    source = RepositoriesSource(kind="repositories", root=str(repos_root))
    first = {d["repo"] for d in read_all(source, rank=0, world_size=2).values()}
    second = {d["repo"] for d in read_all(source, rank=1, world_size=2).values()}
    assert first and second and not first & second


def test_table_source_groups_rows_by_repository(tmp_path):
    rows = {"repo_name": ["a/x", "b/y", "a/x"], "path": ["z.py", "m.go", "LICENSE"],
            "content": ["z = 1\n", "package m\n", "MIT\n"]}  # fmt: skip
    pq.write_table(pa.table(rows), tmp_path / "part.parquet")
    (tmp_path / "part.jsonl").write_text(
        "\n".join(json.dumps({"repo_name": "c/w", "path": p, "content": c}) for p, c in [("a.rs", "fn a() {}\n")])
    )
    parquet = read_all(TableSource(kind="table", paths=[str(tmp_path / "part.parquet")]))
    assert list(parquet) == ["a/x/LICENSE", "a/x/z.py", "b/y/m.go"]  # whole repositories, in path order
    jsonl = read_all(TableSource(kind="table", paths=[str(tmp_path / "*.jsonl")]))
    assert jsonl["c/w/a.rs"]["text"] == "fn a() {}\n"
    with pytest.raises(Nano2Error, match="nothing matches"):
        TableSource(kind="table", paths=[str(tmp_path / "missing-*.parquet")]).units()


def test_site_packages_distribution_keeps_license_files_at_their_project_paths():
    source = SitePackagesSource(kind="site-packages", distributions=["numpy", "six"])
    numpy = {f.path for f in distribution_files(source.installed()["numpy"], source.site_dir())}
    assert "LICENSE.txt" in numpy and "PKG-INFO" in numpy
    assert "numpy/random/LICENSE.md" in numpy  # PEP 639: governs numpy/random/ only
    assert not any(".dist-info/" in p for p in numpy)
    six = {f.path for f in distribution_files(source.installed()["six"], source.site_dir())}
    assert {"six.py", "LICENSE", "PKG-INFO"} <= six
    with pytest.raises(Nano2Error, match="not installed"):
        SitePackagesSource(kind="site-packages", distributions=["no-such-dist"]).units()


def test_path_issue_and_blob_hash():
    assert path_issue("a/third_party/b.c") == "vendored_path"
    assert path_issue("a/third_party/b.c", drop_vendored=False) is None
    assert path_issue("pkg/schema_pb2.py") == "generated_file"
    assert path_issue("lib.so") == "binary"
    assert path_issue("src/main.rs") is None
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object /dev/null`
