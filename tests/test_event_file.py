"""Event files written by ``jaxgraph.event_file``: TFRecord framing and CRC-32C checked against independent
implementations, the file TensorBoard reads, flushing, and write errors raised by the call that failed."""

import os
import random
import struct
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboardX import record_writer as tbx_record_writer

from jaxgraph import event_file, summary


def _records(path):
    """The records of a TFRecord file, each header and data CRC checked with tensorboardX's implementation."""
    out = []
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0
    while pos < len(blob):
        header = blob[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", blob[pos + 8 : pos + 12])
        data = blob[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length : pos + 16 + length])
        assert header_crc == tbx_record_writer.masked_crc32c(header)
        assert data_crc == tbx_record_writer.masked_crc32c(data)
        out.append(data)
        pos += 16 + length
    assert pos == len(blob)
    return out


def test_records_of_every_length_are_framed_with_tfrecord_checksums(tmp_path):
    rng = random.Random(0)
    data = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 30, 30, 64, 300]))) for _ in range(100)]
    with event_file.EventFileWriter(str(tmp_path)) as writer:
        writer.write_events(data)
    assert _records(writer.path)[1:] == data  # _records checks each CRC with tensorboardX's implementation


def test_events_are_framed_and_first_is_the_file_version(tmp_path):
    with event_file.EventFileWriter(str(tmp_path / "logs"), filename_suffix=".x") as writer:
        writer.write_events([b"abc"] * 20 + [b"", b"longer record"])
        path = writer.path
    assert os.path.basename(path).startswith("events.out.tfevents.") and path.endswith(".x")
    records = _records(path)
    assert records[1:] == [b"abc"] * 20 + [b"", b"longer record"]
    from tensorboardX.proto import event_pb2

    first = event_pb2.Event.FromString(records[0])
    assert first.file_version == "brain.Event:2" and abs(first.wall_time - time.time()) < 600


def test_two_writers_in_one_second_never_share_a_file(tmp_path):
    with event_file.EventFileWriter(str(tmp_path)) as a, event_file.EventFileWriter(str(tmp_path)) as b:
        a.write_events([b"from a"])
        b.write_events([b"from b"])
    assert a.path != b.path
    assert _records(a.path)[1:] == [b"from a"] and _records(b.path)[1:] == [b"from b"]


def test_background_flush_reaches_the_disk(tmp_path):
    writer = event_file.EventFileWriter(str(tmp_path), flush_secs=0.05, max_queue=1000)
    try:
        size = os.path.getsize(writer.path)
        writer.write_events([b"x" * 100])  # buffered: fewer than max_queue events
        deadline = time.monotonic() + 30
        while os.path.getsize(writer.path) == size and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.getsize(writer.path) == size + 116
    finally:
        writer.close()


class _DiskFillsUp:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room):
        self._f, self._room = f, room
        self.closed = False

    def write(self, data):
        if len(data) > self._room:
            raise OSError(28, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def close(self):
        self.closed = True
        self._f.close()


def test_a_failed_write_raises_from_the_call(tmp_path, monkeypatch):
    def small_disk(path, mode):
        return _DiskFillsUp(open(path, mode), room=200)

    monkeypatch.setattr(event_file, "open", small_disk, raising=False)
    writer = summary.FileWriter(str(tmp_path), max_queue=0)
    writer.add_summary({"loss": np.ones(2, np.float32)}, global_step=0)  # fits
    with pytest.raises(OSError, match="No space left"):
        writer.add_summary({"loss": np.ones(50, np.float32)}, global_step=2)
    writer.close()
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [0, 1]  # what was written before stays readable


def test_closed_writer_refuses(tmp_path):
    writer = event_file.EventFileWriter(str(tmp_path))
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write_events([b"late"])


def test_many_steps_in_one_call_read_back_in_tensorboard(tmp_path):
    """The stacked path over step numbers whose varint length changes (127 -> 128, 16383 -> 16384)."""
    losses = np.linspace(5.0, 1.0, 300, dtype=np.float32)
    with summary.FileWriter(str(tmp_path)) as writer:
        writer.add_summary({"loss": losses, "lr": np.full(300, 0.5, np.float32)}, global_step=0)
        writer.add_summary({"loss": losses[:10]}, global_step=16380)
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert got == [(i, float(v)) for i, v in enumerate(losses)] + [(16380 + i, float(v)) for i, v in
                                                                   enumerate(losses[:10])]
    assert [e.step for e in acc.Scalars("lr")] == list(range(300))
