"""Device scopes: TF device strings resolved to JAX devices; Variables created inside land there."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Variable
from jaxgraph.device import DeviceSpec, current_device, device, parse_device_spec

HERE = os.path.dirname(os.path.abspath(__file__))
CPU0 = jax.devices("cpu")[0]
HAS_GPU = bool(
    [d for d in jax.devices() if d.platform == "gpu"]
    or os.environ.get("JAX_PLATFORMS", "").startswith("cuda")
)


@pytest.mark.parametrize(
    "spec",
    [
        "/cpu:0",
        "/CPU:0",
        "cpu:0",
        "/cpu",
        "/device:CPU:0",
        "/device:cpu:*",
        "/job:worker/replica:0/task:0/device:CPU:0",
        "/job:localhost/replica:0/task:0/cpu:0",
        CPU0,
    ],
)
def test_parse_cpu0_forms(spec):
    assert parse_device_spec(spec) == CPU0


def test_variables_created_inside_land_on_the_device(maybe_jit):
    with device("/job:worker/replica:0/task:0/device:CPU:0") as dev:
        assert dev == CPU0 and current_device() == CPU0
        v = Variable(np.arange(3.0), name="v")
        w = Variable(lambda: jnp.ones(3), name="w")
        out = maybe_jit(lambda a, b: a.value * b.value)(v, w)
    assert current_device() is None
    assert v.value.devices() == {CPU0} and w.value.devices() == {CPU0} and out.devices() == {CPU0}
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])
    # Pinned as tf.device pins: committed, so jitted code outside the scope runs where the variable lives.
    assert v.value.committed and w.value.committed


def test_none_clears_and_scopes_nest():
    with device("/cpu:0"):
        with device(None) as cleared:
            assert cleared is None and current_device() is None
            assert jax.config.jax_default_device is None
        with device(""):
            assert current_device() is None
        assert current_device() == CPU0 and jax.config.jax_default_device == CPU0


@pytest.mark.skipif(HAS_GPU, reason="checks the error on a machine without a GPU")
@pytest.mark.parametrize("spec", ["/gpu:0", "/device:GPU:1", "/job:w/task:0/device:GPU:0"])
def test_absent_gpu_lists_present_devices(spec):
    with pytest.raises(
        ValueError, match=r"no GPU devices\. Devices present: /task:0/device:CPU:0 \(CpuDevice"
    ):
        parse_device_spec(spec)
    with pytest.raises(ValueError, match="Devices present"), device(spec):
        pass  # pragma: no cover


def test_gpu_spec_places_on_the_gpu_or_says_it_is_absent():
    # On GPU machines (nox -s tests_gpu) the variable lands on GPU 0; elsewhere the same spec is an error.
    if not HAS_GPU:
        with pytest.raises(ValueError, match="Devices present"):
            parse_device_spec("/gpu:0")
        return
    gpu0 = jax.devices("gpu")[0]
    assert parse_device_spec("/gpu:0") == parse_device_spec("/device:GPU:0") == gpu0
    with device("/gpu:0"):
        v = Variable(np.ones(2))
    assert v.value.devices() == {gpu0}


def test_out_of_range_and_unknown_devices():
    n = len(jax.devices("cpu"))
    with pytest.raises(
        ValueError,
        match=rf"'/cpu:99' is not available: task 0 has {n} CPU device\(s\)\. "
        r"Devices present: /task:0/device:CPU:0",
    ):
        parse_device_spec("/cpu:99")
    with pytest.raises(ValueError, match=r"task 3 has 0 CPU device"):
        parse_device_spec("/task:3/device:CPU:0")
    with pytest.raises(ValueError, match=r"unknown device type 'XPU'.*Devices present"):
        parse_device_spec("/device:XPU:0")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("/foo:0", "cannot parse 'foo:0'"),
        ("/cpu:0:1", "cannot parse 'cpu:0:1'"),
        ("/device:", "cannot parse 'device:'"),
        ("/job", "cannot parse 'job'"),
        ("/cpu:-1", "'-1' in 'cpu:-1' is not an index"),
        ("/task:x/cpu:0", "'x' in 'task:x' is not an index"),
        ("/cpu:0/gpu:0", "device_type given twice"),
    ],
)
def test_malformed_specs(spec, message):
    with pytest.raises(ValueError, match="Malformed device spec .*" + message.replace("(", r"\(")):
        parse_device_spec(spec)


def test_wrong_types():
    with pytest.raises(TypeError, match="string or a jax.Device"):
        parse_device_spec(0)
    with pytest.raises(TypeError, match="string, a jax.Device or None"), device(0):
        pass  # pragma: no cover


def test_device_spec_parse_merge_and_format():
    spec = DeviceSpec.from_string("/job:ps/replica:1/task:2/device:gpu:3")
    assert spec == DeviceSpec("ps", 1, 2, "GPU", 3)
    assert spec.to_string() == "/job:ps/replica:1/task:2/device:GPU:3"
    assert DeviceSpec.from_string("/gpu").to_string() == "/device:GPU:*"
    # TF1 nesting: inner fields win, missing ones come from the outer scope ...
    assert DeviceSpec.from_string("/gpu:0").merged_into(DeviceSpec.from_string("/task:1")) == DeviceSpec(
        None, None, 1, "GPU", 0
    )
    # ... and a new device type does not inherit the outer index.
    assert DeviceSpec.from_string("/cpu").merged_into(spec) == DeviceSpec("ps", 1, 2, "CPU", None)
    assert DeviceSpec.from_string("/task:0").merged_into(spec) == DeviceSpec("ps", 1, 0, "GPU", 3)


def _multidevice_checks():
    """Placement on a device other than the default; needs >= 4 CPU devices."""
    from jaxgraph.train.saver import Saver

    cpus = jax.devices("cpu")
    assert len(cpus) >= 4, cpus
    assert parse_device_spec("/cpu:2") == parse_device_spec("/device:CPU:2") == cpus[2]
    assert parse_device_spec("/job:worker/replica:0/task:0/device:CPU:3") == cpus[3]
    with device("/cpu:2") as dev:
        assert dev == cpus[2]
        v = Variable(np.ones(3), name="v")
        made_inside = Variable(jnp.zeros(3), name="z")
        out = jax.jit(lambda a: a.value * 2)(v)
    assert v.value.devices() == made_inside.value.devices() == out.devices() == {cpus[2]}
    with device("/cpu:1"):
        with device("/cpu:3"):
            assert jnp.ones(1).devices() == {cpus[3]}
        with device(cpus[0]):
            assert jnp.ones(1).devices() == {cpus[0]}
        with device("/job:worker"):  # a partial spec keeps the outer device
            assert current_device() == cpus[1]
        assert jnp.ones(1).devices() == {cpus[1]}
    with pytest.raises(ValueError, match=rf"task 0 has {len(cpus)} CPU device\(s\).*/task:0/device:CPU:3"):
        parse_device_spec(f"/cpu:{len(cpus)}")
    # A checkpoint restores onto the device of the template built in a scope.
    import tempfile

    prefix = Saver().save({"v": v}, None, os.path.join(tempfile.mkdtemp(), "c"))
    with device("/cpu:3"):
        template = {"v": Variable(np.zeros(3), name="v")}
    restored, _ = Saver().restore(template, None, prefix)
    assert restored["v"].value.devices() == {cpus[3]}
    np.testing.assert_array_equal(restored["v"].value, 1.0)


def test_multidevice_placement():
    if len(jax.devices("cpu")) >= 4:  # nox -s tests_multidevice
        _multidevice_checks()
        return
    # The default test run has one CPU device; XLA's virtual devices must be set before jax starts.
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    code = f"import sys; sys.path.insert(0, {HERE!r}); import test_device; test_device._multidevice_checks()"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
