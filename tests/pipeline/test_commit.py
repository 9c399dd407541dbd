"""The commit task: what it writes, what it hands back, and what its worker process has to import."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.commit import CommitSpec, CommitTask, pack_items, unpack_items
from pipeline.storage import OutputStore
from stages.item import ChunkInfo, FileItem, Reject

REPO = Path(__file__).resolve().parents[2]


def make_spec(out: Path) -> CommitSpec:
    return CommitSpec(out_root=str(out), config_hash="c0ffee", stats={}, row_group_size=32, zstd_level=3,
                      flac_subtype="PCM_16")


def test_commit_task_commits_whole_files_and_hands_chunks_back(tmp_path):
    whole = FileItem(source_path=str(tmp_path / "empty.mp4"), source_sha256="ab" * 32)
    whole.reject_file(Reject(stage="probe", reason="empty_file", value=0.0, threshold=1.0))
    part = FileItem(source_path=str(tmp_path / "long.mp4"), source_sha256="cd" * 32,
                    chunk=ChunkInfo(index=1, count=3, start_s=60.0, end_s=120.0))
    batch = pack_items([whole, part])
    assert [i.source_path for i in unpack_items(batch)] == [whole.source_path, part.source_path]

    OutputStore(str(tmp_path / "out")).ensure_dirs()  # as curate() does before any commit
    out = CommitTask(make_spec(tmp_path / "out"))(batch)

    summaries = [json.loads(s) for s in out["summary"] if s]
    assert len(summaries) == 1 and summaries[0]["n_files"] == 1 and summaries[0]["n_clips"] == 0
    ledger = pq.read_table(next((tmp_path / "out" / "rejects").glob("*.parquet"))).to_pylist()
    assert [(r["source_path"], r["stage"], r["reason"]) for r in ledger] == [(whole.source_path, "probe", "empty_file")]
    back = [pickle.loads(c) for c in out["chunk"] if c]
    assert len(back) == 1 and back[0].chunk == part.chunk  # the driver merges and commits the file
    sources = pq.read_table(next((tmp_path / "out" / "sources").glob("*.parquet"))).column("source_path")
    assert sources.to_pylist() == [whole.source_path]  # the chunk's file is not marked done by a part of it


def test_a_commit_worker_does_not_import_the_stages(tmp_path):
    """A Ray commit task unpickles in a fresh worker process: it must import the writer, not torch and the
    model stages (about 3 CPU s per process, docs/performance.md). Run in a subprocess because this test
    process has imported everything already."""
    task = pickle.dumps(CommitTask(make_spec(tmp_path / "out")))
    item = pickle.dumps(pack_items([FileItem(source_path="a.mp4", source_sha256="ab" * 32)]))
    code = (
        "import pickle, sys\n"
        f"task = pickle.loads({task!r}); batch = pickle.loads({item!r})\n"
        "heavy = ['torch', 'scipy.signal', 'pipeline.executors', 'pipeline.config', 'mediapipe', 'cv2',\n"
        "         'faster_whisper', 'onnxruntime']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"a commit worker imports {proc.stdout.strip()}"
