"""Variable, GraphKeys, name_scope and create_global_step (TF1 reference sections 4.1, 4.2, 4.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxgraph as jg
from jaxgraph import GraphKeys, Variable, name_scope

GLOBAL = GraphKeys.GLOBAL_VARIABLES
TRAINABLE = GraphKeys.TRAINABLE_VARIABLES
LOCAL = GraphKeys.LOCAL_VARIABLES


# -- construction ------------------------------------------------------------------------------------
def test_array_initial_value_and_defaults():
    v = Variable(jnp.array([1.0, 2.0]), name="w")
    assert v.name == "w"
    assert v.trainable is True
    assert v.collections == (GLOBAL, TRAINABLE)
    assert v.shape == (2,)
    assert v.ndim == 1
    assert v.get_shape() == (2,)
    assert v.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(v.value), [1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(v.read_value()), [1.0, 2.0])


def test_callable_initial_value_is_called_once():
    calls = []

    def init():
        calls.append(1)
        return jnp.full((2, 3), 7.0)

    v = Variable(init, name="c")
    assert len(calls) == 1
    assert v.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(v.value), np.full((2, 3), 7.0))


def test_dtype_converts_initial_value():
    v = Variable([1, 2, 3], dtype=jnp.float16)
    assert v.dtype == jnp.float16
    assert Variable([1, 2, 3]).dtype == jnp.int32
    w = Variable(lambda: np.zeros(2, np.float64), dtype=jnp.float32)
    assert w.dtype == jnp.float32


def test_python_scalar_gives_a_strongly_typed_value():
    # a weakly-typed value would turn strong after the first update and make jit trace twice
    assert Variable(3.0).value.weak_type is False
    assert Variable(3.0).dtype == jnp.float32
    assert Variable(0).value.weak_type is False


def test_variable_as_initial_value_copies_its_value():
    a = Variable(jnp.array([3.0]), name="a")
    b = Variable(a, name="b")
    assert b.name == "b"
    np.testing.assert_array_equal(np.asarray(b.value), [3.0])


def test_none_initial_value_rejected():
    with pytest.raises(ValueError, match=r"^initial_value must be specified\.$"):
        Variable(None)


def test_name_with_tensor_suffix_rejected():
    with pytest.raises(ValueError, match=r"without the ':0' suffix, got 'a:0'"):
        Variable(1.0, name="a:0")


def test_non_trainable_collections():
    v = Variable(1.0, trainable=False)
    assert v.trainable is False
    assert v.collections == (GLOBAL,)


def test_local_collection_keeps_variable_out_of_global_but_trainable():
    # TF1: collections=[LOCAL_VARIABLES] skips GLOBAL_VARIABLES; trainable still adds TRAINABLE_VARIABLES.
    v = Variable(jnp.zeros(2), collections=[LOCAL], name="loc")
    assert v.collections == (LOCAL, TRAINABLE)
    tree = {"loc": v, "g": Variable(0.0)}
    assert [x.name for x in jg.global_variables(tree)] == ["g"]
    assert [x.name for x in jg.local_variables(tree)] == ["loc"]
    assert [x.name for x in jg.trainable_variables(tree)] == ["g", "loc"]
    frozen_local = Variable(jnp.zeros(2), collections=[LOCAL], trainable=False)
    assert frozen_local.collections == (LOCAL,)


@pytest.mark.parametrize("collections", [(LOCAL,), {LOCAL}, frozenset([LOCAL]), [LOCAL, LOCAL]])
def test_collections_accepts_list_tuple_set_and_drops_repeats(collections):
    assert Variable(1.0, collections=collections).collections == (LOCAL, TRAINABLE)


class _OrderedSet(set):
    """A set whose iteration order is chosen, standing in for PYTHONHASHSEED changing it between runs."""

    def __init__(self, items):
        super().__init__(items)
        self._order = list(items)

    def __iter__(self):
        return iter(self._order)


def test_set_collections_have_a_fixed_order_in_every_run():
    # A set's iteration order depends on PYTHONHASHSEED; the metadata (and so the treedef) must not.
    one = Variable(1.0, collections=_OrderedSet(["zz", LOCAL, "b"]))
    two = Variable(1.0, collections=_OrderedSet(["b", "zz", LOCAL]))
    assert one.collections == two.collections == ("b", LOCAL, "zz", TRAINABLE)
    assert jax.tree_util.tree_structure(one) == jax.tree_util.tree_structure(two)


def test_trainable_collection_not_repeated():
    v = Variable(1.0, collections=[TRAINABLE, GLOBAL])
    assert v.collections == (TRAINABLE, GLOBAL)


@pytest.mark.parametrize("bad", ["variables", 3, {"variables": 1}])
def test_non_list_collections_error_text(bad):
    expected = (
        "collections argument to Variable constructor must be a list, tuple, or set. "
        f"Got {bad} of type {type(bad)}"
    )
    with pytest.raises(ValueError) as info:
        Variable(1.0, collections=bad)
    assert str(info.value) == expected


# -- a pytree node whose metadata is static ----------------------------------------------------------
def _tree():
    return {
        "w": Variable(jnp.array([1.0, 2.0]), name="w", trainable=False, collections=["c", LOCAL]),
        "b": Variable(jnp.array(3.0), name="b"),
    }


def _meta(tree):
    return {k: (v.name, v.trainable, v.collections) for k, v in tree.items()}


def test_flatten_unflatten_roundtrip():
    tree = _tree()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    assert len(leaves) == 2  # only the values are leaves
    assert all(isinstance(x, jax.Array) for x in leaves)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert _meta(back) == _meta(tree)
    assert all(isinstance(v, Variable) for v in back.values())
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert paths == ["['b'].value", "['w'].value"]


def test_metadata_survives_tree_map():
    tree = _tree()
    out = jax.tree_util.tree_map(lambda x: x * 10, tree)
    assert _meta(out) == _meta(tree)
    np.testing.assert_array_equal(np.asarray(out["w"].value), [10.0, 20.0])


def test_metadata_survives_jit():
    tree = _tree()
    out = jax.jit(lambda t: jax.tree_util.tree_map(lambda x: x + 1, t))(tree)
    assert _meta(out) == _meta(tree)
    np.testing.assert_array_equal(np.asarray(out["w"].value), [2.0, 3.0])

    @jax.jit
    def read(v):
        assert isinstance(v, Variable)
        assert v.name == "w" and v.trainable is False and v.collections == ("c", LOCAL)
        return v.value.sum()

    assert float(read(tree["w"])) == 3.0


def test_metadata_survives_scan_carry():
    tree = _tree()

    def body(carry, x):
        assert isinstance(carry["w"], Variable)
        new = jax.tree_util.tree_map(lambda a: a + x, carry)
        return new, carry["w"]

    carry, ys = lax.scan(body, tree, jnp.arange(3.0))
    assert _meta(carry) == _meta(tree)
    np.testing.assert_array_equal(np.asarray(carry["w"].value), [4.0, 5.0])  # + 0 + 1 + 2
    assert isinstance(ys, Variable) and ys.name == "w" and ys.shape == (3, 2)
    np.testing.assert_array_equal(np.asarray(ys.value), [[1.0, 2.0], [1.0, 2.0], [2.0, 3.0]])


def test_metadata_survives_vmap():
    batched = Variable(jnp.arange(6.0).reshape(3, 2), name="x", trainable=False)
    sums = jax.vmap(lambda v: v.value.sum())(batched)
    np.testing.assert_array_equal(np.asarray(sums), [1.0, 5.0, 9.0])
    out = jax.vmap(lambda v: v.assign(v.value * 2))(batched)
    assert (out.name, out.trainable, out.shape) == ("x", False, (3, 2))
    np.testing.assert_array_equal(np.asarray(out.value), np.arange(6.0).reshape(3, 2) * 2)


def test_different_metadata_gives_different_treedef():
    a = jax.tree_util.tree_structure(Variable(1.0, name="a"))
    b = jax.tree_util.tree_structure(Variable(1.0, name="b"))
    a2 = jax.tree_util.tree_structure(Variable(2.0, name="a"))
    assert a != b
    assert a == a2


def test_repr():
    v = Variable(jnp.zeros((4, 2)), name="emb")
    assert repr(v) == "Variable(name='emb', shape=(4, 2), dtype=float32, trainable=True)"
    s = Variable(jnp.zeros((), jnp.int32), trainable=False)
    assert repr(s) == "Variable(name=None, shape=(), dtype=int32, trainable=False)"


# -- reading is explicit ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "use",
    [jnp.sum, jnp.asarray, lambda v: jnp.dot(v, v), lambda v: jnp.ones(2) + v, lambda v: jax.nn.relu(v)],
    ids=["sum", "asarray", "dot", "add", "relu"],
)
def test_variable_used_as_array_raises_type_error_mentioning_value(use):
    v = Variable(jnp.ones(2), name="w")
    with pytest.raises(TypeError, match=r"Variable 'w' was used where an array is expected.*`\.value`"):
        use(v)


@pytest.mark.parametrize(
    "use",
    [lambda v: v + 1, lambda v: 2.0 * v, lambda v: v - v, lambda v: v / 2, lambda v: jnp.ones(2) @ v,
     lambda v: v ** 2, lambda v: -v, lambda v: v[0]],
    ids=["add", "rmul", "sub", "div", "rmatmul", "pow", "neg", "getitem"],
)
def test_python_operators_on_variable_mention_value(use):
    v = Variable(jnp.ones(2), name="w")
    with pytest.raises(TypeError, match=r"Variable 'w' was used where an array is expected.*`\.value`"):
        use(v)


def test_variable_used_as_array_under_jit_raises_too():
    v = Variable(jnp.ones(2), name="w")
    with pytest.raises(TypeError, match=r"Variable 'w' .*`\.value`"):
        jax.jit(jnp.sum)(v)


def test_truth_value_is_ambiguous():
    with pytest.raises(TypeError, match=r"^The truth value of Variable 'w' is ambiguous; read `\.value`\.$"):
        bool(Variable(1.0, name="w"))


# -- functional updates ---------------------------------------------------------------------------------
def test_assign_returns_new_variable_and_keeps_metadata():
    v = Variable(jnp.array([1.0, 2.0]), name="v", trainable=False, collections=["c"])
    w = v.assign([3, 4])
    assert w is not v
    assert (w.name, w.trainable, w.collections, w.dtype) == ("v", False, ("c",), jnp.float32)
    np.testing.assert_array_equal(np.asarray(w.value), [3.0, 4.0])
    np.testing.assert_array_equal(np.asarray(v.value), [1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(v.assign_add(1.0).value), [2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(v.assign_sub(1.0).value), [0.0, 1.0])


def test_assign_casts_to_variable_dtype():
    v = Variable(jnp.zeros(2, jnp.float32))
    assert v.assign(jnp.array([1, 2], jnp.int32)).dtype == jnp.float32


def test_assign_shape_error():
    v = Variable(jnp.zeros((2, 3)), name="v")
    msg = r"^Cannot assign a value of shape \(3, 2\) to variable 'v' of shape \(2, 3\)$"
    with pytest.raises(ValueError, match=msg):
        v.assign(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape \(\) to variable 'v'"):
        v.assign(1.0)  # no implicit broadcasting, as TF's validate_shape


def test_replace_trainable_updates_collections():
    v = Variable(1.0, name="v")
    f = v.replace(trainable=False)
    assert f.collections == (GLOBAL,)
    assert f.replace(trainable=True).collections == (GLOBAL, TRAINABLE)
    with pytest.raises(TypeError, match=r"unexpected fields \['bogus'\]"):
        v.replace(bogus=1)


# -- name_scope ------------------------------------------------------------------------------------------
def test_name_scope_nesting():
    with name_scope("outer") as outer:
        assert outer == "outer/"
        assert Variable(1.0).name == "outer/Variable"
        with name_scope("inner") as inner:
            assert inner == "outer/inner/"
            assert Variable(1.0, name="w").name == "outer/inner/w"
        assert Variable(1.0, name="w").name == "outer/w"
    assert Variable(1.0).name is None  # outside any scope: named by its path in the tree
    assert Variable(1.0, name="w").name == "w"


def test_name_scope_reentry_with_trailing_slash():
    with name_scope("a"):
        with name_scope("b") as b_scope:
            pass
        with name_scope("x/") as s:
            assert s == "x/"
            assert Variable(1.0, name="q").name == "x/q"
        with name_scope(b_scope) as again:
            assert again == "a/b/"
            assert Variable(1.0).name == "a/b/Variable"


@pytest.mark.parametrize("root", [None, ""])
def test_name_scope_reset_to_root(root):
    with name_scope("a"), name_scope("b"):
        with name_scope(root) as s:
            assert s == ""
            assert Variable(1.0, name="z").name == "z"
        assert Variable(1.0, name="z").name == "a/b/z"


def test_name_scope_restored_after_exception():
    with pytest.raises(RuntimeError):
        with name_scope("boom"):
            raise RuntimeError
    assert Variable(1.0, name="v").name == "v"


# -- GraphKeys -------------------------------------------------------------------------------------------
TF_GRAPH_KEYS = {
    "GLOBAL_VARIABLES": "variables",
    "VARIABLES": "variables",
    "LOCAL_VARIABLES": "local_variables",
    "METRIC_VARIABLES": "metric_variables",
    "MODEL_VARIABLES": "model_variables",
    "TRAINABLE_VARIABLES": "trainable_variables",
    "TRAINABLE_RESOURCE_VARIABLES": "trainable_resource_variables",
    "MOVING_AVERAGE_VARIABLES": "moving_average_variables",
    "CONCATENATED_VARIABLES": "concatenated_variables",
    "SUMMARIES": "summaries",
    "UPDATE_OPS": "update_ops",
    "LOSSES": "losses",
    "REGULARIZATION_LOSSES": "regularization_losses",
    "SAVEABLE_OBJECTS": "saveable_objects",
    "RESOURCES": "resources",
    "LOCAL_RESOURCES": "local_resources",
    "QUEUE_RUNNERS": "queue_runners",
    "TABLE_INITIALIZERS": "table_initializer",
    "ASSET_FILEPATHS": "asset_filepaths",
    "INIT_OP": "init_op",
    "LOCAL_INIT_OP": "local_init_op",
    "READY_OP": "ready_op",
    "READY_FOR_LOCAL_INIT_OP": "ready_for_local_init_op",
    "SUMMARY_OP": "summary_op",
    "GLOBAL_STEP": "global_step",
    "EVAL_STEP": "eval_step",
    "TRAIN_OP": "train_op",
    "SAVERS": "savers",
    "WEIGHTS": "weights",
    "BIASES": "biases",
    "ACTIVATIONS": "activations",
}


@pytest.mark.parametrize("key", sorted(TF_GRAPH_KEYS))
def test_graph_keys_match_tf(key):
    assert getattr(GraphKeys, key) == TF_GRAPH_KEYS[key]


# -- global step -----------------------------------------------------------------------------------------
def test_create_global_step():
    step = jg.create_global_step()
    assert step.name == "global_step"
    assert step.trainable is False
    assert step.collections == (GLOBAL, GraphKeys.GLOBAL_STEP)
    assert step.shape == ()
    assert step.dtype == jnp.int32  # x64 is off in the tests
    assert int(step.value) == 0
    tree = {"w": Variable(1.0), "s": step}
    assert jg.get_global_step(tree) is not None and jg.get_global_step(tree).name == "global_step"
    assert [v.name for v in jg.trainable_variables(tree)] == ["w"]
    assert jg.get_global_step({"w": Variable(1.0)}) is None


def test_create_global_step_ignores_name_scope_and_takes_name():
    with name_scope("model"):
        assert jg.create_global_step().name == "global_step"
        assert jg.create_global_step("step").name == "step"
    assert jg.train.create_global_step is jg.create_global_step


def test_two_global_steps_rejected():
    tree = {"a": jg.create_global_step(), "b": jg.create_global_step()}
    msg = r"More than one global step in the tree: \['global_step', 'global_step_1'\]"
    with pytest.raises(ValueError, match=msg):
        jg.get_global_step(tree)
