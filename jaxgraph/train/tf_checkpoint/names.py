"""TF names for a parameter tree and its optimizer state: what a TF1 program's ``Saver`` would use.

Variables are keyed by their resolved jaxgraph name, which :func:`jaxgraph.name_scope` makes the same
as a TF1 program's (``embeddings/Variable``, ``global_step``). Optimizer state follows TF1's
``Optimizer``: slot ``s`` of variable ``v`` is ``optimizer.slot_variable_name(v, s)`` (``v/Adam``,
``v/Adam_1``: named after the OPTIMIZER, numbered in TF's creation order), and non-slot state is
``optimizer.non_slot_variable_name(key)`` (``beta1_power``; ``optimizer/beta1_power`` for an optimizer
built in ``jaxgraph.name_scope("optimizer")``, as TF names it when ``apply_gradients`` runs in that name
scope; restoring finds a non-slot in another scope when that is unambiguous, and warns). A job that
trains its variables with several optimizers has one state per optimizer: pass the states and the
optimizers in the same structure (a tuple, or dicts with the same keys), in the order TF created them
(its ``apply_gradients`` calls): a non-slot name already taken gets TF's graph-unique suffix (a second
Adam's ``beta1_power_1``). TF has no counterpart of
``OptimizerState.iterations``: on restore it takes the global step's value (TF1's schedules read
``global_step``); it is not written.

``assignment_map`` follows ``tf.compat.v1.train.init_from_checkpoint``: ``{checkpoint name: variable
name}`` for one variable, ``{"old_scope/": "new_scope/"}`` for every variable under ``new_scope/``
(loaded from the same name under ``old_scope/``), ``"/"`` for the root on either side. Later keys (in
sorted order) override earlier ones, so ``{"/": "/", "old/w": "w"}`` loads everything by name except
``w``. A mapped variable's slots come from the checkpoint variable's slots. In a TF2 object-based
checkpoint a name may leave out the ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix.

>>> import numpy as np
>>> from jaxgraph.train import AdamOptimizer
>>> opt = AdamOptimizer()
>>> state = opt.init({"w": Variable(np.zeros(2, np.float32), name="w")})
>>> sorted(tf_names({"w": np.zeros(2, np.float32)}, state, opt))
['beta1_power', 'beta2_power', 'w', 'w/Adam', 'w/Adam_1']
>>> sorted(tf_names({"w": np.zeros(2, np.float32)}, (state, state), (opt, AdamOptimizer(name="Adam2"))))
['beta1_power', 'beta1_power_1', 'beta2_power', 'beta2_power_1', 'w', 'w/Adam', 'w/Adam2', 'w/Adam2_1', 'w/Adam_1']
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxgraph.errors import JaxgraphWarning
from jaxgraph.train.checkpoint_error import CheckpointError
from jaxgraph.train.optimizer import Optimizer, OptimizerState
from jaxgraph.train.tf_checkpoint.reader import OBJECT_GRAPH_KEY, CheckpointReader
from jaxgraph.variables import Variable

__all__ = ["tf_names", "tf_tensors", "restore_values", "resolve_assignment_map", "TF2_VALUE_SUFFIX"]

TF2_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_LIST_LIMIT = 20


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) <= _LIST_LIMIT:
        return repr(names)
    return f"{names[:_LIST_LIMIT]!r} and {len(names) - _LIST_LIMIT} more"


def _check_optimizer(opt_state: Any, optimizer: Any, what: str) -> None:
    if optimizer is None:
        raise CheckpointError(
            f"Cannot {what} optimizer state in TF's format without the optimizer: TF names slots after it "
            "('<var>/Adam', '<var>/Adam_1'); pass optimizer=opt (optimizer=(opt1, opt2) for a tuple of "
            "states), or opt_state=None for the variables only"
        )
    if isinstance(optimizer, Optimizer) and isinstance(opt_state, (list, tuple, Mapping)) and not isinstance(
            opt_state, OptimizerState):
        raise CheckpointError(
            f"opt_state is a {type(opt_state).__name__} of {len(opt_state)} states but optimizer= is one "
            f"{type(optimizer).__name__}: pass one optimizer per state, in the same structure "
            "(optimizer=(wide_opt, deep_opt) for opt_state=(wide_state, deep_state))"
        )
    if not isinstance(optimizer, Optimizer) or not isinstance(opt_state, OptimizerState):
        raise CheckpointError(
            f"Cannot {what} TF optimizer state for {type(optimizer).__name__} with a "
            f"{type(opt_state).__name__}: TF names exist for the TF1 optimizers' OptimizerState only"
        )
    for key, value in opt_state.non_slots.items():
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise CheckpointError(
                f"{type(optimizer).__name__}'s state entry {key!r} is not an array and has no TF1 "
                "counterpart (an optax state?); pass opt_state=None to use the variables only"
            )


# One optimizer's state, or several (a job that splits its variables between optimizers): ``(key,
# state, optimizer)``, in TF's creation order (the order of the TF program's apply_gradients calls).
_Pair = tuple[Any, OptimizerState, Optimizer]


def _pairs(opt_state: Any, optimizer: Any, what: str) -> list[_Pair]:
    """``opt_state`` and ``optimizer`` as ``[(key, state, optimizer)]``: one pair (key ``None``), or a
    sequence / mapping of states with a sequence / mapping of optimizers of the same length / keys."""
    if isinstance(optimizer, Mapping):
        if not isinstance(opt_state, Mapping) or set(opt_state) != set(optimizer):
            got = sorted(opt_state) if isinstance(opt_state, Mapping) else type(opt_state).__name__
            raise CheckpointError(
                f"optimizer= is a mapping with keys {sorted(optimizer)}: opt_state must be a mapping of "
                f"optimizer states with the same keys, got {got}"
            )
        pairs = [(key, opt_state[key], optimizer[key]) for key in optimizer]
    elif isinstance(optimizer, (list, tuple)):
        if not isinstance(opt_state, (list, tuple)) or isinstance(opt_state, OptimizerState) or len(
                opt_state) != len(optimizer):
            got = (f"{len(opt_state)} states" if isinstance(opt_state, (list, tuple))
                   and not isinstance(opt_state, OptimizerState) else f"a {type(opt_state).__name__}")
            raise CheckpointError(
                f"optimizer= is a sequence of {len(optimizer)} optimizers: opt_state must be a sequence "
                f"of as many optimizer states (the same order), got {got}"
            )
        pairs = list(zip(range(len(optimizer)), opt_state, optimizer, strict=True))
    else:
        pairs = [(None, opt_state, optimizer)]
    for _, state, opt in pairs:
        _check_optimizer(state, opt, what)
    return pairs


def _state_names(pairs: Sequence[_Pair], rename: Mapping[str, str] | None):
    """``(path in the states, TF name, template leaf)`` for each slot and non-slot entry.

    A path is ``(key, "slots", slot, variable)`` or ``(key, "non_slots", name)``. ``rename`` maps
    variable names to the checkpoint's (an assignment map); variables it leaves out are skipped.
    ``None``: every slot, under the variable's own name. A non-slot is named by
    ``opt.non_slot_variable_name`` (its name scope); a name taken by an earlier optimizer gets TF's
    graph-unique suffix: a second Adam's ``beta1_power`` is ``beta1_power_1``.
    """
    taken: dict[str, int] = {}
    for key, state, opt in pairs:
        for slot, per_var in state.slots.items():
            for var_name, leaf in per_var.items():
                source = var_name if rename is None else rename.get(var_name)
                if source is not None:
                    yield (key, "slots", slot, var_name), opt.slot_variable_name(source, slot), leaf
        for name, leaf in state.non_slots.items():
            full = opt.non_slot_variable_name(name)
            count = taken.get(full, 0)
            taken[full] = count + 1
            yield (key, "non_slots", name), full if count == 0 else f"{full}_{count}", leaf


def _clash_error(clashes: list[str]) -> CheckpointError:
    return CheckpointError(f"Two entries would share a TF name: {', '.join(clashes)}")


def tf_names(values: Mapping[str, Any], opt_state: Any = None, optimizer: Any = None) -> dict[str, tuple]:
    """``{TF name: where it comes from}``: ``("variable", name)`` or a path in the optimizer state(s)."""
    names: dict[str, tuple] = {}
    clashes = []

    def add(tf_name: str, source: tuple) -> None:
        if tf_name in names:
            clashes.append(f"{tf_name!r} ({_label(names[tf_name])} and {_label(source)})")
        names[tf_name] = source

    for name in values:
        add(name, ("variable", name))
    if opt_state is not None:
        for path, tf_name, _ in _state_names(_pairs(opt_state, optimizer, "save"), None):
            add(tf_name, path)
    if clashes:
        raise _clash_error(clashes)
    return names


def _state_leaf(states: Mapping[Any, OptimizerState], path: tuple) -> Any:
    state = states[path[0]]
    return state.slots[path[2]][path[3]] if path[1] == "slots" else state.non_slots[path[2]]


def tf_tensors(values: Mapping[str, np.ndarray], opt_state: Any = None, optimizer: Any = None,
               global_step: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of a TF checkpoint of these variables (``{name: array}``) and optimizer state.

    ``global_step`` names the tree's global step variable: it is written as int64, TF's dtype for it.
    """
    out = {}
    states = {} if opt_state is None else {key: state for key, state, _ in _pairs(opt_state, optimizer, "save")}
    for tf_name, source in tf_names(values, opt_state, optimizer).items():
        arr = np.asarray(values[source[1]] if source[0] == "variable" else _state_leaf(states, source))
        if source == ("variable", global_step):
            arr = arr.astype(np.int64)
        out[tf_name] = arr
    return out


def resolve_assignment_map(
    assignment_map: Mapping[str, Any] | Iterable[tuple[str, Any]], var_names: Sequence[str]
) -> dict[str, str]:
    """``{variable name: checkpoint name}`` by ``init_from_checkpoint``'s rules (module docstring)."""
    items = list(assignment_map.items() if isinstance(assignment_map, Mapping) else assignment_map)
    plan: dict[str, str] = {}
    for ckpt_name, current in sorted(items, key=lambda kv: kv[0]):
        if isinstance(current, Variable):
            current = current.name
        if not isinstance(current, str) or not isinstance(ckpt_name, str):
            raise ValueError(
                f"assignment_map entries must map names to names (or Variables), got {ckpt_name!r}: {current!r}"
            )
        if current in var_names:
            plan[current] = ckpt_name
            continue
        if not current.endswith("/"):
            raise CheckpointError(
                f"assignment_map value {current!r} (for {ckpt_name!r}) is neither a variable of the tree nor "
                f"a scope ending in '/'; the tree's variables are {_listing(sorted(var_names))}"
            )
        if not ckpt_name.endswith("/"):
            raise CheckpointError(
                f"Assignment map with scope only name {current!r} should map to scope only {ckpt_name!r}. "
                "Should be 'scope/': 'other_scope/'."
            )
        scope = current[: current.rindex("/")]
        matched = [v for v in var_names if not scope or v.startswith(scope + "/")]
        if not matched:
            raise CheckpointError(f"assignment_map scope {current!r} matches no variable of the tree")
        for var_name in sorted(matched):
            tail = var_name[len(scope) :]
            if current != "/":
                tail = tail[1:]
            plan[var_name] = (tail if ckpt_name == "/" else ckpt_name + tail).rstrip("/")
    return plan


def _lookup(reader: CheckpointReader, name: str) -> str | None:
    if reader.has_tensor(name):
        return name
    if reader.has_tensor(name + TF2_VALUE_SUFFIX):
        return name + TF2_VALUE_SUFFIX
    return None


def _find_scoped_non_slots(reader: CheckpointReader, wanted: Sequence[tuple], keys: dict[str, str | None],
                           used: set[str]) -> dict[str, str]:
    """Non-slot variables (Adam's ``beta1_power``) not found under their name, found in another name scope.

    TF names them after the name scope its ``apply_gradients`` ran in (``optimizer/beta1_power``). When
    exactly one unused checkpoint tensor has the same last name component, it is the one: ``keys`` and
    ``used`` are updated, and ``{wanted name: checkpoint name}`` returned (the caller says so).
    """
    moved: dict[str, str] = {}
    names = list(reader.get_variable_to_shape_map())
    for target, name, _, _ in wanted:
        if target[0] == "variable" or target[1] != "non_slots" or keys[name] is not None:
            continue
        base = name.rsplit("/", 1)[-1]
        candidates = [k for k in names if k not in used and (k == base or k.endswith("/" + base))]
        if len(candidates) == 1:
            keys[name] = moved[name] = candidates[0]
            used.add(candidates[0])
    return moved


def _fit(arr: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    """``arr`` as ``dtype`` when that is exact (same dtype, or integers that fit), else ``None``."""
    if tuple(arr.shape) != tuple(shape):
        return None
    if arr.dtype == dtype:
        return np.array(arr)  # a copy: never hand out the memory-mapped file
    if arr.dtype.kind in "iu" and dtype.kind in "iu":
        cast = arr.astype(dtype)
        if np.array_equal(cast.astype(arr.dtype), arr):
            return cast
    return None


def _label(target: tuple) -> str:
    """A variable's name, or an optimizer state entry's path (``slots/m/<var>``; with several states
    ``opt_state[1]/slots/m/<var>`` or ``opt_state['deep']/slots/m/<var>``)."""
    if target[0] == "variable":
        return target[1]
    path = "/".join(target[1:])
    return path if target[0] is None else f"opt_state[{target[0]!r}]/{path}"


def _dtype_compatible(stored: np.dtype | None, wanted: np.dtype) -> bool:
    return stored == wanted or (stored is not None and stored.kind in "iu" and wanted.kind in "iu")


def restore_values(
    reader: CheckpointReader,
    variables: Sequence[Variable],
    opt_state: Any = None,
    optimizer: Any = None,
    assignment_map: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    global_step: str | None = None,
) -> tuple[dict[str, np.ndarray], Any]:
    """Read ``variables`` (named, from ``named_variables``) and ``opt_state`` from ``reader`` by TF names.

    ``opt_state`` is one optimizer's state (``optimizer`` the optimizer), or a sequence or mapping of
    states with ``optimizer`` the same structure of optimizers (a job that trains its variables with
    several). Returns ``({variable name: array}, opt_state)`` with the states' read entries replaced by
    numpy arrays (others left as they are), in ``opt_state``'s structure. Without ``assignment_map``
    every variable and every entry of ``opt_state`` must be in the checkpoint; with one, the mapped
    variables (and their slots). All problems (missing names, shapes, dtypes; integers are cast when
    every value fits) are reported in one :class:`CheckpointError` that also lists the checkpoint's
    unused tensors.
    """
    by_name = {v.name: v for v in variables if v.name is not None}
    if assignment_map is None:
        plan = {name: name for name in by_name}
    else:
        plan = resolve_assignment_map(assignment_map, list(by_name))
    # (target, TF name wanted, shape, dtype)
    wanted: list[tuple[tuple, str, tuple[int, ...], np.dtype]] = [
        (("variable", name), ckpt, tuple(by_name[name].shape), np.dtype(by_name[name].dtype))
        for name, ckpt in plan.items()
    ]
    pairs = [] if opt_state is None else _pairs(opt_state, optimizer, "restore")
    rename = None if assignment_map is None else plan
    state_names: dict[str, tuple] = {}
    clashes = []
    for path, tf_name, leaf in _state_names(pairs, rename):
        if tf_name in state_names:  # TF would have uniquified one of them: they cannot both be right
            clashes.append(f"{tf_name!r} ({_label(state_names[tf_name])} and {_label(path)})")
        state_names[tf_name] = path
        wanted.append((path, tf_name, tuple(np.shape(leaf)), np.dtype(leaf.dtype)))
    if clashes:
        raise _clash_error(clashes)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    missing, mismatched, found = [], [], []
    keys = {name: _lookup(reader, name) for _, name, _, _ in wanted}
    used = {key for key in keys.values() if key is not None}
    moved = _find_scoped_non_slots(reader, wanted, keys, used)
    for target, name, shape, dtype in wanted:
        key = keys[name]
        label = _label(target)
        if key is None:
            missing.append(name if name == label else f"{name} (for {label})")
            continue
        used.add(key)
        if tuple(shapes[key]) != shape or not _dtype_compatible(dtypes[key], dtype):
            stored_dtype = dtypes[key]
            stored = stored_dtype.name if stored_dtype is not None else reader.tf_dtype_name(key)
            mismatched.append(
                f"{key} has shape {tuple(shapes[key])} and dtype {stored}, "
                f"{label} has shape {shape} and dtype {dtype.name}"
            )
        else:
            found.append((target, key, shape, dtype))
    if missing or mismatched:
        raise CheckpointError(_mismatch_message(reader, missing, mismatched, used, assignment_map is None,
                                                [opt for _, _, opt in pairs]))
    if moved:
        scopes = sorted({key.rsplit("/", 1)[0] for key in moved.values() if "/" in key})
        warnings.warn(JaxgraphWarning(
            f"TF checkpoint {reader.prefix} has the optimizer's non-slot variables in another name scope: "
            f"restored {', '.join(f'{n!r} from {k!r}' for n, k in moved.items())}. TF creates them in the name "
            "scope of apply_gradients; construct the optimizer inside jaxgraph.name_scope("
            f"{scopes[0] if scopes else ''!r}) so that its names (and the checkpoints jaxgraph writes) are TF's"
        ), stacklevel=2)
    values: dict[str, np.ndarray] = {}
    leaves: dict[tuple, np.ndarray] = {}
    for target, key, shape, dtype in found:
        arr = _fit(reader.get_tensor(key), dtype, shape)
        if arr is None:
            raise CheckpointError(
                f"{key} in TF checkpoint {reader.prefix} has values that do not fit {dtype.name} ({_label(target)})"
            )
        if target[0] == "variable":
            values[target[1]] = arr
        else:
            leaves[target] = arr
    if opt_state is None:
        return values, None
    restored = {}
    for key, state, _ in pairs:
        slots: dict[str, dict[str, Any]] = {s: dict(per_var) for s, per_var in state.slots.items()}
        non_slots = dict(state.non_slots)
        for path, arr in leaves.items():
            if path[0] != key:
                continue
            if path[1] == "slots":
                slots[path[2]][path[3]] = arr
            else:
                non_slots[path[2]] = arr
        iterations = _iterations(reader, state, values, global_step, assignment_map is None)
        restored[key] = OptimizerState(iterations, slots, non_slots)
    if isinstance(opt_state, OptimizerState):
        return values, restored[None]
    if isinstance(opt_state, Mapping):
        return values, {key: restored[key] for key in opt_state}
    return values, type(opt_state)(restored[i] for i in range(len(opt_state)))


def _iterations(reader: CheckpointReader, opt_state: OptimizerState, values: Mapping[str, np.ndarray],
                global_step: str | None, by_name: bool) -> Any:
    if global_step is not None and global_step in values:
        step = values[global_step]
    elif by_name and _lookup(reader, "global_step") is not None:
        step = reader.get_tensor(_lookup(reader, "global_step") or "")
    else:
        return opt_state.iterations
    dtype = np.dtype(opt_state.iterations.dtype)
    cast = _fit(np.asarray(step), dtype, tuple(np.shape(opt_state.iterations)))
    if cast is None:
        raise CheckpointError(
            f"The global step {step!r} of TF checkpoint {reader.prefix} does not fit the optimizer's "
            f"iterations counter ({dtype.name}, shape {tuple(np.shape(opt_state.iterations))})"
        )
    return cast


def _mismatch_message(reader: CheckpointReader, missing: list[str], mismatched: list[str], used: set[str],
                      by_name: bool, optimizers: Sequence[Optimizer]) -> str:
    unused = sorted(n for n in reader.get_variable_to_shape_map() if n not in used and n != OBJECT_GRAPH_KEY)
    parts = [f"Cannot restore from TF checkpoint {reader.prefix}:"]
    if missing:
        parts.append(f"not found in the checkpoint: {_listing(missing)};")
    if mismatched:
        parts.append(f"shape/dtype mismatches: {'; '.join(mismatched[:_LIST_LIMIT])}"
                     + (f" and {len(mismatched) - _LIST_LIMIT} more;" if len(mismatched) > _LIST_LIMIT else ";"))
    parts.append(f"checkpoint tensors not used: {_listing(unused)}.")
    if by_name and reader.has_tensor(OBJECT_GRAPH_KEY):
        example = next((n for n in unused if n.endswith(TF2_VALUE_SUFFIX)), "model/layer/kernel" + TF2_VALUE_SUFFIX)
        parts.append(
            "It is a TF2 object-based checkpoint (tf.train.Checkpoint / Keras), keyed by object paths such "
            f"as {example!r}, not by variable names: pass assignment_map={{'<checkpoint path>': "
            "'<variable name>'}} (the '/.ATTRIBUTES/VARIABLE_VALUE' suffix may be left out), or read tensors "
            "with jaxgraph.train.load_checkpoint(path).get_tensor(key)."
        )
    else:
        if any("non_slots/" in m for m in missing):
            parts.append(
                "Non-slot variables (Adam's beta1_power) are named in the name scope TF's apply_gradients ran "
                "in ('optimizer/beta1_power'); when several tensors could be the one, construct each "
                "optimizer inside jaxgraph.name_scope('<that scope>')."
            )
        named = [opt.get_name() for opt in optimizers if any("/" + opt.get_name() in m for m in missing)]
        if named:
            parts.append(
                f"Slot names follow the optimizer's name ('<var>/{named[0]}', '<var>/{named[0]}_1'): was the "
                "checkpoint written by another optimizer, or one with another name=? Restore the variables "
                "only with opt_state=None."
            )
    return " ".join(parts)
