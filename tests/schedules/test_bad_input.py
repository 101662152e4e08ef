"""Every parameter of every schedule rejects bad values at build time, naming itself."""

from __future__ import annotations

import math
import re

import pytest

import mlx_schedules as ms

NAN, INF = math.nan, math.inf

# Bad values by kind of parameter: (label, value, error).
REAL = [("nan", NAN, ValueError), ("inf", INF, ValueError), ("-inf", -INF, ValueError),
        ("str", "0.1", TypeError), ("bool", True, TypeError), ("none", None, TypeError)]
POSITIVE = REAL + [("zero", 0.0, ValueError), ("negative", -1.0, ValueError)]
NONNEGATIVE = REAL + [("negative", -0.1, ValueError)]
LENGTH = [("zero", 0, ValueError), ("negative", -3, ValueError), ("float", 10.0, TypeError),
          ("fractional", 2.5, TypeError), ("str", "10", TypeError), ("bool", True, TypeError),
          ("nan", NAN, TypeError), ("none", None, TypeError)]
COUNT = [("negative", -1, ValueError), ("float", 1.0, TypeError), ("str", "1", TypeError),
         ("bool", False, TypeError)]
BOOL = [("int", 1, TypeError), ("str", "yes", TypeError), ("none", None, TypeError)]
FRACTION = REAL + [("zero", 0.0, ValueError), ("one", 1.0, ValueError),
                   ("negative", -0.2, ValueError), ("above-one", 1.5, ValueError)]


def choice(*extra):
    return [("unknown", "bogus", ValueError), ("case", extra[0].upper(), ValueError),
            ("int", 1, TypeError), ("none", None, TypeError)]


INCREASING = [("decreasing", [5, 3], ValueError), ("repeated", [3, 3], ValueError),
              ("negative", [-1, 4], ValueError), ("float", [1.5, 4], TypeError),
              ("str", "12", TypeError), ("bool", [True, 4], TypeError),
              ("none", None, TypeError)]

# factory: (valid keyword arguments, {parameter: bad values})
TABLE = {
    "constant": ({"value": 0.1}, {"value": REAL}),
    "exponential_decay": (
        {"init": 0.1, "decay_rate": 0.9},
        {"init": REAL, "decay_rate": POSITIVE, "decay_steps": LENGTH, "staircase": BOOL,
         "begin": COUNT, "end": REAL[:-1]}),
    "step_decay": ({"init": 0.1, "decay_rate": 0.5, "step_size": 10},
                   {"init": REAL, "decay_rate": POSITIVE, "step_size": LENGTH}),
    "multistep_decay": ({"init": 0.1, "milestones": [3, 6]},
                        {"init": REAL, "milestones": INCREASING + [("empty", [], ValueError)],
                         "gamma": POSITIVE}),
    "cosine_decay": ({"init": 0.1, "decay_steps": 100},
                     {"init": REAL, "decay_steps": LENGTH, "end": REAL, "exponent": POSITIVE}),
    "linear_schedule": ({"init": 0.0, "end": 0.1, "steps": 10},
                        {"init": REAL, "end": REAL, "steps": LENGTH}),
    "polynomial_decay": ({"init": 0.1, "decay_steps": 100},
                         {"init": REAL, "decay_steps": LENGTH, "end": REAL, "power": POSITIVE,
                          "cycle": BOOL}),
    "inverse_time_decay": ({"init": 0.1, "decay_steps": 10, "decay_rate": 0.5},
                           {"init": REAL, "decay_steps": LENGTH, "decay_rate": NONNEGATIVE,
                            "staircase": BOOL}),
    "piecewise_constant": ({"boundaries": [3, 6], "values": [1.0, 0.5, 0.1]},
                           {"boundaries": INCREASING, "values": [
                               ("nan", [1.0, NAN, 0.1], ValueError),
                               ("inf", [1.0, 0.5, INF], ValueError),
                               ("str-item", [1.0, "a", 0.1], TypeError),
                               ("str", "abc", TypeError),
                               ("too-few", [1.0, 0.5], ValueError),
                               ("too-many", [1.0, 0.5, 0.1, 0.0], ValueError)]}),
    "cyclic_exponential_decay": (
        {"init": 0.1, "decay_rate": 0.99, "cycle_length": 10},
        {"init": REAL, "decay_rate": POSITIVE, "cycle_length": LENGTH, "end": REAL,
         "decay_steps": LENGTH}),
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
         "step_size_up": LENGTH, "step_size_down": LENGTH[:-1],
         "mode": choice("triangular"),
         "gamma": POSITIVE + [("above-one", 1.01, ValueError)]}),
    "cyclic_momentum": (
        {"base_momentum": 0.8, "max_momentum": 0.9},
        {"base_momentum": NONNEGATIVE + [("above-max", 0.95, ValueError)],
         "max_momentum": NONNEGATIVE + [("below-base", 0.7, ValueError)],
         "step_size_up": LENGTH, "step_size_down": LENGTH[:-1],
         "mode": choice("exp_range"),
         "gamma": POSITIVE + [("above-one", 2.0, ValueError)]}),
    "cosine_restarts": (
        {"init": 0.1, "first_decay_steps": 10},
        {"init": REAL, "first_decay_steps": LENGTH,
         "t_mul": REAL + [("below-one", 0.5, ValueError), ("zero", 0.0, ValueError)],
         "m_mul": NONNEGATIVE, "end": REAL}),
    "warmup": (
        {"schedule": ms.constant(0.1), "steps": 10},
        {"schedule": [("number", 0.1, TypeError), ("str", "cosine", TypeError),
                      ("none", None, TypeError)],
         "steps": LENGTH, "init": REAL}),
    "warmup_stable_decay": (
        {"peak": 0.1, "total_steps": 100, "warmup_steps": 10, "decay_steps": 20},
        {"peak": REAL, "total_steps": LENGTH + [("too-short", 29, ValueError)],
         "warmup_steps": COUNT + [("too-long", 81, ValueError)],
         "decay_steps": LENGTH + [("too-long", 91, ValueError)],
         "init": REAL, "end": REAL, "decay_shape": choice("cosine")}),
    "join_schedules": (
        {"schedules": [ms.constant(0.1), ms.constant(0.2)], "boundaries": [5]},
        {"schedules": [("empty", [], ValueError), ("str", "ab", TypeError),
                       ("not-callable", [ms.constant(0.1), 0.2], TypeError),
                       ("none", None, TypeError)],
         "boundaries": INCREASING[2:] + [("too-many", [5, 6], ValueError),
                                         ("too-few", [], ValueError)]}),
    "lr_range_test": (
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
    factory(**valid)  # the valid arguments build
    with pytest.raises(error, match=re.escape(parameter)):
        factory(**{**valid, parameter: value})


def test_table_covers_every_parameter_of_every_schedule():
    import inspect

    for name in ms.schedule_names():
        assert name in TABLE, name
        parameters = set(inspect.signature(getattr(ms, name)).parameters)
        assert parameters == set(TABLE[name][1]), name


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


def test_message_names_the_value_received():
    with pytest.raises(ValueError, match=r"decay_steps must be a positive integer, got -3"):
        ms.cosine_decay(0.1, -3)
    with pytest.raises(TypeError, match=r"total_steps must be an integer, got 100.0 \(float\)"):
        ms.one_cycle(0.1, 100.0)
    with pytest.raises(ValueError, match=r"mode must be one of \['triangular', 'triangular2', "
                                         r"'exp_range'\], got 'tri'"):
        ms.cyclic_lr(0.01, 0.1, mode="tri")
