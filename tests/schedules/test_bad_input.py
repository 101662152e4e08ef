"""Every parameter of every schedule rejects bad values at build time, naming itself.

The table is checked against the factories' signatures: a new factory, or a new
parameter, fails ``test_table_covers_every_parameter_of_every_schedule`` until it has rows,
and every parameter needs a row of each kind its type calls for (NaN, infinity, bool,
str, None, out of range, beyond float32 or beyond the int64 headroom of ``2**62``).
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import numpy as np
import pytest

import mlx_schedules as ms

NAN, INF = math.nan, math.inf

# Bad values by kind of parameter: (label, value, error).
REAL = [("nan", NAN, ValueError), ("inf", INF, ValueError), ("-inf", -INF, ValueError),
        ("str", "0.1", TypeError), ("bool", True, TypeError), ("none", None, TypeError),
        ("huge", 1e39, ValueError), ("huge-negative", -3.5e38, ValueError),
        ("huge-int", 10**400, ValueError)]
POSITIVE = REAL + [("zero", 0.0, ValueError), ("negative", -1.0, ValueError)]
NONNEGATIVE = REAL + [("negative", -0.1, ValueError)]
# Integers beyond the headroom 2**62: just past it, past int64, and uint64's largest.
HUGE_INT = [("huge", 2**62 + 1, ValueError), ("huge-int64", 2**63, ValueError),
            ("huge-uint64", 2**64 - 1, ValueError)]
LENGTH = [("zero", 0, ValueError), ("negative", -3, ValueError), ("float", 10.0, TypeError),
          ("fractional", 2.5, TypeError), ("str", "10", TypeError), ("bool", True, TypeError),
          ("nan", NAN, TypeError), ("none", None, TypeError)] + HUGE_INT
COUNT = [("negative", -1, ValueError), ("float", 1.0, TypeError), ("str", "1", TypeError),
         ("bool", False, TypeError), ("none", None, TypeError)] + HUGE_INT
BOOL = [("int", 1, TypeError), ("str", "yes", TypeError), ("none", None, TypeError)]
FRACTION = REAL + [("zero", 0.0, ValueError), ("one", 1.0, ValueError),
                   ("negative", -0.2, ValueError), ("above-one", 1.5, ValueError)]


def choice(*extra):
    return [("unknown", "bogus", ValueError), ("case", extra[0].upper(), ValueError),
            ("int", 1, TypeError), ("none", None, TypeError)]


INCREASING = [("decreasing", [5, 3], ValueError), ("repeated", [3, 3], ValueError),
              ("negative", [-1, 4], ValueError), ("float", [1.5, 4], TypeError),
              ("str", "12", TypeError), ("bool", [True, 4], TypeError),
              ("none", None, TypeError), ("huge", [5, 2**62 + 1], ValueError),
              ("huge-int64", [5, 2**63], ValueError)]

# cyclic_lr's scale_fn: a function of an mlx int64 array, probed when the schedule is built
SCALE_FN = [("str", "exp", TypeError), ("int", 1, TypeError),
            ("raises", lambda c: c.item(), ValueError),          # .item() of two cycles
            ("nan", lambda c: c * math.nan, ValueError),
            ("inf", lambda c: 1.0 / (c - c), ValueError)]
# piecewise_interpolate's {step: scale}
MAPPING = [("str", "10:0.5", TypeError), ("list", [(10, 0.5)], TypeError),
           ("key-zero", {0: 0.5}, ValueError), ("key-negative", {-5: 0.5}, ValueError),
           ("key-float", {1.5: 0.5}, TypeError), ("key-str", {"ten": 0.5}, TypeError),
           ("key-bool", {True: 0.5}, TypeError), ("key-huge", {2**62 + 1: 0.5}, ValueError),
           ("duplicate", {5: 0.5, "5": 0.5}, ValueError),
           ("scale-nan", {5: NAN}, ValueError), ("scale-inf", {5: INF}, ValueError),
           ("scale-negative", {5: -0.5}, ValueError), ("scale-str", {5: "x"}, TypeError),
           ("scale-huge", {5: 1e39}, ValueError),
           ("level-overflow", {5: 1e30, 6: 1e30}, ValueError)]
# multiply(*factors): each row is the whole tuple of factors
FACTORS = [("empty", [], ValueError), ("str", [ms.constant(0.1), "x"], TypeError),
           ("none", [None], TypeError), ("bool", [True], TypeError),
           ("nan", [NAN], ValueError), ("inf", [ms.constant(0.1), INF], ValueError),
           ("huge", [1e39], ValueError), ("product-overflow", [1e30, 1e30], ValueError),
           # schedules' values multiply too: each knows the largest magnitude it reaches
           ("schedule-product-overflow", [ms.constant(1e20), ms.constant(1e20)], ValueError),
           ("number-times-schedule-overflow", [ms.constant(2.0), 3e38], ValueError)]

# factory: (valid keyword arguments, {parameter: bad values})
TABLE = {
    "constant": ({"value": 0.1}, {"value": REAL}),
    "exponential_decay": (
        {"init": 0.1, "decay_rate": 0.9},
        {"init": REAL, "decay_rate": POSITIVE + [
            # growing without a ceiling overflows float32 long before step 2**62
            ("overflow-no-end", 1.01, ValueError)],
         "decay_steps": LENGTH, "staircase": BOOL, "begin": COUNT,
         "end": [r for r in REAL if r[0] != "none"]}),
    "step_decay": ({"init": 0.1, "decay_rate": 0.5, "step_size": 10},
                   {"init": REAL, "decay_rate": POSITIVE + [("overflow", 1.5, ValueError)],
                    "step_size": LENGTH}),
    "multistep_decay": ({"init": 0.1, "milestones": [3, 6]},
                        {"init": REAL, "milestones": INCREASING + [("empty", [], ValueError)],
                         "gamma": POSITIVE + [("overflow", 1e30, ValueError)]}),
    "cosine_decay": ({"init": 0.1, "decay_steps": 100},
                     {"init": REAL, "decay_steps": LENGTH, "end": REAL, "exponent": POSITIVE,
                      "k_decay": POSITIVE}),
    "linear_schedule": ({"init": 0.0, "end": 0.1, "steps": 10},
                        {"init": REAL, "end": REAL, "steps": LENGTH}),
    "polynomial_decay": ({"init": 0.1, "decay_steps": 100},
                         {"init": REAL, "decay_steps": LENGTH, "end": REAL, "power": POSITIVE,
                          "cycle": BOOL, "k_decay": POSITIVE}),
    "inverse_time_decay": ({"init": 0.1, "decay_steps": 10, "decay_rate": 0.5},
                           {"init": REAL, "decay_steps": LENGTH, "decay_rate": NONNEGATIVE,
                            "staircase": BOOL}),
    "piecewise_constant": ({"boundaries": [3, 6], "values": [1.0, 0.5, 0.1]},
                           {"boundaries": INCREASING, "values": [
                               ("nan", [1.0, NAN, 0.1], ValueError),
                               ("inf", [1.0, 0.5, INF], ValueError),
                               ("huge", [1.0, 1e39, 0.1], ValueError),
                               ("str-item", [1.0, "a", 0.1], TypeError),
                               ("str", "abc", TypeError),
                               ("too-few", [1.0, 0.5], ValueError),
                               ("too-many", [1.0, 0.5, 0.1, 0.0], ValueError)]}),
    "cyclic_exponential_decay": (
        {"init": 0.1, "decay_rate": 0.99, "cycle_length": 10},
        {"init": REAL, "decay_rate": POSITIVE + [("overflow", 1.001, ValueError)],
         "cycle_length": LENGTH, "end": REAL, "decay_steps": LENGTH}),
    "one_cycle": (
        {"max_lr": 0.1, "total_steps": 100},
        {"max_lr": POSITIVE, "total_steps": LENGTH, "pct_start": FRACTION,
         "anneal_strategy": choice("cos"), "div_factor": POSITIVE,
         "final_div_factor": POSITIVE, "three_phase": BOOL}),
    "one_cycle_momentum": (
        {"total_steps": 100},
        {"total_steps": LENGTH, "base_momentum": NONNEGATIVE + [("above-max", 0.99, ValueError)],
         "max_momentum": NONNEGATIVE + [("below-base", 0.5, ValueError)],
         "pct_start": FRACTION, "anneal_strategy": choice("linear"), "three_phase": BOOL}),
    "cyclic_lr": (
        {"base_lr": 0.01, "max_lr": 0.1},
        {"base_lr": REAL + [("above-max", 0.2, ValueError)],
         "max_lr": REAL + [("below-base", 0.001, ValueError)],
         "step_size_up": LENGTH + [("period-overflow", 2**62, ValueError)],
         "step_size_down": [r for r in LENGTH if r[0] != "none"],
         "mode": choice("triangular"),
         "gamma": POSITIVE + [("above-one", 1.01, ValueError)],
         "scale_fn": SCALE_FN,
         # without a scale_fn, scale_mode has nothing to choose
         "scale_mode": choice("iterations") + [("without-scale_fn", "iterations", ValueError)]}),
    "cyclic_momentum": (
        {"base_momentum": 0.8, "max_momentum": 0.9},
        {"base_momentum": NONNEGATIVE + [("above-max", 0.95, ValueError)],
         "max_momentum": NONNEGATIVE + [("below-base", 0.7, ValueError)],
         "step_size_up": LENGTH, "step_size_down": [r for r in LENGTH if r[0] != "none"],
         "mode": choice("exp_range"),
         "gamma": POSITIVE + [("above-one", 2.0, ValueError)]}),
    "cosine_restarts": (
        {"init": 0.1, "first_decay_steps": 10},
        {"init": REAL, "first_decay_steps": LENGTH,
         "t_mul": REAL + [("below-one", 0.5, ValueError), ("zero", 0.0, ValueError),
                          # too close to 1: more cycles before 2**62 than a table holds
                          ("near-one", 1.000001, ValueError)],
         "m_mul": NONNEGATIVE + [("overflow", 1e10, ValueError)], "end": REAL,
         "cycle_limit": [r for r in LENGTH if r[0] != "none"]}),
    "warmup": (
        {"schedule": ms.constant(0.1), "steps": 10},
        {"schedule": [("number", 0.1, TypeError), ("str", "cosine", TypeError),
                      ("none", None, TypeError),
                      ("peak-nan", lambda step: mx.full(step.shape, NAN), ValueError),
                      ("peak-array", lambda step: mx.zeros((2,)), ValueError)],
         "steps": LENGTH, "init": REAL, "shape": choice("log")}),
    "warmup_stable_decay": (
        {"peak": 0.1, "total_steps": 100, "warmup_steps": 10, "decay_steps": 20},
        {"peak": REAL, "total_steps": LENGTH + [("too-short", 29, ValueError)],
         "warmup_steps": COUNT + [("too-long", 81, ValueError)],
         "decay_steps": LENGTH + [("too-long", 91, ValueError)],
         "init": REAL, "end": REAL, "decay_shape": choice("cosine"),
         "warmup_shape": choice("log")}),
    "join_schedules": (
        {"schedules": [ms.constant(0.1), ms.constant(0.2)], "boundaries": [5]},
        {"schedules": [("empty", [], ValueError), ("str", "ab", TypeError),
                       ("not-callable", [ms.constant(0.1), 0.2], TypeError),
                       ("none", None, TypeError)],
         "boundaries": INCREASING[2:] + [("too-many", [5, 6], ValueError),
                                         ("too-few", [], ValueError)]}),
    "inverse_sqrt": ({"init": 0.1, "warmup_steps": 10},
                     {"init": REAL, "warmup_steps": COUNT,
                      "timescale": [r for r in LENGTH if r[0] != "none"]}),
    "tanh_decay": ({"init": 0.1, "decay_steps": 100},
                   {"init": REAL, "decay_steps": LENGTH, "end": REAL, "lower": REAL,
                    "upper": REAL}),
    "piecewise_interpolate": ({"init": 0.1, "boundaries_and_scales": {10: 0.5, 20: 0.1}},
                              {"init": REAL, "boundaries_and_scales": MAPPING,
                               "interpolate": choice("cosine")}),
    "multiply": ({"factors": [ms.constant(0.1), 2.0]}, {"factors": FACTORS}),
    "with_noise": (
        {"schedule": ms.constant(0.1), "std": 0.1, "start": 5},
        {"schedule": [("number", 0.1, TypeError), ("str", "cosine", TypeError),
                      ("none", None, TypeError),
                      # 3e38 times up to 1 + pct = 1.67 is beyond float32
                      ("values-overflow", ms.constant(3e38), ValueError)],
         "std": NONNEGATIVE, "pct": REAL + [("zero", 0.0, ValueError),
                                            ("negative", -0.1, ValueError),
                                            ("above-one", 1.5, ValueError)],
         "start": COUNT, "end": [r for r in LENGTH if r[0] != "none"] + [
             ("at-start", 5, ValueError), ("before-start", 3, ValueError)],
         "seed": COUNT}),
    "power_schedule": (
        {"batch_size": 8, "tokens_per_step": 8 * 256, "warmup_steps": 10, "decay_steps": 20,
         "total_steps": 100},
        {"batch_size": LENGTH + [("above-tokens", 8 * 256 + 1, ValueError)],
         "tokens_per_step": LENGTH + [("below-batch", 7, ValueError)],
         "a": POSITIVE, "b": REAL + [("zero", 0.0, ValueError), ("positive", 0.5, ValueError)],
         "max_lr": POSITIVE, "warmup_steps": COUNT + [("too-long", 81, ValueError)],
         "decay_steps": COUNT + [("too-long", 91, ValueError)],
         "total_steps": [r for r in LENGTH if r[0] != "none"] + [("too-short", 29, ValueError)],
         "decay_shape": choice("linear")}),
    "range_sweep": (
        {"min_lr": 1e-5, "max_lr": 1.0, "steps": 100},
        {"min_lr": POSITIVE + [("above-max", 2.0, ValueError)],
         "max_lr": POSITIVE + [("below-min", 1e-6, ValueError)],
         "steps": LENGTH + [("one", 1, ValueError)], "mode": choice("linear")}),
}

# join_schedules checks the increasing order of three boundaries, so it gets three schedules.
JOIN3 = ({"schedules": [ms.constant(0.1)] * 3, "boundaries": [5, 9]},
         {"boundaries": [("decreasing", [9, 5], ValueError), ("repeated", [5, 5], ValueError)]})

CASES = []
for factory_name, (valid, parameters) in [*TABLE.items(), ("join_schedules", JOIN3)]:
    for parameter, bad_values in parameters.items():
        for label, value, error in bad_values:
            CASES.append(pytest.param(factory_name, valid, parameter, value, error,
                                      id=f"{factory_name}-{parameter}-{label}"))


@pytest.mark.parametrize("factory_name, valid, parameter, value, error", CASES)
def test_bad_value_is_rejected_naming_the_parameter(factory_name, valid, parameter, value,
                                                    error):
    factory = getattr(ms, factory_name)
    build(factory, valid)  # the valid arguments build
    with pytest.raises(error, match=re.escape(parameter)):
        build(factory, {**valid, parameter: value})


def build(factory, arguments):
    """Call a factory with keyword arguments, passing a variadic one (``*factors``) by
    position."""
    import inspect

    arguments = dict(arguments)
    for name, spec in inspect.signature(factory).parameters.items():
        if spec.kind is inspect.Parameter.VAR_POSITIONAL and name in arguments:
            return factory(*arguments.pop(name), **arguments)
    return factory(**arguments)


# The kinds of bad value each type of parameter must be tried with (by row label).
REQUIRED = {
    "float": {"nan", "inf", "str", "bool", "none", "huge"},
    "float | None": {"nan", "inf", "str", "bool", "huge"},
    "int": {"str", "bool", "none", "float", "negative", "huge", "huge-uint64"},
    "int | None": {"str", "bool", "float", "negative", "huge", "huge-uint64"},
    "bool": {"int", "str", "none"},
    "str": {"unknown", "int", "none"},
    "Sequence[int]": {"str", "none", "float", "negative", "huge"},
    "Sequence[float]": {"nan", "inf", "str", "huge"},
    "Callable": {"str", "none"},
    "Callable | None": {"str", "int", "raises", "nan"},
    "Callable | float": {"empty", "str", "none", "nan", "huge"},
    "Mapping[int, float] | None": {"str", "key-zero", "key-float", "key-str", "scale-nan",
                                   "scale-negative", "scale-huge"},
    "Sequence[Callable]": {"str", "none"},
}


def test_table_covers_every_parameter_of_every_schedule():
    import inspect

    public = {name for name in ms.__all__
              if isinstance(getattr(ms, name), type(ms.constant))
              and inspect.signature(getattr(ms, name)).return_annotation == "Schedule"}
    public -= {"from_config", "lr_range_test"}   # a rebuilder, and range_sweep's alias
    assert set(ms.schedule_names()) == public
    assert set(TABLE) == public
    for name in ms.schedule_names():
        parameters = inspect.signature(getattr(ms, name)).parameters
        assert set(parameters) == set(TABLE[name][1]), name
        for parameter, spec in parameters.items():
            required = REQUIRED[spec.annotation]
            labels = {label for label, _, _ in TABLE[name][1][parameter]}
            assert required <= labels, f"{name}.{parameter} lacks {sorted(required - labels)}"


@pytest.mark.parametrize("kwargs", [
    {"total_steps": 2, "pct_start": 0.3},               # phase 1 would end at step -0.4
    {"total_steps": 10, "pct_start": 0.1},              # phase 1 would end at step 0
    {"total_steps": 10, "pct_start": 0.55, "three_phase": True},  # phase 3: 9 to 9
])
def test_one_cycle_phases_without_length(kwargs):
    with pytest.raises(ValueError, match="pct_start"):
        ms.one_cycle(0.1, **kwargs)
    with pytest.raises(ValueError, match="pct_start"):
        ms.one_cycle_momentum(**kwargs)


def test_scale_fn_replaces_mode_and_gamma():
    with pytest.raises(ValueError, match=r"scale_fn replaces mode and gamma \(mode="
                                         r"'triangular2'"):
        ms.cyclic_lr(0.01, 0.1, scale_fn=lambda c: 1.0 / c, mode="triangular2")
    with pytest.raises(ValueError, match=r"scale_fn replaces mode and gamma .*gamma=0.9"):
        ms.cyclic_lr(0.01, 0.1, scale_fn=lambda c: 1.0 / c, gamma=0.9)


def test_bad_scale_fn_message_says_what_it_did():
    with pytest.raises(ValueError, match=r"scale_fn must return finite numbers; on \[1, 2\]"):
        ms.cyclic_lr(0.01, 0.1, scale_fn=lambda c: mx.log(c - 1))
    with pytest.raises(ValueError, match=r"called on \[0, 1\] it raised"):
        ms.cyclic_lr(0.01, 0.1, scale_fn=lambda t: t.item(), scale_mode="iterations")


def test_message_names_the_value_received():
    with pytest.raises(ValueError, match=r"decay_steps must be a positive integer, got -3"):
        ms.cosine_decay(0.1, -3)
    with pytest.raises(TypeError, match=r"total_steps must be an integer, got 100.0 \(float\)"):
        ms.one_cycle(0.1, 100.0)
    with pytest.raises(ValueError, match=r"mode must be one of \['triangular', 'triangular2', "
                                         r"'exp_range'\], got 'tri'"):
        ms.cyclic_lr(0.01, 0.1, mode="tri")


@pytest.mark.parametrize("build, match", [
    # the difference init - end scales every value: it must fit in float32 too
    (lambda: ms.cosine_decay(3e38, 10, -3e38), r"init - end must be representable"),
    (lambda: ms.linear_schedule(-2e38, 2e38, 10), r"init - end"),
    (lambda: ms.polynomial_decay(3e38, 10, -1e38), r"init - end"),
    (lambda: ms.cyclic_exponential_decay(3e38, 0.9, 10, end=-1e38), r"init - end"),
    (lambda: ms.cosine_restarts(3e38, 10, end=-1e38), r"init - end"),
    (lambda: ms.cyclic_lr(-2e38, 2e38), r"max_lr - base_lr"),
    (lambda: ms.warmup_stable_decay(3e38, 10, warmup_steps=2, decay_steps=2, init=-1e38),
     r"peak - init"),
    (lambda: ms.warmup_stable_decay(3e38, 10, warmup_steps=2, decay_steps=2, end=-1e38),
     r"peak - end"),
    (lambda: ms.warmup(ms.constant(3e38), 10, init=-1e38), r"schedule\(0\) - init"),
    (lambda: ms.tanh_decay(1.0, 10, lower=-3e38, upper=3e38), r"upper - lower"),
    (lambda: ms.tanh_decay(3e38, 10, -1e38), r"init - end"),
    # growth: the largest value reached before step 2**62 is computed when building
    (lambda: ms.exponential_decay(1.0, 1.5), r"decay_rate: with decay_rate=1.5 > 1"),
    (lambda: ms.exponential_decay(-1.0, 1.5, end=2.0), r"decay_rate: .*init >= 0"),
    (lambda: ms.step_decay(1.0, 2.0, 1000), r"decay_rate: with decay_rate=2.0 > 1"),
    (lambda: ms.multistep_decay(1e30, [1, 2], gamma=1e5), r"gamma: with gamma=100000.0"),
    (lambda: ms.cyclic_exponential_decay(1.0, 1.0001, 10), r"decay_rate: .*envelope"),
    (lambda: ms.cosine_restarts(1.0, 10, t_mul=1.0, m_mul=1.01), r"m_mul: .*peak of cycle"),
    (lambda: ms.cosine_restarts(1.0, 10, m_mul=10.0), r"m_mul: .*peak of cycle"),
    # products: the factors' largest magnitudes, known when each schedule was built
    (lambda: ms.multiply(ms.constant(1e20), ms.constant(1e20)),
     r"factors: their product can reach 1e\+40 in magnitude, beyond float32's range .*"
     r"factors\[0\] reaches 1e\+20, factors\[1\] reaches 1e\+20"),
    (lambda: ms.multiply(ms.constant(2.0), 3e38),
     r"factors: their product can reach 6e\+38 .*factors\[1\] is 3e\+38"),
    (lambda: ms.multiply(ms.warmup(ms.exponential_decay(1.0, 2.0, end=1e30), 5), 1e10),
     r"factors: their product can reach 1e\+40"),
    (lambda: ms.with_noise(ms.constant(3e38), 0.1),
     r"schedule: its values reach 3e\+38 in magnitude and the noise multiplies them by up "
     r"to 1 \+ pct = 1.67"),
    (lambda: ms.with_noise(ms.linear_schedule(0.0, 3e38, 10), 0.1, pct=0.2),
     r"schedule: its values reach 3e\+38 .*1 \+ pct = 1.2"),
])
def test_results_beyond_float32_are_rejected(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("build", [
    # bounded growth builds: a ceiling, a horizon too short to overflow, or few milestones
    lambda: ms.exponential_decay(0.01, 2.0, end=1.0),
    lambda: ms.exponential_decay(1.0, 2.0, decay_steps=2**60),
    lambda: ms.exponential_decay(0.0, 2.0),
    lambda: ms.step_decay(1.0, 2.0, 2**57),
    lambda: ms.multistep_decay(1.0, [1, 2], gamma=1e10),
    lambda: ms.cosine_restarts(1.0, 10, t_mul=2.0, m_mul=2.0),
    lambda: ms.cosine_decay(3e38, 10, 0.0),
    # products and noise within float32; a foreign callable's values are not known
    lambda: ms.multiply(ms.constant(1e19), ms.constant(1e19)),
    lambda: ms.multiply(ms.constant(1e20), lambda t: mx.full(t.shape, 1.0)),
    lambda: ms.with_noise(ms.constant(3e38), 0.0),
    lambda: ms.with_noise(ms.constant(2e38), 0.1, pct=0.5),
])
def test_bounded_growth_is_accepted_and_finite(build):
    values = build().values([0, 1, 10, 1000, 2**40, 2**62])
    assert np.all(np.isfinite(values))
