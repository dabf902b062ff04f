"""The optimizer contract table: every optimizer in ``jaxgraph.train`` joins it with one row.

``tests/test_optimizers.py`` runs every row through the same contract (dense and sparse, ``None``
gradients, untouched rows, jit, slot names, TF's slot-variable names, the global step, schedules,
dtypes); ``tests/parity/test_optimizer_parity.py`` checks each row's hard-coded ``expected`` values
and names against real TensorFlow. Each row sets every hyper-parameter away from its default, so an
argument that an optimizer ignores changes the numbers.

``expected`` holds TF's values after ``DENSE_STEPS`` dense steps of the fixture below (``var0``,
``var1``, and every slot of ``var0`` under its slot name), produced by TensorFlow 2.21.0
(``tf.compat.v1``, graph mode, float32) with ``python tests/parity/tf_optimizer_vectors.py``, which
prints this table's values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxgraph.train import (
    AdadeltaOptimizer,
    AdagradDAOptimizer,
    AdagradOptimizer,
    AdamOptimizer,
    FtrlOptimizer,
    GradientDescentOptimizer,
    LazyAdamOptimizer,
    MomentumOptimizer,
    Optimizer,
    ProximalAdagradOptimizer,
    ProximalGradientDescentOptimizer,
    RMSPropOptimizer,
)

# The dense fixture: TF's standard two variables, uneven gradients, a global step from 0.
DENSE_VARS = ([1.0, 2.0], [3.0, 4.0])
DENSE_GRADS = ([0.1, 0.2], [0.01, 0.02])
DENSE_STEPS = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    id: str = dataclasses.field(kw_only=False)
    cls: type[Optimizer] = dataclasses.field(kw_only=False)
    kwargs: dict[str, Any] = dataclasses.field(kw_only=False)  # TF's names; "global_step": the tree's step
    slots: tuple[str, ...]  # get_slot_names()
    initial: dict[str, float]  # each slot's initial fill value
    variables: tuple[str, ...]  # TF's names of opt.variables() for var0 and var1
    lazy: bool  # a sparse update leaves untouched rows and their slots bit-identical
    float16: bool  # TF has float16 kernels for it
    tf: str  # the tf.compat.v1.train class whose dense update it follows
    expected: dict[str, list[float]]

    def make(self, **overrides: Any) -> Optimizer:
        return self.cls(**{**self.kwargs, **overrides})


def _names(op: str, n_slots: int, non_slots: tuple[str, ...] = ()) -> tuple[str, ...]:
    suffixes = [""] + [f"_{i}" for i in range(1, n_slots)]
    return non_slots + tuple(f"var{v}/{op}{s}" for v in (0, 1) for s in suffixes)


_ADAM = dict(learning_rate=0.05, beta1=0.8, beta2=0.99, epsilon=1e-4)
_ADAM_SLOTS = dict(slots=("m", "v"), initial={"m": 0.0, "v": 0.0}, lazy=False, float16=True, tf="AdamOptimizer",
                   expected={"var0": [0.851135492, 1.85056996], "var1": [2.86059737, 3.85550237],
                             "m": [0.0487999991, 0.0975999981], "v": [0.000297009741, 0.00118803896]})
_FTRL_SLOTS = dict(slots=("accum", "linear"), initial={"accum": 0.2, "linear": 0.0},
                   variables=_names("Ftrl", 2), lazy=True, float16=True, tf="FtrlOptimizer")
_RMSPROP = dict(learning_rate=0.05, decay=0.8, momentum=0.5, epsilon=1e-4)

CASES = [
    Case("gd", GradientDescentOptimizer, dict(learning_rate=0.5),
         slots=(), initial={}, variables=(), lazy=True, float16=True, tf="GradientDescentOptimizer",
         expected={"var0": [0.849999964, 1.69999993], "var1": [2.98499966, 3.97000003]}),
    Case("momentum", MomentumOptimizer, dict(learning_rate=0.5, momentum=0.7),
         slots=("momentum",), initial={"momentum": 0.0}, variables=_names("Momentum", 1), lazy=True, float16=True,
         tf="MomentumOptimizer",
         expected={"var0": [0.755500019, 1.51100004], "var1": [2.9755497, 3.95110011],
                   "momentum": [0.219000012, 0.438000023]}),
    Case("nesterov", MomentumOptimizer, dict(learning_rate=0.5, momentum=0.7, use_nesterov=True),
         slots=("momentum",), initial={"momentum": 0.0}, variables=_names("Momentum", 1), lazy=True, float16=True,
         tf="MomentumOptimizer",
         expected={"var0": [0.678850055, 1.35770011], "var1": [2.96788478, 3.93577003],
                   "momentum": [0.219000012, 0.438000023]}),
    Case("adam", AdamOptimizer, _ADAM, variables=_names("Adam", 2, ("beta1_power", "beta2_power")), **_ADAM_SLOTS),
    Case("lazy_adam", LazyAdamOptimizer, _ADAM, variables=_names("Adam", 2, ("beta1_power", "beta2_power")),
         **{**_ADAM_SLOTS, "lazy": True}),
    Case("adagrad", AdagradOptimizer, dict(learning_rate=0.5, initial_accumulator_value=0.3),
         slots=("accumulator",), initial={"accumulator": 0.3}, variables=_names("Adagrad", 1), lazy=True,
         float16=True, tf="AdagradOptimizer",
         expected={"var0": [0.734770238, 1.51197672], "var1": [2.97262311, 3.94530082],
                   "accumulator": [0.329999983, 0.419999987]}),
    Case("rmsprop", RMSPropOptimizer, _RMSPROP,
         slots=("momentum", "rms"), initial={"rms": 1.0, "momentum": 0.0}, variables=_names("RMSProp", 2),
         lazy=True, float16=True, tf="RMSPropOptimizer",
         expected={"var0": [0.973928034, 1.9482764], "var1": [2.99738574, 3.99477196],
                   "momentum": [0.0114656929, 0.022676535], "rms": [0.516880035, 0.531520069]}),
    Case("rmsprop_centered", RMSPropOptimizer, {**_RMSPROP, "centered": True},
         slots=("mg", "momentum", "rms"), initial={"rms": 1.0, "mg": 0.0, "momentum": 0.0},
         variables=_names("RMSProp", 3), lazy=True, float16=True, tf="RMSPropOptimizer",
         expected={"var0": [0.97390008, 1.94805872], "var1": [2.99738574, 3.99477148],
                   "mg": [0.0487999991, 0.0975999981], "momentum": [0.0114852544, 0.0228284653],
                   "rms": [0.516880035, 0.531520069]}),
    Case("ftrl", FtrlOptimizer,
         dict(learning_rate=0.5, learning_rate_power=-0.7, initial_accumulator_value=0.2,
              l1_regularization_strength=0.01, l2_regularization_strength=0.02,
              l2_shrinkage_regularization_strength=0.05, beta=0.3),
         **_FTRL_SLOTS,
         expected={"var0": [-0.252750069, -0.392969996], "var1": [-0.212568387, -0.298054695],
                   "accum": [0.230000019, 0.319999993], "linear": [0.352448672, 0.615493536]}),
    # learning_rate_power -0.5 takes TF's sqrt fast path; no shrinkage selects ApplyFtrl, not ApplyFtrlV2.
    Case("ftrl_sqrt", FtrlOptimizer,
         dict(learning_rate=0.5, initial_accumulator_value=0.2, l1_regularization_strength=0.01,
              l2_regularization_strength=0.02, beta=0.3),
         **_FTRL_SLOTS,
         expected={"var0": [-0.169531405, -0.242563635], "var1": [-0.0125924395, -0.030214591],
                   "accum": [0.230000019, 0.319999993], "linear": [0.281108916, 0.439670146]}),
    Case("adadelta", AdadeltaOptimizer, dict(learning_rate=0.5, rho=0.8, epsilon=1e-4),
         slots=("accum", "accum_update"), initial={"accum": 0.0, "accum_update": 0.0},
         variables=_names("Adadelta", 2), lazy=True, float16=True, tf="AdadeltaOptimizer",
         expected={"var0": [0.965711236, 1.96505082], "var1": [2.98612237, 3.97698092],
                   "accum": [0.00488000037, 0.0195200015], "accum_update": [0.000258521992, 0.000268647622]}),
    Case("proximal_gd", ProximalGradientDescentOptimizer,
         dict(learning_rate=0.5, l1_regularization_strength=0.05, l2_regularization_strength=0.1),
         slots=(), initial={}, variables=(), lazy=True, float16=False, tf="ProximalGradientDescentOptimizer",
         expected={"var0": [0.659594119, 1.3872695], "var1": [2.50981498, 3.36003685]}),
    Case("proximal_adagrad", ProximalAdagradOptimizer,
         dict(learning_rate=0.5, initial_accumulator_value=0.2, l1_regularization_strength=0.05,
              l2_regularization_strength=0.1),
         slots=("accumulator",), initial={"accumulator": 0.2}, variables=_names("ProximalAdagrad", 1), lazy=True,
         float16=False, tf="ProximalAdagradOptimizer",
         expected={"var0": [0.34461087, 0.927759409], "var1": [2.01989555, 2.72196102],
                   "accumulator": [0.230000019, 0.319999993]}),
    Case("adagrad_da", AdagradDAOptimizer,
         dict(learning_rate=0.5, global_step="global_step", initial_gradient_squared_accumulator_value=0.2,
              l1_regularization_strength=0.01, l2_regularization_strength=0.1),
         slots=("gradient_accumulator", "gradient_squared_accumulator"),
         initial={"gradient_accumulator": 0.0, "gradient_squared_accumulator": 0.2},
         variables=_names("AdagradDA", 2), lazy=True, float16=False, tf="AdagradDAOptimizer",
         expected={"var0": [-0.21442759, -0.398219705], "var1": [0.0, -0.0250604246],
                   "gradient_accumulator": [0.300000012, 0.600000024],
                   "gradient_squared_accumulator": [0.230000019, 0.319999993]}),
]
CASE_IDS = [c.id for c in CASES]

__all__ = ["CASES", "CASE_IDS", "DENSE_GRADS", "DENSE_STEPS", "DENSE_VARS", "Case"]
