"""force_jax.runs.files: the one writer of result files (atomic, usual mode, named errors)."""

from __future__ import annotations

import ast
import errno
import os
import pathlib
import stat

import pytest

from force_jax.runs import checkpoint, files

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "force_jax"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_bytes_and_text_are_written_whole_with_the_usual_mode(tmp_path):
    path = tmp_path / "new" / "folder" / "figure.png"
    files.write_atomic(str(path), b"\x89PNG\x00\xff")
    assert path.read_bytes() == b"\x89PNG\x00\xff"
    files.write_atomic(str(path), "0.8650 ± 0.0040\n")  # a str is UTF-8
    assert path.read_bytes() == "0.8650 ± 0.0040\n".encode()
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(path) == 0o666 & ~umask
    assert os.listdir(path.parent) == ["figure.png"]


def test_anything_but_bytes_or_text_is_refused_before_a_file_is_made(tmp_path):
    path = tmp_path / "results.csv"
    files.write_atomic(str(path), "old\n")
    with pytest.raises(TypeError, match="bytes or str, not dict"):
        files.write_atomic(str(path), {"a": 1})
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["results.csv"]


def test_a_refusing_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "summary.md"
    files.write_atomic(str(path), "old\n")

    def read_only(fd):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "fsync", read_only)
    with pytest.raises(OSError) as refused:
        files.write_atomic(str(path), "new\n")
    assert (refused.value.errno, refused.value.filename) == (errno.EROFS, str(path))
    with pytest.raises(OSError) as refused:
        files.append_line(str(path), "more\n")
    assert (refused.value.errno, refused.value.filename) == (errno.EROFS, str(path))
    monkeypatch.undo()
    assert path.read_text().startswith("old\n")
    assert sorted(os.listdir(tmp_path)) == ["summary.md"]


def test_an_append_adds_to_the_same_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    files.append_line(str(path), '{"step": 1}\n')
    inode = os.stat(path).st_ino
    files.append_line(str(path), '{"step": 2}\n')
    assert os.stat(path).st_ino == inode
    assert checkpoint.read_jsonl(str(path)) == [{"step": 1}, {"step": 2}]


def test_checkpoint_s_writer_is_this_one():
    assert checkpoint.write_atomic is files.write_atomic


# The calls that write a file. Only files.py makes them; checkpoint.py moves a damaged
# checkpoint folder aside (os.replace) and lock.py holds a lock file (os.open), neither a
# result file; orbax and TensorBoard write their own.
_WRITES = {"os.replace", "os.rename", "os.open", "os.fdopen", "os.write", "shutil.copyfile",
           "shutil.copy", "shutil.copy2", "shutil.copytree", "shutil.move", "tempfile.mkstemp",
           "tempfile.NamedTemporaryFile", ".write_text", ".write_bytes"}
_ALLOWED = {"runs/files.py": _WRITES | {"open"}, "runs/checkpoint.py": {"os.replace"},
            "runs/lock.py": {"os.open"}}


def _writes(path: pathlib.Path) -> set[str]:
    """The writing calls in a file: those of _WRITES, and open() with a w, a, x or + mode."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            for name in (f"{owner}.{func.attr}", f".{func.attr}"):
                if name in _WRITES:
                    found.add(name)
        elif isinstance(func, ast.Name) and func.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                found.add("open")
    return found


def _offenders(calls, allowed: dict[str, set[str]]) -> dict[str, list[str]]:
    """{package file: the calls `calls(path)` finds there beyond its `allowed` ones}."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        extra = calls(path) - allowed.get(relative, set())
        if extra:
            offenders[relative] = sorted(extra)
    return offenders


def test_files_is_the_one_module_that_writes_a_file():
    assert _offenders(_writes, _ALLOWED) == {}


# The calls that read or list a path through the local filesystem only. Outside files.py
# they would break a gs:// workdir; each exception below is local by design.
_LOCAL_ONLY = {"open", "os.path.exists", "os.path.isdir", "os.path.isfile", "os.path.getsize",
               "os.path.abspath", "os.listdir", "os.makedirs", "os.remove", "glob.glob",
               "shutil.rmtree", "shutil.copytree"}
_LOCAL_BY_DESIGN = {
    "runs/files.py": _LOCAL_ONLY,  # the path layer's local branch
    "runs/store.py": {"os.path.exists"},  # a "gs:/x" typo, told from a local folder
    "runs/lock.py": {"open", "os.path.exists", "os.path.isdir", "os.makedirs"},  # flock
    "commands/cli.py": {"os.path.abspath", "os.path.exists", "os.path.isfile"},  # config files
    "commands/startup.py": {"open"},  # /proc/self/environ, the command's own environment
    "runs/metrics.py": {"open", "os.listdir", "shutil.rmtree"},  # TensorBoard local copy
    "reports/scale_report.py": _LOCAL_ONLY,  # a docs tool over local folders
    "core/compile_options.py": {"open"},  # /proc/cpuinfo, for the run record's machine
    # A damaged dataset's files, scanned on the error path (a gs:// data_dir finds none).
    "training/record_files.py": {"open", "os.path.getsize", "glob.glob"},
}


def _local_calls(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in _LOCAL_ONLY:
                found.add(name)
    return found


def test_every_run_file_goes_through_the_path_layer():
    assert _offenders(_local_calls, _LOCAL_BY_DESIGN) == {}
