"""The TF1 ``Optimizer`` contract on explicit state: ``compute_gradients`` → ``apply_gradients``.

State goes in and comes out: ``apply_gradients`` takes the parameter tree and an
:class:`OptimizerState` and returns new ones, so a training step is a pure function that runs under
``jax.jit`` with both donated. Names and semantics are TF1's (see ``tensorflow/python/training/
optimizer.py``): ``None`` gradients are skipped, slots exist only for updated variables, duplicate
sparse indices are summed before a nonlinear update, and the global step moves by one after the updates.

>>> import jax, jax.numpy as jnp
>>> import jaxgraph as jg
>>> params = {"w": jg.Variable(jnp.array([1.0, 2.0])), "step": jg.create_global_step()}
>>> opt = jg.train.GradientDescentOptimizer(0.5)
>>> @jax.jit
... def step(params, opt_state):
...     return opt.minimize(lambda p: jnp.sum(p["w"].value ** 2), params, opt_state,
...                         global_step=params["step"])
>>> params, opt_state, loss = step(params, opt.init(params))
>>> params["w"].value.tolist(), int(params["step"].value), float(loss)
([0.0, 0.0], 1, 5.0)
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgraph.gradients import resolve_var_list, value_and_gradients
from jaxgraph.sparse import IndexedSlices, convert_to_tensor_or_indexed_slices
from jaxgraph.variable_collections import replace_values, resolved_name
from jaxgraph.variable_index import VariableIndex
from jaxgraph.variables import Variable, current_name_scope

Hyper = float | jax.Array | Callable[..., Any]
"""A hyper-parameter: a number, an array, ``lambda: x``, or a schedule ``lambda step: x``."""
Hypers = dict[str, jax.Array]
"""Evaluated hyper-parameters, as the update hooks receive them (cast to the variable's dtype)."""
Slots = dict[str, jax.Array]
"""One variable's slots by slot name (``{"m": ..., "v": ...}``), each shaped like the variable."""
GradsAndVars = list[tuple[jax.Array | IndexedSlices | None, Variable]]


class OptimizerState(NamedTuple):
    """An optimizer's state: a pytree, to be donated with the parameters.

    Attributes:
      iterations: int32 count of ``apply_gradients`` calls made with this state; schedules read it
        when ``apply_gradients`` gets no ``global_step``.
      slots: ``{slot_name: {variable_name: array}}`` (e.g. Adam's ``"m"`` and ``"v"``).
      non_slots: state shared by all variables (e.g. Adam's ``"beta1_power"``), keyed by TF's names.
    """

    iterations: jax.Array
    slots: dict[str, dict[str, jax.Array]]
    non_slots: dict[str, Any]


class Optimizer:
    """Base class of the TF1 optimizers. A subclass declares its slots and writes its update rule once.

    Hooks (each returns new arrays; nothing is mutated; ``hyper`` is already cast to the variable's
    dtype, as TF's ``math_ops.cast(self._lr_t, var.dtype.base_dtype)``):

    - ``_slot_names``: slot names in TF's creation order (it decides the ``_1``, ``_2`` suffixes of the
      slot variables' names); ``_slot_initial_value(slot_name, var_value)`` (zeros unless overridden);
      ``_slot_op_name(slot_name)`` (the name TF puts after ``<var>/``: the optimizer's name).
    - ``_create_non_slots()``: state shared by all variables, such as Adam's beta powers;
      ``_finish(non_slots, hyper)`` updates it once per ``apply_gradients``, after the variables.
    - ``_prepare(step, read_global_step)``: the hyper-parameters of this step (schedules evaluated at ``step``).
    - ``_apply_dense(grad, var, slots, hyper, non_slots) -> (var, slots)``: **the update rule**, written
      once for arrays: the whole variable for a dense gradient, or a block of its rows for a sparse one
      (so a row's update may read only that row of the gradient, the variable and its slots).
    - ``_apply_sparse_rows(grad, var, slots, hyper, non_slots)``: the rule on the gathered rows of a
      sparse update. It is ``_apply_dense`` unless TF's sparse kernel computes differently (RMSProp).
    - ``_apply_sparse(grad, var, slots, hyper, non_slots)``: a coalesced :class:`IndexedSlices` (unique
      indices; padding index ``dense_shape[0]``). The default is TF's lazy update: gather the touched
      rows of the variable and of every slot, run ``_apply_sparse_rows``, scatter back once per buffer
      (``mode="drop"`` discards the padding). Override it for a rule that is not lazy (Adam).
    - ``_apply_sparse_duplicate_indices(grad, ...)``: sums repeated indices, then ``_apply_sparse``
      (TF's default). GradientDescent overrides it: its scatter-add sums repeats itself.
    """

    GATE_NONE = 0
    GATE_OP = 1
    GATE_GRAPH = 2

    _slot_names: tuple[str, ...] = ()

    def __init__(self, use_locking: bool, name: str) -> None:
        if not name:
            raise ValueError("Must specify the optimizer name")
        self._use_locking = use_locking
        self._name = name
        self._hyper: dict[str, Hyper] = {}
        # TF creates non-slot variables (Adam's beta1_power) in the name scope of apply_gradients; a port
        # builds the optimizer where the TF program called it (see non_slot_variable_name).
        self._non_slot_scope = current_name_scope()

    def get_name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}({args}, name={self._name!r})"

    # -- state ------------------------------------------------------------------------------------
    def _slot_initial_value(self, slot_name: str, value: jax.Array) -> jax.Array:
        return jnp.zeros_like(value)

    def _slot_op_name(self, slot_name: str) -> str:
        return self._name

    def _create_non_slots(self) -> dict[str, Any]:
        return {}

    def init(self, params: Any, var_list: Sequence[Variable | str] | None = None) -> OptimizerState:
        """A fresh state with slots for ``var_list`` (default: the tree's trainable variables)."""
        variables = resolve_var_list(params, var_list)
        slots = {
            s: {resolved_name(v): self._slot_initial_value(s, v.value) for v in variables}
            for s in self._slot_names
        }
        return OptimizerState(jnp.zeros((), jnp.int32), slots, self._create_non_slots())

    def get_slot_names(self) -> list[str]:
        """TF's ``get_slot_names``: the sorted slot names."""
        return sorted(self._slot_names)

    def slot_variable_name(self, var_name: str, slot_name: str) -> str:
        """TF's name of the slot variable ``slot_name`` of variable ``var_name``.

        TF's ``slot_creator`` names a slot ``<var>/<op name>`` and uniquifies repeats in creation order:
        Adam's ``m`` and ``v`` are ``"w/Adam"`` and ``"w/Adam_1"``. TF checkpoints key optimizer state by
        these names; the non-slot variables (Adam's ``beta1_power``) are named by their keys in
        ``OptimizerState.non_slots``.

        >>> import jaxgraph as jg
        >>> jg.train.AdamOptimizer().slot_variable_name("w", "v")
        'w/Adam_1'
        """
        if slot_name not in self._slot_names:
            raise ValueError(f"{type(self).__name__} has no slot {slot_name!r}; its slots: {self.get_slot_names()}")
        i = self._slot_names.index(slot_name)
        op_name = self._slot_op_name(slot_name)
        repeats = sum(self._slot_op_name(s) == op_name for s in self._slot_names[:i])
        return f"{var_name}/{op_name}" + (f"_{repeats}" if repeats else "")

    def non_slot_variable_name(self, key: str) -> str:
        """TF's name of the non-slot variable ``key`` (Adam's ``"beta1_power"``).

        TF creates it in the name scope that is current when ``apply_gradients`` first runs: a TF1
        program that trains under ``with tf.name_scope("optimizer"):`` saves ``"optimizer/beta1_power"``.
        Here it is the :func:`jaxgraph.name_scope` in effect when the optimizer was constructed.

        >>> import jaxgraph as jg
        >>> with jg.name_scope("optimizer"):
        ...     opt = jg.train.AdamOptimizer()
        >>> opt.non_slot_variable_name("beta1_power"), opt.slot_variable_name("w", "m")
        ('optimizer/beta1_power', 'w/Adam')
        """
        return f"{self._non_slot_scope}/{key}" if self._non_slot_scope else key

    def get_slot(self, opt_state: OptimizerState, var: Variable | str, name: str) -> Variable | None:
        """The slot ``name`` of ``var`` as a non-trainable Variable named like TF's
        (``"<var>/Adam"``, ``"<var>/Adam_1"``), or ``None`` when there is no such slot."""
        var_name = var.name if isinstance(var, Variable) else var
        if var_name is None or not isinstance(var_name, str):
            # A path-named leaf taken straight from the tree: its name is only known with the tree.
            shape = getattr(var, "shape", None)
            what = repr(var) if isinstance(var, Variable) else f"a {type(var).__name__} of shape {shape}"
            raise ValueError(
                f"get_slot needs the variable's name; {what} has none. Pass its name, or a Variable "
                "from jaxgraph.trainable_variables(params)."
            )
        value = opt_state.slots.get(name, {}).get(var_name)
        if value is None:
            return None
        return Variable.from_value(value, self.slot_variable_name(var_name, name), False, ("variables",))

    def variables(self, opt_state: OptimizerState) -> list[Variable]:
        """TF's ``Optimizer.variables()``: non-slot and slot variables, sorted by name."""
        result = [Variable.from_value(v, self.non_slot_variable_name(k), False, ("variables",))
                  for k, v in opt_state.non_slots.items()]
        for slot, per_var in opt_state.slots.items():
            for var_name, value in per_var.items():
                result.append(Variable.from_value(value, self.slot_variable_name(var_name, slot), False,
                                                  ("variables",)))
        return sorted(result, key=resolved_name)

    # -- hyper-parameters -------------------------------------------------------------------------
    def _prepare(self, step: jax.Array, read_global_step: Callable[[Variable | str], jax.Array]) -> Hypers:
        """Evaluate hyper-parameters: numbers, arrays, ``lambda: x``, or schedules ``lambda step: x``.

        ``step`` is the global step's value before this update's increment (TF1's schedules read the
        ``global_step`` tensor), or the state's ``iterations`` when ``apply_gradients`` has no
        ``global_step``. ``read_global_step(var_or_name)`` reads an integer variable of the tree being
        updated (AdagradDA reads the global step given to its constructor with it).
        """
        out = {}
        for key, value in self._hyper.items():
            if callable(value):
                try:
                    n_args = len(inspect.signature(value).parameters)
                except (TypeError, ValueError):
                    n_args = 1
                value = value() if n_args == 0 else value(step)
            out[key] = jnp.asarray(value)
        return out

    # -- update rules -----------------------------------------------------------------------------
    def _apply_dense(self, grad: jax.Array, var: jax.Array, slots: Slots, hyper: Hypers,
                     non_slots: dict[str, Any]) -> tuple[jax.Array, Slots]:
        raise NotImplementedError(f"{type(self).__name__} does not define its update rule (_apply_dense)")

    def _apply_sparse_rows(self, grad: jax.Array, var: jax.Array, slots: Slots, hyper: Hypers,
                           non_slots: dict[str, Any]) -> tuple[jax.Array, Slots]:
        return self._apply_dense(grad, var, slots, hyper, non_slots)

    def _apply_sparse(self, grad: IndexedSlices, var: jax.Array, slots: Slots, hyper: Hypers,
                      non_slots: dict[str, Any]) -> tuple[jax.Array, Slots]:
        idx = grad.indices

        # The padding index dense_shape[0] reads (clip) a real row; its result is dropped on the way back.
        def rows(x: jax.Array) -> jax.Array:
            return jnp.take(x, idx, axis=0, mode="clip")

        new_var, new_slots = self._apply_sparse_rows(
            grad.values, rows(var), {k: rows(s) for k, s in slots.items()}, hyper, non_slots
        )
        return (var.at[idx].set(new_var, mode="drop"),
                {k: slots[k].at[idx].set(new_slots[k], mode="drop") for k in slots})

    def _apply_sparse_duplicate_indices(self, grad: IndexedSlices, var: jax.Array, slots: Slots,
                                        hyper: Hypers, non_slots: dict[str, Any]) -> tuple[jax.Array, Slots]:
        """Sum repeated indices, then apply the sparse rule (TF's default)."""
        return self._apply_sparse(grad.coalesce(), var, slots, hyper, non_slots)

    def _finish(self, non_slots: dict[str, Any], hyper: Hypers) -> dict[str, Any]:
        return non_slots

    # -- the TF1 API ------------------------------------------------------------------------------
    def compute_gradients(
        self,
        loss: Callable[[Any], Any],
        params: Any,
        var_list: Sequence[Variable | str] | None = None,
        gate_gradients: int = GATE_OP,
        aggregation_method: Any = None,
        colocate_gradients_with_ops: bool = False,
        grad_loss: Any = None,
    ) -> tuple[jax.Array, GradsAndVars]:
        """``(loss_value, [(gradient, variable), ...])`` in ``var_list`` order.

        ``loss`` is a callable of the parameter tree (TF's eager rule). Only ``var_list`` (default:
        the trainable variables) is differentiated. A gradient is an array, an ``IndexedSlices`` (for a
        variable read only through ``embedding_lookup``), or ``None`` when the loss does not depend on
        the variable. ``gate_gradients``, ``aggregation_method`` and ``colocate_gradients_with_ops``
        are accepted for TF compatibility; XLA schedules the computation, so they change nothing.
        ``params`` may also be a :class:`~jaxgraph.VariableIndex` of the tree.

        A loss that changes variables in place (Flax NNX batch statistics, RNG counts) has those
        changes kept by :meth:`minimize`; ``compute_gradients`` cannot return them and warns.
        """
        loss_value, grads_and_vars, updates = self._gradients_and_state_updates(
            loss, params, var_list, gate_gradients, grad_loss)
        if updates:
            warnings.warn(
                f"the loss changed variables {sorted(updates)} in place (e.g. NNX batch statistics or RNG "
                "counts); compute_gradients drops those changes. Use minimize(), which keeps them.",
                stacklevel=2,
            )
        return loss_value, grads_and_vars

    def _gradients_and_state_updates(self, loss, params, var_list, gate_gradients, grad_loss):
        if gate_gradients not in (Optimizer.GATE_NONE, Optimizer.GATE_OP, Optimizer.GATE_GRAPH):
            raise ValueError(
                "gate_gradients must be one of: Optimizer.GATE_NONE, Optimizer.GATE_OP, "
                f"Optimizer.GATE_GRAPH.  Not {gate_gradients}"
            )
        if not callable(loss):
            raise TypeError(
                "`loss` passed to Optimizer.compute_gradients must be a callable of the parameter tree, "
                f"got {type(loss).__name__}"
            )
        index = VariableIndex.of(params)  # params may already be an index (minimize passes one)
        variables = resolve_var_list(index, var_list)
        loss_value, grads, updates = value_and_gradients(loss, index, variables, grad_loss=grad_loss,
                                                         return_updates=True)
        return loss_value, list(zip(grads, variables, strict=True)), updates

    def _check_grads_and_vars(self, grads_and_vars: Any, params: Any):
        grads_and_vars = tuple(grads_and_vars)
        if not grads_and_vars:
            raise ValueError("No variables provided.")
        index = VariableIndex.of(params)
        by_name = {name: entry.variable for name, entry in index.by_name.items()}
        checked: list[tuple[Any, str]] = []
        for pair in grads_and_vars:
            try:
                grad, var = pair
            except (TypeError, ValueError) as exc:
                raise TypeError(f"grads_and_vars must hold (gradient, variable) pairs, got {pair!r}") from exc
            entry = index.find(var)
            name: str | None
            if entry is not None:
                name = entry.name
            elif isinstance(var, (Variable, str)):
                name = var if isinstance(var, str) else var.name
            else:
                raise NotImplementedError("Trying to update a Tensor ", var)
            if name is None or name not in by_name:
                raise ValueError(f"Variable {name!r} is not a variable of the parameter tree")
            if grad is not None:
                grad = convert_to_tensor_or_indexed_slices(grad)
                self._check_gradient(grad, by_name[name])
                if isinstance(grad, IndexedSlices):
                    # Concrete indices outside [0, rows] raise TF's message; traced ones become padding,
                    # so no update ever lands on another row (a negative index must not wrap).
                    grad = IndexedSlices(grad.values, grad.checked_indices(), grad.dense_shape)
            checked.append((grad, name))
        if all(g is None for g, _ in checked):
            raise ValueError(f"No gradients provided for any variable: {[n for _, n in checked]}.")
        return checked, by_name

    @staticmethod
    def _check_gradient(grad: Any, var: Variable) -> None:
        if isinstance(grad, IndexedSlices):
            shape, dtype = grad.dense_shape, grad.values.dtype
        else:
            shape, dtype = tuple(grad.shape), grad.dtype
        if shape != var.shape:
            raise ValueError(
                f"Gradient for variable {var.name!r} has shape {shape}, but the variable has shape {var.shape}"
            )
        if dtype != var.dtype:
            raise ValueError(
                f"Gradient for variable {var.name!r} has dtype {dtype}, but the variable has dtype {var.dtype}"
            )

    @staticmethod
    def _global_step_name(global_step: Any, by_name: dict[str, Variable], params: Any = None) -> str:
        entry = VariableIndex.of(params).find(global_step) if params is not None else None
        name: Any
        if entry is not None:
            name = entry.name
        else:
            name = global_step.name if isinstance(global_step, Variable) else global_step
        if not isinstance(name, str) or name not in by_name:
            raise ValueError(
                "global_step must be a Variable of the parameter tree (or its name), e.g. "
                f"jaxgraph.create_global_step(); got {global_step!r}"
            )
        if not jnp.issubdtype(by_name[name].dtype, jnp.integer):
            raise ValueError(f"global_step {name!r} must be an integer variable, got dtype {by_name[name].dtype}")
        return name

    def _increment_global_step(self, global_step: Any, by_name: dict[str, Variable], new_values: dict,
                               params: Any = None) -> None:
        if global_step is None:
            return
        name = self._global_step_name(global_step, by_name, params)
        new_values[name] = by_name[name].value + jnp.ones((), by_name[name].dtype)

    def apply_gradients(
        self,
        grads_and_vars: Any,
        params: Any,
        opt_state: OptimizerState | None = None,
        global_step: Variable | str | None = None,
        name: str | None = None,
    ) -> tuple[Any, OptimizerState]:
        """Apply the gradients; returns ``(params, opt_state)``.

        ``None`` gradients are skipped. Missing slots are created (get-or-create, only for variables
        with a gradient); pass ``opt.init(params)`` to create them up front, which keeps the state's
        structure fixed across jitted steps. ``global_step`` (a Variable of ``params``, or its name)
        is incremented by one after the updates, and schedules read its value from before that
        increment (the state's ``iterations`` when there is no ``global_step``), as TF1's decay
        functions read the ``global_step`` tensor.

        An ``IndexedSlices`` gradient's indices must lie in ``[0, rows)``, or be the padding index
        ``rows`` (dropped). Other concrete indices raise TF's ``indices[i] = v is not in [0, rows)``;
        under ``jit`` they are dropped too (never wrapped onto another row), and
        :func:`jaxgraph.checked` raises the message instead.
        """
        params = VariableIndex.of(params)  # resolved once for every lookup below
        checked, by_name = self._check_grads_and_vars(grads_and_vars, params)
        if opt_state is None:
            opt_state = self.init(params, [n for g, n in checked if g is not None])
        if global_step is None:
            step = opt_state.iterations
        else:
            step = by_name[self._global_step_name(global_step, by_name, params)].value

        def read_global_step(var: Variable | str) -> jax.Array:
            return by_name[self._global_step_name(var, by_name, params)].value

        hyper = self._prepare(step, read_global_step)
        slots = {s: dict(opt_state.slots.get(s, {})) for s in self._slot_names}
        non_slots = dict(opt_state.non_slots)
        new_values: dict[str, Any] = {}
        for grad, var_name in checked:
            if grad is None:
                continue
            value = new_values.get(var_name, by_name[var_name].value)
            var_slots = {}
            for s in self._slot_names:
                if var_name not in slots[s]:
                    slots[s][var_name] = self._slot_initial_value(s, value)
                var_slots[s] = slots[s][var_name]
            apply = self._apply_sparse_duplicate_indices if isinstance(grad, IndexedSlices) else self._apply_dense
            value, var_slots = apply(grad, value, var_slots, cast_hyper(hyper, value.dtype), non_slots)
            new_values[var_name] = value
            for s, v in var_slots.items():
                slots[s][var_name] = v
        non_slots = self._finish(non_slots, hyper)
        self._increment_global_step(global_step, by_name, new_values, params)
        params = replace_values(params, new_values)
        return params, OptimizerState(opt_state.iterations + 1, slots, non_slots)

    def minimize(
        self,
        loss: Callable[[Any], Any],
        params: Any,
        opt_state: OptimizerState | None = None,
        global_step: Variable | str | None = None,
        var_list: Sequence[Variable | str] | None = None,
        gate_gradients: int = GATE_OP,
        aggregation_method: Any = None,
        colocate_gradients_with_ops: bool = False,
        name: str | None = None,
        grad_loss: Any = None,
    ) -> tuple[Any, OptimizerState, jax.Array]:
        """``compute_gradients`` then ``apply_gradients``; returns ``(params, opt_state, loss_value)``."""
        index = VariableIndex.of(params)  # resolved once, passed down to both halves
        loss_value, grads_and_vars, updates = self._gradients_and_state_updates(
            loss, index, var_list, gate_gradients, grad_loss)
        if all(g is None for g, _ in grads_and_vars):
            raise ValueError(
                "No gradients provided for any variable, check your graph for ops that do not support "
                f"gradients, between variables {[v.name for _, v in grads_and_vars]} and loss {loss}."
            )
        if updates:  # variables the loss changed in place (NNX batch statistics, RNG counts) keep the change
            index = VariableIndex(index.replace_values(updates))
        params, opt_state = self.apply_gradients(grads_and_vars, index, opt_state, global_step, name)
        return params, opt_state, loss_value


def cast_hyper(hyper: dict[str, jax.Array], dtype: Any) -> dict[str, jax.Array]:
    """Hyper-parameters cast to a variable's dtype, as TF's ``math_ops.cast(self._lr_t, var.dtype)``."""
    return {k: jnp.asarray(v, dtype) for k, v in hyper.items()}


__all__ = ["GradsAndVars", "Hyper", "Hypers", "Optimizer", "OptimizerState", "Slots", "cast_hyper"]
