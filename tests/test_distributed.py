from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from speechrag.distributed import RayConfig, ray_encoder
from speechrag.index import Index
from speechrag.segment import SegmenterConfig

from .conftest import TOPICS, speak

WIN = SegmenterConfig(window_s=10, hop_s=5)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def audio(tmp_path_factory, speech_dir) -> Path:
    """Six recordings: the three topics and three more voices of them, and a broken file."""
    root = tmp_path_factory.mktemp("ray-audio")
    for f in speech_dir.glob("*.wav"):
        shutil.copy(f, root / f.name)
    for name, text in TOPICS.items():
        speak(text, root / f"{name}-slt.wav", voice="flite:slt")
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really")
    return root


def _rows(index: Index) -> dict[str, dict]:
    rows = index.rows(("id", "source", "start", "end", "text", "vector"))
    return {r["id"]: r for r in rows}


def test_ray_indexing_gives_the_index_a_local_run_gives(tmp_path, audio) -> None:
    """Two local Ray workers, one CPU (one Whisper thread) each, and one process with
    Whisper on both cores make the same index."""
    from speechrag.retrievers import load_retriever

    tiny = load_retriever("cascade-tiny")
    files = sorted(str(f) for f in audio.glob("*.wav"))
    local = Index.create(tmp_path / "local", tiny, WIN)
    local_report = local.add_files(files, tiny)
    ray_index = Index.create(tmp_path / "ray", tiny, WIN)
    done: list[str] = []
    report = ray_index.add_files(files, tiny, encode=ray_encoder(
        ray_index, RayConfig(workers=2, cpus_per_worker=1), on_file=lambda p, s: done.append(p)))
    assert sorted(report.indexed) == sorted(local_report.indexed) and len(report.indexed) == 6
    assert [p for p, _ in report.failed] == [str(audio / "broken.wav")]  # named, not fatal
    assert sorted(done) == sorted(report.indexed)
    a, b = _rows(local), _rows(ray_index)
    assert a.keys() == b.keys()
    for key, row in a.items():
        assert (row["source"], row["start"], row["end"], row["text"]) == \
            (b[key]["source"], b[key]["start"], b[key]["end"], b[key]["text"])
        np.testing.assert_allclose(row["vector"], b[key]["vector"], atol=1e-5)


def _ray_workers() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "MapWorker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_killed_worker_is_retried_and_a_killed_job_resumes(tmp_path, audio) -> None:
    """kill -9 of a Ray worker mid-job: its file is redone and the job ends complete.
    kill -9 of the whole job: the next run finishes it, with no duplicate rows."""
    files = sorted(str(f) for f in audio.glob("*.wav") if f.name != "broken.wav")
    for f in list(files):  # twelve recordings: work left for both workers after the first
        copy = tmp_path / "more" / Path(f).name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(f, copy)
        files.append(str(copy))
    files.sort()
    cmd = [str(BIN / "speechrag"), "index", *files, "--index", str(tmp_path / "ix"),
           "--model", "cascade-tiny", "--window", "10", "--hop", "5", "--ray",
           "--ray-workers", "2"]

    killed: list[int] = []

    def kill_a_worker() -> None:
        """Once the first file is in the index (both workers busy with the next ones),
        kill -9 one worker."""
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            time.sleep(0.2)
            try:
                if Index.open(tmp_path / "ix").files.count_rows() < 1:
                    continue
            except Exception:  # noqa: BLE001 - not created yet
                continue
            for pid in _ray_workers():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
                except ProcessLookupError:
                    continue

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    killer.join()
    assert killed, "no Ray worker was seen"
    assert done.returncode == 0, done.stderr
    index = Index.open(tmp_path / "ix")
    assert sorted(index.indexed_files()) == files
    n = len(index)
    ids = [r["id"] for r in index.rows(("id", "source", "start"))]
    assert len(ids) == len(set(ids))

    # the whole job killed once the first file is in: the next run finishes it
    shutil.rmtree(tmp_path / "ix")
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (tmp_path / "ix" / "index.json").exists() and \
                Index.open(tmp_path / "ix").files.count_rows() >= 1:
            break
        time.sleep(0.3)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert len(Index.open(tmp_path / "ix").indexed_files()) < len(files)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    index = Index.open(tmp_path / "ix")
    assert sorted(index.indexed_files()) == files and len(index) == n
    ids = [r["id"] for r in index.rows(("id", "source", "start"))]
    assert len(ids) == len(set(ids))
