"""``ExponentialMovingAverage``: TF1's shadow averages of variables, as explicit state.

TF keeps one shadow variable per averaged variable, named ``"<var>/ExponentialMovingAverage"``, and
``apply`` updates them in place. Here the shadows are the *EMA state*: a dict ``{average name:
Variable}`` of non-trainable Variables carrying TF's names. ``ema.init(tree)`` makes it, ``ema.apply(tree,
ema_state)`` returns the next one, and the step function carries it like the optimizer state (it is a
pytree: it goes through ``jit``, can be donated, and can be put into the parameter tree so a
:class:`~jaxgraph.train.Saver` stores the averages under TF's names).

The update is TF's, in the same form: ``avg -= (avg - value) * (1 - decay)``, with ``decay =
min(decay, (1 + num_updates) / (10 + num_updates))`` when ``num_updates`` is given. As in TF, the average
of a Variable starts at the variable's value and ``zero_debias`` does not apply to it; the average of a
plain array (``tensors={"loss": loss}``) starts at zero, and with ``zero_debias=True`` it is
bias-corrected like TF's ``assign_moving_average(zero_debias=True)`` (two more state entries,
``".../biased"`` and ``".../local_step"``).

>>> import jax.numpy as jnp
>>> import jaxgraph as jg
>>> tree = {"w": jg.Variable(jnp.array([10.0]), name="w")}
>>> ema = ExponentialMovingAverage(0.25)
>>> state = ema.init(tree)
>>> tree = {"w": tree["w"].assign(jnp.array([20.0]))}
>>> state = ema.apply(tree, state)
>>> ema.average_name(tree["w"]), ema.average(state, tree["w"]).value.tolist()
('w/ExponentialMovingAverage', [17.5])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgraph.variable_collections import (
    get_collection,
    global_variables,
    named_variables,
    names_by_id,
    replace_values,
    resolved_name,
    trainable_variables,
)
from jaxgraph.variables import GraphKeys, Variable

__all__ = ["ExponentialMovingAverage"]

EMAState = dict[str, Variable]
_FLOATS = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


class ExponentialMovingAverage:
    """TF1's ``tf.train.ExponentialMovingAverage(decay, num_updates=None, zero_debias=False, name=...)``.

    Args:
      decay: the decay (e.g. ``0.999``).
      num_updates: optional. A number, or the global-step Variable (or its name): then ``apply`` reads
        that variable's current value from the tree it is given, as TF reads the step tensor on each
        run. ``apply(..., num_updates=...)`` overrides it for one call.
      zero_debias: bias-correct the averages of plain arrays (``tensors=``), as TF.
      name: the suffix of the average names.
    """

    def __init__(self, decay: Any, num_updates: Any = None, zero_debias: bool = False,
                 name: str = "ExponentialMovingAverage") -> None:
        self._decay = decay
        self._num_updates = num_updates
        self._zero_debias = zero_debias
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (f"ExponentialMovingAverage(decay={self._decay!r}, num_updates={self._num_updates!r}, "
                f"zero_debias={self._zero_debias!r}, name={self._name!r})")

    # -- names --------------------------------------------------------------------------------------
    def average_name(self, var: Variable | str) -> str:
        """``"<var name>/<name>"``: the name of ``var``'s average (TF's ``average_name``)."""
        if isinstance(var, str):
            return f"{var}/{self._name}"
        if isinstance(var, Variable) and var.name is not None:
            return f"{var.name}/{self._name}"
        raise ValueError(
            f"average_name needs the variable's name; {var!r} has none. Pass its name, or a Variable "
            "from jaxgraph.trainable_variables(tree)."
        )

    def average(self, ema_state: Mapping[str, Variable], var: Variable | str) -> Variable | None:
        """The average of ``var`` (a Variable named ``"<var>/<name>"``), or ``None`` if it has none."""
        return ema_state.get(self.average_name(var))

    # -- state ----------------------------------------------------------------------------------------
    def _targets(self, tree: Any, var_list: Sequence[Variable | str] | None,
                 tensors: Mapping[str, Any] | None) -> list[tuple[str, jax.Array, bool]]:
        """``(name, value, is_variable)`` for every variable and array to average."""
        by_name = {resolved_name(v): v for v in named_variables(tree)}
        by_id = names_by_id(tree)
        selected: list[str]
        if var_list is None:
            selected = [resolved_name(v) for v in trainable_variables(tree)]
        else:
            if isinstance(var_list, (Variable, str)):
                var_list = [var_list]
            selected = []
            for entry in var_list:
                if isinstance(entry, Variable):
                    found = by_id.get(id(entry)) or entry.name
                    if found is None:
                        raise ValueError(f"var_list entry {entry!r} has no name and is not a leaf of the tree")
                    name = found
                elif isinstance(entry, str):
                    name = entry
                else:
                    raise TypeError(
                        f"var_list entries must be Variables or names, got {entry!r}; average plain arrays "
                        "with tensors={name: array}"
                    )
                if name not in by_name:
                    raise ValueError(f"var_list entry {name!r} is not a variable of the tree")
                selected.append(name)
        targets: list[tuple[str, jax.Array, bool]] = [(n, by_name[n].value, True) for n in dict.fromkeys(selected)]
        for name, value in (tensors or {}).items():
            if name in by_name:
                raise ValueError(f"tensors key {name!r} is also a variable of the tree; give the array another name")
            targets.append((name, jnp.asarray(value), False))
        for name, value, _ in targets:
            if value.dtype not in _FLOATS:
                raise TypeError(f"The variables must be half, float, or double: {name}")
        return targets

    def _shadow(self, name: str, value: jax.Array) -> Variable:
        return Variable.from_value(value, name, False, (GraphKeys.GLOBAL_VARIABLES,))

    def _create(self, state: EMAState, name: str, value: jax.Array, is_variable: bool) -> None:
        avg_name = self.average_name(name)
        if avg_name in state:
            return
        # A Variable's average starts at its value; a plain array's at zero (TF: its value is not known yet).
        state[avg_name] = self._shadow(avg_name, value if is_variable else jnp.zeros_like(value))
        if self._zero_debias and not is_variable:
            state[f"{avg_name}/biased"] = self._shadow(f"{avg_name}/biased", jnp.zeros_like(value))
            state[f"{avg_name}/local_step"] = self._shadow(f"{avg_name}/local_step", jnp.zeros((), value.dtype))

    def init(self, tree: Any, var_list: Sequence[Variable | str] | None = None,
             tensors: Mapping[str, Any] | None = None) -> EMAState:
        """A fresh EMA state for ``var_list`` (default: the tree's trainable variables) and ``tensors``.

        Make it up front (as ``opt.init``) so a jitted step sees the same state structure every time.
        """
        state: EMAState = {}
        for name, value, is_variable in self._targets(tree, var_list, tensors):
            self._create(state, name, value, is_variable)
        return state

    def _resolve_num_updates(self, tree: Any, num_updates: Any) -> Any:
        if num_updates is None:
            num_updates = self._num_updates
        if isinstance(num_updates, (Variable, str)):
            if isinstance(num_updates, Variable):
                name = names_by_id(tree).get(id(num_updates)) or num_updates.name
            else:
                name = num_updates
            by_name = {v.name: v for v in named_variables(tree)}
            if name not in by_name:
                raise ValueError(f"num_updates names the variable {name!r}, which is not in the tree given to apply")
            return by_name[name].value
        return num_updates

    def apply(self, tree: Any, ema_state: Mapping[str, Variable] | None = None,
              var_list: Sequence[Variable | str] | None = None, tensors: Mapping[str, Any] | None = None,
              num_updates: Any = None) -> EMAState:
        """One update of the averages of ``var_list`` (default: the trainable variables) and ``tensors``
        towards their current values; returns the new EMA state.

        Missing averages are created first (get-or-create, as TF); averages not named this time are kept
        unchanged.
        """
        state = dict(ema_state or {})
        decay = jnp.asarray(self._decay, jnp.float32)
        n = self._resolve_num_updates(tree, num_updates)
        if n is not None:
            n = jnp.asarray(n).astype(jnp.float32)
            decay = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
        one_minus_decay = 1.0 - decay
        for name, value, is_variable in self._targets(tree, var_list, tensors):
            self._create(state, name, value, is_variable)
            avg_name = self.average_name(name)
            d = one_minus_decay.astype(value.dtype)
            if self._zero_debias and not is_variable:
                biased = state[f"{avg_name}/biased"].value
                biased = biased - (biased - value) * d
                local_step = state[f"{avg_name}/local_step"].value + 1
                # TF gets `1 - decay` here, so it raises `1.0 - (1 - decay)` to the step.
                bias_factor = 1 - jnp.power(1.0 - d, local_step)
                state[f"{avg_name}/biased"] = self._shadow(f"{avg_name}/biased", biased)
                state[f"{avg_name}/local_step"] = self._shadow(f"{avg_name}/local_step", local_step)
                state[avg_name] = self._shadow(avg_name, biased / bias_factor)
            else:
                avg = state[avg_name].value
                state[avg_name] = self._shadow(avg_name, avg - (avg - value) * d)
        return state

    # -- using the averages -----------------------------------------------------------------------------
    def variables_to_restore(self, tree: Any, moving_avg_variables: Sequence[Variable] | None = None
                             ) -> dict[str, Variable]:
        """TF's name map ``{checkpoint name: Variable}`` that restores averages into the variables.

        Every variable of ``moving_avg_variables`` (default: the tree's trainable variables and its
        ``MOVING_AVERAGE_VARIABLES`` collection) is mapped from its average's name; every other global
        variable from its own name. It is an ``assignment_map`` for restoring a TF checkpoint
        (``Saver().restore(tree, None, path, assignment_map=ema.variables_to_restore(tree))``, TF1's
        evaluation recipe); with jaxgraph's own checkpoints, restore the EMA state and use
        :meth:`averaged_tree`.
        """
        if moving_avg_variables is None:
            moving_avg_variables = trainable_variables(tree) + get_collection(tree, GraphKeys.MOVING_AVERAGE_VARIABLES)
        name_map: dict[str, Variable] = {}
        averaged_names = set()
        for v in moving_avg_variables:
            name_map[self.average_name(v)] = v
            averaged_names.add(v.name)
        for v in global_variables(tree):
            if v.name not in averaged_names and v.name not in name_map:
                name_map[str(v.name)] = v
        return name_map

    def averaged_tree(self, tree: Any, ema_state: Mapping[str, Variable]) -> Any:
        """``tree`` with each variable that has an average holding that average (for evaluation).

        What TF1 gets by restoring ``variables_to_restore()`` into an evaluation graph. Variables without
        an average keep their values.
        """
        values: dict[str, jax.Array] = {}
        for v in named_variables(tree):
            avg = ema_state.get(self.average_name(v))
            if avg is not None:
                if avg.value.shape != v.value.shape:
                    raise ValueError(f"The average of {v.name!r} has shape {avg.value.shape}, the variable {v.shape}")
                values[resolved_name(v)] = avg.value.astype(v.dtype)
        return replace_values(tree, values)
