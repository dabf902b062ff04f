"""Collections over pytrees: path-derived names, TF's unique-name suffixes, re.match scopes, freeze."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import GraphKeys, Module, Variable

V = Variable


def names(variables):
    return [v.name for v in variables]


# -- names derived from the tree ----------------------------------------------------------------------
def test_nested_dict_list_tuple_paths():
    tree = {
        "enc": {"w": V(1.0), "layers": [V(2.0), (V(3.0), {"b": V(4.0)})]},
        "head": V(5.0),
    }
    # Dict keys are visited sorted, sequences by index; the path joins with "/".
    assert names(jg.named_variables(tree)) == [
        "enc/layers/0", "enc/layers/1/0", "enc/layers/1/1/b", "enc/w", "head",
    ]


def test_single_variable_root_is_called_variable():
    assert names(jg.named_variables(V(1.0))) == ["Variable"]
    assert names(jg.named_variables([V(1.0), V(2.0)])) == ["0", "1"]


def test_array_leaves_are_variables_and_other_leaves_are_not():
    # One rule for every tree: plain arrays are variables (global; trainable when floating-point),
    # Python numbers and other leaves are not.
    tree = {"w": V(1.0), "lr": 0.1, "arr": jnp.ones(3), "count": jnp.int32(2), "none": None, "tag": "x"}
    assert names(jg.named_variables(tree)) == ["arr", "count", "w"]
    assert names(jg.global_variables(tree)) == ["arr", "count", "w"]
    assert names(jg.trainable_variables(tree)) == ["arr", "w"]


def test_chex_dataclass_paths():
    @chex.dataclass
    class Params:
        kernel: Variable
        extra: dict

    tree = Params(kernel=V(jnp.ones(2)), extra={"bias": V(0.0)})
    # chex dataclasses flatten like mappings: fields in sorted order.
    assert names(jg.named_variables(tree)) == ["extra/bias", "kernel"]


def test_register_dataclass_paths_and_meta_fields():
    @dataclasses.dataclass
    class Layer:
        w: Variable
        b: Variable
        width: int

    jax.tree_util.register_dataclass(Layer, data_fields=["w", "b"], meta_fields=["width"])
    tree = {"layer": Layer(V(jnp.ones((2, 3))), V(jnp.zeros(3)), 3)}
    assert names(jg.named_variables(tree)) == ["layer/w", "layer/b"]
    out = jax.jit(lambda t: t)(tree)
    assert out["layer"].width == 3
    assert names(jg.named_variables(out)) == ["layer/w", "layer/b"]


class Linear(Module):
    def __init__(self, n_in, n_out, name=None):
        self.n_out = n_out
        self.w = V(jnp.ones((n_in, n_out)), name=name)
        self.b = V(jnp.zeros((n_out,)))

    def __call__(self, x):
        return x @ self.w.value + self.b.value


class MLP(Module):
    def __init__(self):
        self.encoder = Linear(3, 4)
        self.layers = [Linear(4, 4), Linear(4, 2)]
        self.head = Linear(2, 1)
        self.activation = "relu"


def test_module_nested_and_lists_of_modules():
    net = MLP()
    expected = [
        "encoder/w", "encoder/b", "layers/0/w", "layers/0/b", "layers/1/w", "layers/1/b", "head/w", "head/b",
    ]
    assert names(jg.named_variables(net)) == expected
    assert names(net.trainable_variables()) == expected
    assert names(net.variables("layers")) == expected[2:6]
    assert names(net.global_variables("head")) == ["head/w", "head/b"]
    assert names(net.get_collection(GraphKeys.TRAINABLE_VARIABLES, "enc")) == ["encoder/w", "encoder/b"]


def test_module_inside_dict():
    tree = {"model": Linear(2, 2), "step": jg.create_global_step()}
    assert names(jg.global_variables(tree)) == ["model/w", "model/b", "global_step"]
    assert names(jg.trainable_variables(tree)) == ["model/w", "model/b"]


def test_explicit_names_override_paths():
    tree = {"a": V(1.0, name="embeddings"), "b": V(2.0)}
    assert names(jg.named_variables(tree)) == ["embeddings", "b"]
    with jg.name_scope("scope"):
        tree = {"a": V(1.0), "b": V(2.0, name="w")}
    assert names(jg.named_variables(tree)) == ["scope/Variable", "scope/w"]


# -- unique names --------------------------------------------------------------------------------------
def test_duplicate_names_get_suffixes_in_tree_order():
    tree = [V(1.0, name="w"), V(2.0, name="w"), V(3.0, name="w")]
    assert names(jg.named_variables(tree)) == ["w", "w_1", "w_2"]


def test_duplicate_names_are_case_insensitive_and_keep_capitalization():
    tree = [V(1.0, name="w"), V(2.0, name="W"), V(3.0, name="W")]
    assert names(jg.named_variables(tree)) == ["w", "W_1", "W_2"]


def test_suffix_skips_names_already_in_use():
    # TF's unique_name: "x_1" is taken (case-insensitively, by "X_1"), so the explicit "x_1" becomes "x_1_1".
    tree = [V(1.0, name="x"), V(2.0, name="X"), V(3.0, name="x_1")]
    assert names(jg.named_variables(tree)) == ["x", "X_1", "x_1_1"]
    # An explicit "w_1" seen first forces the clash counter past it.
    tree = [V(1.0, name="w"), V(2.0, name="w_1"), V(3.0, name="w")]
    assert names(jg.named_variables(tree)) == ["w", "w_1", "w_2"]


def test_scoped_default_names_clash_like_tf():
    with jg.name_scope("embeddings"):
        tree = [V(1.0), V(2.0)]
    assert names(jg.named_variables(tree)) == ["embeddings/Variable", "embeddings/Variable_1"]


def test_names_do_not_mutate_tree_variables():
    a, b = V(1.0, name="w"), V(2.0, name="w")
    jg.named_variables([a, b])
    assert a.name == "w" and b.name == "w"


def test_names_stable_across_builds_and_dict_insertion_order():
    def build(order):
        d = {}
        for k in order:
            d[k] = {"w": V(1.0), "dup": V(2.0, name="shared")}
        return d

    first = names(jg.named_variables(build(["b", "a", "c"])))
    second = names(jg.named_variables(build(["c", "a", "b"])))
    assert first == second
    assert first == ["shared", "a/w", "shared_1", "b/w", "shared_2", "c/w"]
    assert names(jg.named_variables(MLP())) == names(jg.named_variables(MLP()))


# -- scope filtering: re.match --------------------------------------------------------------------------
@pytest.fixture
def scoped_tree():
    return {
        "a": V(1.0, name="embeddings/w"),
        "b": V(2.0, name="embeddingsX"),
        "c": V(3.0, name="embeddings_1/w"),
        "d": V(4.0, name="nce/embeddings"),
        "e": V(5.0, name="eXbeddings"),
        "f": V(6.0, name="emb_frozen", trainable=False),
    }


def test_scope_is_prefix_match(scoped_tree):
    assert names(jg.trainable_variables(scoped_tree, "emb")) == [
        "embeddings/w", "embeddingsX", "embeddings_1/w",
    ]
    assert names(jg.global_variables(scoped_tree, "emb")) == [
        "embeddings/w", "embeddingsX", "embeddings_1/w", "emb_frozen",
    ]
    # re.match is anchored at the start, not a search: "nce/embeddings" is not matched by "embeddings".
    assert names(jg.trainable_variables(scoped_tree, "embeddings")) == [
        "embeddings/w", "embeddingsX", "embeddings_1/w",
    ]


def test_scope_is_a_regex(scoped_tree):
    assert names(jg.trainable_variables(scoped_tree, "e.beddings")) == [
        "embeddings/w", "embeddingsX", "embeddings_1/w", "eXbeddings",
    ]
    assert names(jg.trainable_variables(scoped_tree, "embeddings/")) == ["embeddings/w"]
    assert names(jg.trainable_variables(scoped_tree, r"embeddings$")) == []
    assert names(jg.trainable_variables(scoped_tree, ".*embeddings$")) == ["nce/embeddings"]
    assert names(jg.trainable_variables(scoped_tree, "nomatch")) == []


def test_scope_matches_resolved_unique_names():
    tree = [V(1.0, name="w"), V(2.0, name="w")]
    assert names(jg.trainable_variables(tree, "w_")) == ["w_1"]


# -- collections ------------------------------------------------------------------------------------------
def test_trainable_vs_global_vs_custom_collections():
    tree = {
        "w": V(1.0),
        "frozen": V(2.0, trainable=False),
        "local": V(3.0, collections=[GraphKeys.LOCAL_VARIABLES], trainable=False),
        "model": V(4.0, collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.MODEL_VARIABLES]),
        "custom": V(5.0, collections=["my_key", GraphKeys.GLOBAL_VARIABLES], trainable=False),
    }
    assert names(jg.trainable_variables(tree)) == ["model", "w"]
    assert names(jg.global_variables(tree)) == ["custom", "frozen", "model", "w"]
    assert names(jg.local_variables(tree)) == ["local"]
    assert names(jg.model_variables(tree)) == ["model"]
    assert names(jg.get_collection(tree, "my_key")) == ["custom"]
    assert names(jg.get_collection(tree, "my_key", scope="c")) == ["custom"]
    assert names(jg.get_collection(tree, "my_key", scope="x")) == []
    assert jg.get_collection(tree, "absent") == []
    assert names(jg.all_variables(tree)) == ["custom", "frozen", "local", "model", "w"]


def test_collections_return_variables_with_values():
    tree = {"w": V(jnp.array([1.0, 2.0]))}
    (w,) = jg.trainable_variables(tree)
    assert isinstance(w, Variable)
    np.testing.assert_array_equal(np.asarray(w.value), [1.0, 2.0])


# -- freeze / unfreeze ------------------------------------------------------------------------------------
def test_freeze_returns_new_tree_and_does_not_mutate():
    tree = {"enc": {"w": V(1.0)}, "dec": {"w": V(2.0)}}
    frozen = jg.freeze(tree, "enc")
    assert frozen is not tree
    assert names(jg.trainable_variables(frozen)) == ["dec/w"]
    assert names(jg.global_variables(frozen)) == ["dec/w", "enc/w"]
    assert frozen["enc"]["w"].trainable is False
    assert frozen["enc"]["w"].collections == (GraphKeys.GLOBAL_VARIABLES,)
    # the original is untouched
    assert tree["enc"]["w"].trainable is True
    assert names(jg.trainable_variables(tree)) == ["dec/w", "enc/w"]
    # the path-derived name stays implicit (name=None), so the treedef only changes by `trainable`
    assert frozen["enc"]["w"].name is None


def test_freeze_all_and_unfreeze_roundtrip():
    tree = {"a": V(1.0), "b": V(2.0)}
    frozen = jg.freeze(tree)
    assert jg.trainable_variables(frozen) == []
    back = jg.unfreeze(frozen, "b")
    assert names(jg.trainable_variables(back)) == ["b"]
    assert jg.trainable_variables(frozen) == []  # unfreeze did not mutate
    full = jg.unfreeze(frozen)
    assert jax.tree_util.tree_structure(full) == jax.tree_util.tree_structure(tree)


def test_frozen_variable_is_not_differentiated_by_default():
    tree = {"enc": V(jnp.array(2.0)), "dec": V(jnp.array(3.0))}
    frozen = jg.freeze(tree, "enc")
    opt = jg.train.GradientDescentOptimizer(1.0)
    loss, gv = opt.compute_gradients(lambda t: t["enc"].value * t["dec"].value ** 2, frozen)
    assert float(loss) == 18.0
    assert [v.name for _, v in gv] == ["dec"]
    assert float(gv[0][0]) == 12.0  # d/d dec of enc * dec^2 = 2 * enc * dec
    new, _, _ = opt.minimize(lambda t: t["enc"].value * t["dec"].value ** 2, frozen)
    assert float(new["enc"].value) == 2.0
    assert float(new["dec"].value) == -9.0


# -- replace_values / map_variables -------------------------------------------------------------------------
def test_replace_values():
    tree = {"a": V(jnp.zeros(2)), "b": V(jnp.ones(2), name="bee", trainable=False)}
    out = jg.replace_values(tree, {"bee": jnp.array([5.0, 6.0])})
    np.testing.assert_array_equal(np.asarray(out["b"].value), [5.0, 6.0])
    assert out["b"].name == "bee" and out["b"].trainable is False
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(tree)
    np.testing.assert_array_equal(np.asarray(tree["b"].value), [1.0, 1.0])


def test_replace_values_unknown_name():
    tree = {"a": V(1.0)}
    with pytest.raises(KeyError, match=r"No variables named \['nope', 'zz'\] in the tree"):
        jg.replace_values(tree, {"zz": 1.0, "a": 2.0, "nope": 3.0})


def test_map_variables_sees_resolved_names():
    tree = [V(1.0, name="w"), V(2.0, name="w"), 7]
    seen = []

    def fn(v):
        seen.append(v.name)
        return v.assign(v.value * 10)

    out = jg.map_variables(fn, tree)
    assert seen == ["w", "w_1"]
    assert out[2] == 7
    assert [float(v.value) for v in out[:2]] == [10.0, 20.0]


# -- Module: static vs dynamic fields ------------------------------------------------------------------------
class Config(Module):
    def __init__(self, n, scale):
        self.n = n  # int: static
        self.label = "cfg"  # str: static
        self.shape = (2, 3)  # tuple of ints: static
        self.scale = scale  # array: a leaf
        self.w = V(jnp.ones(2))


def test_module_static_and_dynamic_fields():
    m = Config(3, jnp.array(2.0))
    leaves = jax.tree_util.tree_leaves(m)
    assert len(leaves) == 2  # scale and w's value
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(m)[0]]
    assert paths == [".scale", ".w.value"]


def test_module_int_attribute_stays_static_under_jit():
    traces = []

    @jax.jit
    def f(m):
        traces.append(1)
        assert isinstance(m.n, int)
        assert m.n == 3
        assert isinstance(m.label, str) and m.shape == (2, 3)
        assert isinstance(m.scale, jax.core.Tracer)
        return jnp.zeros(m.n) + m.scale * m.w.value.sum()

    np.testing.assert_array_equal(np.asarray(f(Config(3, jnp.array(2.0)))), [4.0, 4.0, 4.0])
    f(Config(3, jnp.array(5.0)))  # new array values: no retrace
    assert len(traces) == 1
    with pytest.raises(AssertionError):
        f(Config(4, jnp.array(5.0)))  # a different static int retraces (and fails the assert above)
    assert len(traces) == 2


def test_module_roundtrip_through_jit_keeps_type_and_fields():
    m = Config(3, jnp.array(2.0))
    out = jax.jit(lambda m: m)(m)
    assert type(out) is Config
    assert (out.n, out.label, out.shape) == (3, "cfg", (2, 3))
    assert out.w.name is None
    assert names(out.variables()) == ["scale", "w"]  # an array attribute is a variable too


def test_module_repr():
    assert repr(Linear(1, 1, name="k")).startswith("Linear(n_out=1, w=Variable(name='k', shape=(1, 1)")
