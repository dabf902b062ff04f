"""TF's checkpoint format, read and written without TensorFlow, against files real TF wrote.

The fixtures (``tests/fixtures/tf_checkpoints``, made by ``make_fixtures.py`` with tensorflow-cpu)
come with TF's own dump of every tensor; nothing here imports TensorFlow.
"""

import json
import mmap
import os
import resource
import shutil
import struct
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from jaxgraph import crc32c
from jaxgraph.train import CheckpointError, list_variables, load_checkpoint
from jaxgraph.train.tf_checkpoint import snappy, wire
from jaxgraph.train.tf_checkpoint.protos import (
    BundleEntry,
    BundleHeader,
    decode_entry,
    encode_entry,
    encode_header,
    tf_dtype_of,
)
from jaxgraph.train.tf_checkpoint.reader import tf_prefix
from jaxgraph.train.tf_checkpoint.slices import encode_slice_key
from jaxgraph.train.tf_checkpoint.table import build_table, read_table
from jaxgraph.train.tf_checkpoint.writer import write_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tf_checkpoints")
CHECKPOINTS = {
    "word2vec_adam": "word2vec_adam/model.ckpt-3",
    "word2vec_momentum": "word2vec_momentum/model.ckpt-3",
    "word2vec_adagrad": "word2vec_adagrad/model.ckpt-3",
    "partitioned": "partitioned/model.ckpt-2",
    "sharded": "sharded/model.ckpt",
    "dtypes": "dtypes/model.ckpt",
    "tf2": "tf2/ckpt",
}
# TF's dtype names (DType.name) -> numpy's.
NUMPY_NAMES = {"string": "object", "half": "float16"}


def fixture(name):
    return os.path.join(FIXTURES, CHECKPOINTS[name])


def tf_dump(name):
    """{tensor: (dtype name, shape, value)} as TF's reader returned them when the fixture was made."""
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        manifest = json.load(f)
    with np.load(os.path.join(FIXTURES, name + ".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    out = {}
    for key, info in manifest.items():
        if info["dtype"] == "string":
            value = np.array([bytes.fromhex(h) for h in info["hex"]] or [], dtype=object).reshape(info["shape"])
        else:
            value = arrays[key]
        out[key] = (NUMPY_NAMES.get(info["dtype"], info["dtype"]), info["shape"], value)
    return out


def same_bits(actual, expected):
    if actual.dtype == ml_dtypes.bfloat16:
        actual = actual.view(np.uint16)
    if actual.dtype == object:
        return actual.shape == expected.shape and all(a == b for a, b in zip(actual.flat, expected.flat, strict=True))
    return actual.shape == expected.shape and actual.tobytes() == np.asarray(expected).astype(actual.dtype).tobytes()


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_every_tensor_reads_as_tensorflow_read_it(name):
    expected = tf_dump(name)
    with load_checkpoint(fixture(name)) as reader:
        assert reader.get_variable_to_shape_map() == {k: shape for k, (_, shape, _) in expected.items()}
        dtypes = reader.get_variable_to_dtype_map()
        for key, (dtype, shape, value) in expected.items():
            assert dtypes[key].name == dtype, key
            assert reader.has_tensor(key)
            tensor = reader.get_tensor(key)
            assert tensor.dtype.name == dtype and list(tensor.shape) == shape, key
            assert same_bits(tensor, value), key
        assert not reader.has_tensor("no/such/tensor")


def test_partitioned_variables_and_their_slots_are_reassembled():
    with load_checkpoint(fixture("partitioned")) as reader:
        shapes = reader.get_variable_to_shape_map()
        # One entry per partitioned tensor, none for its parts (as TF's reader lists them).
        assert shapes["emb/table"] == [7, 2] and shapes["emb/table/Adagrad"] == [7, 2]
        assert not any("part_" in k or k.startswith("\x00") for k in shapes)
        accum = reader.get_tensor("emb/table/Adagrad")
        # Rows 0, 3, 6 (in parts 0, 1, 2) got gradients; the others kept Adagrad's initial 0.1.
        assert np.all(accum[[1, 2, 4, 5]] == np.float32(0.1)) and np.all(accum[[0, 3, 6]] > 0.1)


def test_several_data_shards():
    assert sorted(os.listdir(os.path.dirname(fixture("sharded")))) == [
        "checkpoint", "model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002", "model.ckpt.index"]
    with load_checkpoint(fixture("sharded")) as reader:
        assert reader.get_tensor("a").tolist() == [[0, 1, 2], [3, 4, 5]]
        assert reader.get_tensor("b").tolist() == [0, 1, 2, 3]


def test_list_variables_and_paths_that_name_a_checkpoint():
    prefix = fixture("word2vec_adam")
    listed = list_variables(prefix)
    assert listed == sorted(listed) and ("beta1_power", []) in listed and ("embeddings/Variable", [12, 4]) in listed
    assert list_variables(os.path.dirname(prefix)) == listed  # a directory: its latest, from `checkpoint`
    for path in (prefix, prefix + ".index", prefix + ".data-00000-of-00001"):
        assert tf_prefix(path) == prefix
        assert load_checkpoint(path).get_variable_to_shape_map() == dict(listed)


def test_tf2_object_graph_checkpoint_reads_raw_by_key():
    with load_checkpoint(fixture("tf2")) as reader:
        assert reader.get_tensor("model/kernel/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [[0, 1], [2, 3], [4, 5]]
        assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 7
        assert reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH").dtype == object


@pytest.mark.parametrize("name", ["word2vec_adam", "dtypes"])
def test_writer_reproduces_tensorflows_files_byte_for_byte(tmp_path, name):
    # TF1's Saver writes tensors in name order, as the writer does (TF2 writes them in object order).
    with load_checkpoint(fixture(name)) as reader:
        tensors = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    write_checkpoint(str(tmp_path / "copy"), tensors)
    for suffix in (".index", ".data-00000-of-00001"):
        with open(fixture(name) + suffix, "rb") as f, open(str(tmp_path / "copy") + suffix, "rb") as g:
            assert f.read() == g.read(), suffix


def test_writer_round_trips_every_dtype_and_refuses_unknown_ones(tmp_path):
    tensors = {name: value for name, (_, _, value) in tf_dump("dtypes").items() if name != "bf16"}
    tensors["bf16"] = np.array([1.5, -2.0], ml_dtypes.bfloat16)
    tensors["big_endian"] = np.array([1, 2], ">i4")
    tensors["unicode"] = np.array(["é", "ab"])
    tensors["latin-1 name caf\udce9"] = np.ones(2, np.float32)  # a non-UTF-8 key, kept as Python keeps it
    write_checkpoint(str(tmp_path / "c"), tensors)
    with load_checkpoint(str(tmp_path / "c")) as reader:
        for key, value in tensors.items():
            got = reader.get_tensor(key)
            if key == "unicode":
                assert got.tolist() == ["é".encode(), b"ab"]
            else:
                assert got.shape == value.shape and got.tolist() == value.tolist(), key
        assert reader.get_tensor("big_endian").dtype == np.int32
    with pytest.raises(ValueError, match="float8_e4m3fn has no TensorFlow checkpoint equivalent"):
        write_checkpoint(str(tmp_path / "d"), {"x": np.zeros(2, ml_dtypes.float8_e4m3fn)})


# -- CRC-32C -----------------------------------------------------------------------------------------
def bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


IMPLEMENTATIONS = {"default": crc32c.extend, "numpy": crc32c.extend_numpy}


@pytest.mark.parametrize("extend", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_crc32c_standard_vectors(extend):
    # RFC 3720 (iSCSI) B.4, also TF's crc32c_test.
    assert extend(0, bytes(32)) == 0x8A9136AA
    assert extend(0, b"\xff" * 32) == 0x62A8AB43
    assert extend(0, bytes(range(32))) == 0x46DD794E
    assert extend(0, bytes(range(31, -1, -1))) == 0x113FDB5C
    assert extend(0, b"123456789") == 0xE3069283
    assert extend(0, b"") == 0


@pytest.mark.parametrize("extend", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
@pytest.mark.parametrize("size", [1, 1023, 1024, 4096 * 8 - 1, 4096 * 8 * 3 + 64 * 8 * 2 + 5, 200_000])
def test_crc32c_lanes_match_a_bitwise_crc(extend, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert extend(0, data) == bitwise_crc32c(data)
    cut = size // 3
    assert extend(extend(0, data[:cut]), data[cut:]) == extend(0, data)


def test_crc32c_mask():
    # TF's crc32c_test Mask: masking changes the value and is undone exactly.
    crc = crc32c.value(b"foo")
    assert crc32c.mask(crc) != crc and crc32c.mask(crc32c.mask(crc)) != crc
    assert crc32c.unmask(crc32c.mask(crc)) == crc
    assert crc32c.unmask(crc32c.unmask(crc32c.mask(crc32c.mask(crc)))) == crc


# -- protobuf, Snappy, table, slice keys -------------------------------------------------------------
def test_wire_varints_and_int64():
    assert wire.encode_varint(300) == b"\xac\x02"
    assert wire.encode_varint(-1) == b"\xff" * 9 + b"\x01"
    value, _ = wire.read_varint(wire.encode_varint(-5), 0)
    assert wire.to_int64(value) == -5
    with pytest.raises(wire.WireError):
        list(wire.iter_fields(wire.field_bytes(1, b"abc")[:-1]))


def test_snappy_decompresses_the_reference_implementations_output():
    with open(os.path.join(REPO, "tests", "fixtures", "snappy_vectors.json")) as f:
        vectors = json.load(f)
    for name, v in vectors.items():
        assert snappy.decompress(bytes.fromhex(v["snappy"])) == bytes.fromhex(v["raw"]), name
    # A 4-byte-offset copy (the reference compressor emits them only past 64 KiB).
    copy4 = bytes([(6 - 1) << 2 | 3]) + struct.pack("<I", 3)
    assert snappy.decompress(bytes([9, 2 << 2]) + b"abc" + copy4) == b"abc" * 3
    for bad in (b"\x05\x08ab", b"\x04\x00a\x05\x09", b"\x03\x08abc\x01\x07"):
        with pytest.raises(snappy.SnappyError):
            snappy.decompress(bad)


def literal_snappy(data: bytes) -> bytes:
    """Valid Snappy made of literals only (60-byte ... 4-byte-length literal tags)."""
    out = wire.encode_varint(len(data))
    for i in range(0, len(data), 65536):
        chunk = data[i : i + 65536]
        out += bytes([61 << 2]) + struct.pack("<H", len(chunk) - 1) + chunk
    return out


def test_table_with_snappy_blocks_and_several_blocks():
    entries = [(b""), *(f"var{i:05d}".encode() for i in range(3000))]
    entries = [(k, bytes(200) + k) for k in entries]  # > 256 KiB: several data blocks
    for compress in (None, literal_snappy):
        data = build_table(entries, snappy_compress=compress)
        assert read_table(data) == entries
    with pytest.raises(ValueError, match="strictly increasing"):
        build_table([(b"b", b""), (b"a", b"")])


def test_slice_keys_use_tensorflows_ordered_code():
    # The signed-number examples documented in TF's ordered_code.cc.
    key = encode_slice_key("x", ((0x424242, -0x800),))
    assert key == b"\x00x\x00\x01\x01\x01" + bytes.fromhex("f0424242") + bytes.fromhex("3800")
    assert encode_slice_key("a\x00b", ((0, -1),)) == b"\x00a\x00\xffb\x00\x01\x01\x01\x80\x7f"
    with open(fixture("partitioned") + ".index", "rb") as f:
        keys = [k for k, _ in read_table(f.read())]
    assert encode_slice_key("emb/table", ((0, 3), (0, 2))) in keys


# -- bad files ---------------------------------------------------------------------------------------
def index_entry(prefix, key):
    with open(prefix + ".index", "rb") as f:
        return decode_entry(dict(read_table(f.read()))[key.encode()])


def copy_fixture(tmp_path, name):
    src = os.path.dirname(fixture(name))
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return str(dst / os.path.basename(fixture(name)))


@pytest.mark.parametrize("keep", [0, 20, -48, -1])
def test_truncated_index(tmp_path, keep):
    prefix = copy_fixture(tmp_path, "word2vec_adam")
    with open(prefix + ".index", "rb") as f:
        data = f.read()
    with open(prefix + ".index", "wb") as f:
        f.write(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match=r"index .*model.ckpt-3.index is corrupt or truncated"):
        load_checkpoint(prefix)


def test_flipped_index_byte(tmp_path):
    prefix = copy_fixture(tmp_path, "word2vec_adam")
    with open(prefix + ".index", "r+b") as f:
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(CheckpointError, match="block checksum mismatch"):
        load_checkpoint(prefix)


def test_flipped_data_byte_names_the_tensor(tmp_path):
    prefix = copy_fixture(tmp_path, "word2vec_adam")
    target = index_entry(prefix, "weights/Variable")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.seek(target.offset + 5)
        byte = f.read(1)
        f.seek(target.offset + 5)
        f.write(bytes([byte[0] ^ 1]))
    with load_checkpoint(prefix) as reader:
        reader.get_tensor("embeddings/Variable")  # other tensors are still fine
        with pytest.raises(CheckpointError, match=r"'weights/Variable' in .*data-00000-of-00001 is corrupt: its CRC"):
            reader.get_tensor("weights/Variable")


def test_flipped_string_byte(tmp_path):
    prefix = copy_fixture(tmp_path, "dtypes")
    target = index_entry(prefix, "strings")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.seek(target.offset + target.size - 1)
        f.write(b"?")
    with load_checkpoint(prefix) as reader, pytest.raises(CheckpointError, match="'strings' .* is corrupt"):
        reader.get_tensor("strings")


def test_missing_and_truncated_shards(tmp_path):
    prefix = copy_fixture(tmp_path, "sharded")
    os.remove(prefix + ".data-00001-of-00002")
    with pytest.raises(CheckpointError, match=r"incomplete: data files \[.*data-00001-of-00002'\] are missing"):
        load_checkpoint(prefix)
    prefix = copy_fixture(tmp_path, "word2vec_momentum")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CheckpointError, match="data-00000-of-00001 is truncated: 100 bytes, the index needs 872"):
        load_checkpoint(prefix)


def test_v1_checkpoint_savedmodel_and_other_wrong_paths(tmp_path):
    v1 = os.path.join(FIXTURES, "v1", "model.ckpt")
    with pytest.raises(CheckpointError, match="is a TensorFlow V1 checkpoint .* only the V2 format"):
        load_checkpoint(v1)
    saved_model = tmp_path / "export"
    (saved_model / "variables").mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a SavedModel directory.*variables/variables': pass that prefix"):
        load_checkpoint(str(saved_model))
    with pytest.raises(CheckpointError, match="Couldn't find 'checkpoint' file or checkpoints"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nothing"))
    (tmp_path / "m.npz").write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="is a jaxgraph checkpoint"):
        load_checkpoint(str(tmp_path / "m"))


def write_bundle(prefix, entries, data, header=None):
    """A bundle from hand-made entries (for files TF would not write)."""
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(data)
    rows = [(b"", encode_header(header or BundleHeader(1, False)))] + sorted(entries)
    with open(prefix + ".index", "wb") as f:
        f.write(build_table(rows))


def test_unsupported_dtype_newer_format_and_bad_slices(tmp_path):
    prefix = str(tmp_path / "c")
    variant = BundleEntry(dtype=21, shape=(1,), size=3, crc32c=crc32c.mask(crc32c.value(b"abc")))
    write_bundle(prefix, [(b"v", encode_entry(variant))], b"abc")
    with load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_dtype_map() == {"v": None}
        with pytest.raises(CheckpointError, match="dtype DT_VARIANT, which jaxgraph does not read"):
            reader.get_tensor("v")
    write_bundle(prefix, [], b"", BundleHeader(1, False, producer=3, min_consumer=2))
    with pytest.raises(CheckpointError, match="needs a reader of bundle format version >= 2"):
        load_checkpoint(prefix)
    full = BundleEntry(dtype=1, shape=(4,), slices=(((0, 2),), ((1, 3),)))  # overlapping, and no slice entries
    write_bundle(prefix, [(b"t", encode_entry(full))], b"")
    with pytest.raises(CheckpointError, match="slice entries .* are missing"):
        load_checkpoint(prefix)
    part = BundleEntry(dtype=1, shape=(2,), size=8, crc32c=crc32c.mask(crc32c.value(bytes(8))))
    slices = [(encode_slice_key("t", s), encode_entry(part)) for s in full.slices]
    write_bundle(prefix, [(b"t", encode_entry(full)), *slices], bytes(8))
    with load_checkpoint(prefix) as reader, pytest.raises(CheckpointError, match="overlap"):
        reader.get_tensor("t")


def test_big_endian_bundles_are_byte_swapped(tmp_path):
    expected = tf_dump("dtypes")
    entries, data = [], b""
    for name, (_, _, value) in sorted(expected.items()):
        if value.dtype == object:
            items = list(value.flat)
            lengths = b"".join(struct.pack(">I", len(x)) for x in items)
            checksum = struct.pack(">I", crc32c.mask(crc32c.value(lengths)))
            raw = b"".join(wire.encode_varint(len(x)) for x in items) + checksum + b"".join(items)
            crc = crc32c.value(lengths + checksum + b"".join(items))
            dtype = 7
        else:
            arr = value.view(ml_dtypes.bfloat16) if name == "bf16" else value
            raw = arr.astype(arr.dtype.newbyteorder(">")).tobytes() if arr.dtype.itemsize > 1 else arr.tobytes()
            crc = crc32c.value(raw)
            dtype = tf_dtype_of(arr.dtype)
        entry = BundleEntry(dtype, value.shape, 0, len(data), len(raw), crc32c.mask(crc))
        entries.append((name.encode(), encode_entry(entry)))
        data += raw
    write_bundle(str(tmp_path / "be"), entries, data, BundleHeader(1, big_endian=True))
    with load_checkpoint(str(tmp_path / "be")) as reader:
        for name, (_, _, value) in expected.items():
            assert same_bits(reader.get_tensor(name), value), name


def test_get_tensor_maps_one_tensor_not_the_file(tmp_path):
    """A small tensor behind an 8 GiB (sparse) tensor reads at once, without the big one's memory."""
    prefix = str(tmp_path / "big")
    small = np.arange(4, dtype=np.float32)
    big_size = 8 << 30
    entries = [
        (b"big", encode_entry(BundleEntry(1, (big_size // 4,), 0, 0, big_size, 0))),
        (b"small", encode_entry(BundleEntry(1, (4,), 0, big_size, 16, crc32c.mask(crc32c.value(small))))),
    ]
    write_bundle(prefix, entries, b"")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.truncate(big_size)
        f.seek(big_size)
        f.write(small.tobytes())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map()["big"] == [big_size // 4]
        tensor = reader.get_tensor("small")
        assert tensor.tolist() == [0.0, 1.0, 2.0, 3.0]
        base = tensor
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(getattr(base, "obj", base), mmap.mmap)  # a view of the mapped file, not a copy
        assert not tensor.flags.writeable
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 * 1024, grown_kib


def test_reading_needs_no_tensorflow_nor_google_crc32c():
    # Both made unimportable, as on a machine without them: the numpy CRC-32C takes over.
    code = (
        "import sys; sys.modules['tensorflow'] = sys.modules['google_crc32c'] = None\n"
        "from jaxgraph.train import load_checkpoint\n"
        "from jaxgraph import crc32c\n"
        f"r = load_checkpoint({fixture('dtypes')!r})\n"
        "[r.get_tensor(k) for k in r.get_variable_to_shape_map()]\n"
        "print(crc32c.BACKEND)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert out.stdout.strip() == "numpy", out.stderr
