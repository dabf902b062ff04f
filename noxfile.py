"""nox sessions. CI (``.ci/run``) runs ``nox -s tests tests_multidevice parity``, the README's test command."""

import os

import nox

nox.options.sessions = ["tests", "tests_multidevice", "parity", "lint"]
nox.options.reuse_existing_virtualenvs = True

# The docstring examples of the library and the examples: every CPU session runs them, so each checks them on its
# own device count.
DOCTESTS = ["--doctest-modules", "jaxgraph", "examples"]
CORE_TESTS = ["tests", "--ignore=tests/parity", *DOCTESTS]


def _workers() -> list[str]:
    """pytest-xdist's worker processes for the CPU sessions: one per core, at most 4.

    The suite is mostly compilation, which runs on one core per process: two workers on the 2-core CI machine
    ran the core suite in 13 min instead of 21. More than 4 would mostly add memory (each worker is a JAX
    process, with 8 virtual devices in ``tests_multidevice``). ``nox -s tests -- -n 0`` runs in one process.
    """
    return ["-n", str(max(1, min(4, os.cpu_count() or 1)))]


def _install(session: nox.Session, *extras: str) -> None:
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """The core suite on CPU (one device), doctests included."""
    _install(session, "test", "examples", "summary")
    session.run("pytest", *CORE_TESTS, "-m", "not multidevice", *_workers(), *session.posargs,
                env={"JAX_PLATFORMS": "cpu"})


# What the device count can change: the tests of every module that asks JAX for its devices or builds a mesh
# (jaxgraph.device, jaxgraph.sharding and its rules for any pytree, the trainer's device-padded rows, --devices
# and processes, the tutorial's device scopes), every test marked multidevice (tests/test_noxfile.py checks that
# each such file is listed), plus the doctests. The rest of the suite runs on one device in `tests`; on 8 it
# tested the same code again.
MULTIDEVICE_TESTS = [
    "tests/test_device.py", "tests/test_sharding.py", "tests/test_any_pytree.py",
    "tests/test_word2vec_loss.py", "tests/test_word2vec_basic.py", "tests/test_word2vec_train_multidevice.py",
    "tests/test_word2vec_train_multiprocess.py",
]


@nox.session
def tests_multidevice(session: nox.Session) -> None:
    """The tests that the device count can change, multi-device tests included, on 8 virtual CPU devices."""
    _install(session, "test", "examples", "summary")
    session.run("pytest", *MULTIDEVICE_TESTS, *DOCTESTS, *_workers(), *session.posargs,
                env={"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})


def _accelerator_session(session: nox.Session, jax_extra: str, platform: str) -> None:
    _install(session, "test", "examples", "summary")
    session.install(f"jax[{jax_extra}]")
    probe = "import jax; print(','.join(sorted({d.platform for d in jax.devices()})))"
    try:
        platforms = session.run("python", "-c", probe, silent=True, success_codes=[0], env={"JAX_PLATFORMS": ""})
    except nox.command.CommandFailed:
        platforms = ""
    if platform not in str(platforms):
        session.skip(f"no {platform.upper()} visible to JAX on this machine (found: {str(platforms).strip()})")
    session.run("pytest", *CORE_TESTS, *session.posargs, env={"JAX_PLATFORMS": platform})


@nox.session
def tests_gpu(session: nox.Session) -> None:
    """The core suite on a CUDA GPU (installs jax[cuda12]); skips when no GPU is visible."""
    _accelerator_session(session, "cuda12", "gpu")


@nox.session
def tests_tpu(session: nox.Session) -> None:
    """The core suite on TPU (installs jax[tpu]); skips when no TPU is visible."""
    _accelerator_session(session, "tpu", "tpu")


@nox.session
def parity(session: nox.Session) -> None:
    """Compare against real TensorFlow 1 semantics (tf.compat.v1) from tensorflow-cpu."""
    _install(session, "test", "parity")
    session.run("pytest", "tests/parity", *_workers(), *session.posargs,
                env={"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the library."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    # Unused arguments in the examples (one stood unnoticed in the trainer); jaxgraph's optimizer hooks keep
    # TF's signatures, so this rule is not on for the library.
    session.run("ruff", "check", "--select", "ARG", "examples")
    session.run("mypy", "jaxgraph")


@nox.session
def word2vec(session: nox.Session) -> None:
    """The README's main job: TF's word2vec tutorial on jaxgraph, on the embedded offline corpus."""
    _install(session, "examples", "summary")
    out = os.environ.get("WORD2VEC_OUTPUT", "runs/word2vec_basic")
    session.run("python", "-m", "examples.word2vec.word2vec_basic", "--output-dir", out, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (figures printed, ratios against baselines measured in the same run)."""
    _install(session, "examples", "summary", "test")  # test: equinox and flax for any_model.py
    session.run("python", "benchmarks/optimizer_overhead.py")
    session.run("python", "benchmarks/word2vec_step.py", "--vocabulary-size", "50000")
    session.run("python", "benchmarks/any_model.py", "--steps-per-call", "10")
