"""Results and logs go through tf.io.gfile, so a gs:// model_dir works (TF's ram:// filesystem stands in)."""

import json
import os

import tensorflow as tf

from simclr_tf.io_utils import append_json_line, write_json_atomically


def test_remote_paths_are_written_through_gfile_not_as_local_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = "ram://bucket/io_utils_test"
    write_json_atomically(f"{run}/result.json", {"top1": 0.5})
    write_json_atomically(f"{run}/result.json", {"top1": 0.75})
    append_json_line(f"{run}/train_log.jsonl", {"step": 1})
    append_json_line(f"{run}/train_log.jsonl", {"step": 2})
    with tf.io.gfile.GFile(f"{run}/result.json") as f:
        assert json.load(f) == {"top1": 0.75}
    with tf.io.gfile.GFile(f"{run}/train_log.jsonl") as f:
        assert [json.loads(line)["step"] for line in f.read().splitlines()] == [1, 2]
    assert sorted(tf.io.gfile.listdir(run)) == ["result.json", "train_log.jsonl"]  # No temporary left behind.
    assert not os.path.exists(tmp_path / "ram:")


def test_local_writes_replace_whole_files_and_append_lines(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomically(str(path), {"a": 1})
    write_json_atomically(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2} and os.listdir(tmp_path / "sub") == ["result.json"]
    append_json_line(str(tmp_path / "log.jsonl"), {"step": 1})
    append_json_line(str(tmp_path / "log.jsonl"), {"step": 2})
    assert (tmp_path / "log.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
