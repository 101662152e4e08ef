"""Schedules as data: every registered schedule survives JSON, nested ones too."""

from __future__ import annotations

import json

import mlx.optimizers as optim
import numpy as np
import pytest

import mlx_schedules as ms

GRID = np.array([0, 1, 2, 3, 5, 8, 13, 29, 30, 99, 100, 101, 999, 5000, 2**24 + 1, 10**9 + 7])

EXAMPLES = {
    "constant": ms.constant(0.3),
    "exponential_decay": ms.exponential_decay(0.1, 0.9, decay_steps=7, staircase=True,
                                              begin=3, end=0.01),
    "step_decay": ms.step_decay(0.1, 0.5, 13),
    "multistep_decay": ms.multistep_decay(0.1, (5, 30, 100), gamma=0.3),
    "cosine_decay": ms.cosine_decay(0.1, 100, 0.001, exponent=2.0),
    "linear_schedule": ms.linear_schedule(0.0, 0.1, 30),
    "polynomial_decay": ms.polynomial_decay(0.1, 30, 0.01, power=0.5, cycle=True),
    "inverse_time_decay": ms.inverse_time_decay(0.1, 10, 0.5, staircase=True),
    "piecewise_constant": ms.piecewise_constant([8, 99], [0.1, 0.01, 0.001]),
    "cyclic_exponential_decay": ms.cyclic_exponential_decay(0.1, 0.99, 30, end=0.001,
                                                            decay_steps=3),
    "one_cycle": ms.one_cycle(0.1, 1000, pct_start=0.25, anneal_strategy="linear",
                              div_factor=10.0, final_div_factor=100.0, three_phase=True),
    "one_cycle_momentum": ms.one_cycle_momentum(1000, base_momentum=0.8, max_momentum=0.9,
                                                pct_start=0.4, three_phase=True),
    "cyclic_lr": ms.cyclic_lr(0.01, 0.1, 13, step_size_down=29, mode="exp_range", gamma=0.999),
    "cyclic_momentum": ms.cyclic_momentum(0.8, 0.9, 13, mode="triangular2"),
    "cosine_restarts": ms.cosine_restarts(0.1, 10, t_mul=1.5, m_mul=0.8, end=0.001),
    "warmup": ms.warmup(ms.warmup(ms.cosine_decay(0.1, 500), 20, init=0.05, shape="cosine"),
                        10),
    "warmup_stable_decay": ms.warmup_stable_decay(0.1, 1000, warmup_steps=30, decay_steps=200,
                                                  init=0.001, end=0.0001, decay_shape="sqrt",
                                                  warmup_shape="cosine"),
    "join_schedules": ms.join_schedules(
        [ms.warmup(ms.constant(0.1), 10), ms.cosine_restarts(0.1, 20),
         ms.join_schedules([ms.constant(0.01), ms.linear_schedule(0.01, 0.0, 100)], [50])],
        [30, 300]),
    "range_sweep": ms.range_sweep(1e-6, 1.0, 100, mode="linear"),
    "inverse_sqrt": ms.inverse_sqrt(0.1, 30, timescale=7),
    "tanh_decay": ms.tanh_decay(0.1, 100, 0.001, lower=-6.0, upper=4.0),
    "piecewise_interpolate": ms.piecewise_interpolate(0.1, {30: 0.5, 99: 0.1},
                                                      interpolate="cosine"),
    "multiply": ms.multiply(0.5, ms.cosine_decay(0.1, 100, k_decay=2.0),
                            ms.multiply(ms.linear_schedule(0.2, 1.0, 10), 3.0)),
    "power_schedule": ms.power_schedule(16, 16 * 512, a=3.0, b=-0.5, max_lr=0.01,
                                        warmup_steps=10, decay_steps=30, total_steps=300),
    "with_noise": ms.with_noise(ms.warmup(ms.cosine_restarts(0.1, 10, cycle_limit=3), 5,
                                          shape="log"), 0.2, pct=0.5, start=3, end=500,
                                seed=9),
}


def test_every_registered_schedule_has_an_example():
    assert sorted(EXAMPLES) == ms.schedule_names()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_through_json(name):
    schedule = EXAMPLES[name]
    config = json.loads(json.dumps(schedule.to_config()))
    assert config["name"] == name
    rebuilt = ms.from_config(config)
    assert rebuilt.name == name
    np.testing.assert_array_equal(rebuilt.values(GRID), schedule.values(GRID))
    assert ms.to_config(rebuilt) == config   # a fixed point


def test_nested_configs_are_plain_data():
    config = EXAMPLES["join_schedules"].to_config()
    assert config["schedules"][0] == {"name": "warmup", "steps": 10, "init": 0.0,
                                      "shape": "linear",
                                      "schedule": {"name": "constant", "value": 0.1}}
    assert config["schedules"][2]["name"] == "join_schedules"


def test_hand_written_config_uses_defaults():
    lr = ms.from_config({"name": "one_cycle", "max_lr": 0.1, "total_steps": 100})
    np.testing.assert_array_equal(lr.values(GRID), ms.one_cycle(0.1, 100).values(GRID))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown schedule 'cosine'.*'cosine_decay'.*"
                                         r"'one_cycle'"):
        ms.from_config({"name": "cosine", "init": 0.1})
    with pytest.raises(ValueError, match=r"needs a 'name'.*'warmup'"):
        ms.from_config({"init": 0.1})


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['warmup'\] for schedule "
                                         r"'cosine_decay'; valid keys are \['init', "
                                         r"'decay_steps', 'end', 'exponent', 'k_decay'\]"):
        ms.from_config({"name": "cosine_decay", "init": 0.1, "decay_steps": 10, "warmup": 5})
    with pytest.raises(ValueError, match=r"unknown key.*'bogus'.*valid keys"):
        ms.from_config({"name": "warmup", "steps": 2,
                        "schedule": {"name": "constant", "value": 1.0, "bogus": 1}})


def test_bad_values_in_config_are_rejected_like_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        ms.from_config({"name": "cosine_decay", "init": 0.1, "decay_steps": 0})
    with pytest.raises(TypeError, match="config must be a dict"):
        ms.from_config([("name", "constant")])


def test_foreign_callables_cannot_be_described():
    lr = ms.join_schedules([ms.constant(0.1), optim.cosine_decay(0.1, 10)], [5])
    with pytest.raises(ValueError, match="not a schedule of this package"):
        lr.to_config()
    with pytest.raises(ValueError, match="not a schedule of this package"):
        ms.warmup(lambda step: step, 3).to_config()
    with pytest.raises(TypeError, match="expects a Schedule"):
        ms.to_config(optim.cosine_decay(0.1, 10))


def test_multiply_config_lists_its_factors():
    config = EXAMPLES["multiply"].to_config()
    assert config["factors"][0] == 0.5
    assert config["factors"][2]["name"] == "multiply"
    with pytest.raises(TypeError, match=r"config.factors must be a list, got 0.5"):
        ms.from_config({"name": "multiply", "factors": 0.5})


def test_configs_written_before_the_new_options_still_load():
    # saved runs hold configs without k_decay, cycle_limit, shape or warmup_shape
    old = {"name": "warmup", "steps": 3, "init": 0.0,
           "schedule": {"name": "cosine_decay", "init": 0.1, "decay_steps": 10, "end": 0.0,
                        "exponent": 1.0}}
    np.testing.assert_array_equal(ms.from_config(old).values(GRID),
                                  ms.warmup(ms.cosine_decay(0.1, 10), 3).values(GRID))


def test_former_name_lr_range_test_still_builds_the_sweep():
    assert ms.lr_range_test is ms.range_sweep
    config = {"name": "lr_range_test", "min_lr": 1e-4, "max_lr": 1.0, "steps": 5}
    rebuilt = ms.from_config(config)
    assert rebuilt.name == "range_sweep"
    assert rebuilt.to_config() == {**config, "name": "range_sweep", "mode": "exponential"}
    np.testing.assert_allclose(rebuilt.values(6), [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.0],
                               rtol=2e-6)


def test_name_that_is_not_a_string_is_named():
    with pytest.raises(TypeError, match=r"config.name must be a string, one of \[.*'constant'"
                                        r".*got \['constant'\] \(list\)"):
        ms.from_config({"name": ["constant"], "value": 0.1})
    with pytest.raises(TypeError, match=r"config.schedule.name must be a string.*got None"):
        ms.from_config({"name": "warmup", "steps": 2, "schedule": {"name": None}})


def _nested(depth):
    config = {"name": "constant", "value": 0.5}
    for _ in range(depth - 1):
        config = {"name": "warmup", "steps": 1, "schedule": config}
    return config


def test_nesting_depth_is_limited_with_a_clear_error():
    limit = ms.config.MAX_CONFIG_DEPTH
    # limit - 1 one-step warmups around the constant: 0 until they have all passed
    assert ms.from_config(_nested(limit)).values(limit + 1).tolist() == [0.0] * (limit - 1) + [
        0.5, 0.5]
    with pytest.raises(ValueError, match=rf"nest at most {limit} levels deep; "
                                         r"config(\.schedule){64} is level 65"):
        ms.from_config(_nested(limit + 1))
    # far deeper than Python's recursion limit: still the same clear error
    with pytest.raises(ValueError, match=rf"nest at most {limit} levels"):
        ms.from_config(_nested(1200))
    join = {"name": "join_schedules", "boundaries": [3], "schedules": [
        {"name": "constant", "value": 1.0}, _nested(limit)]}
    with pytest.raises(ValueError, match=r"config\.schedules\[1\](\.schedule){63} is level 65"):
        ms.from_config(join)


def test_too_deep_a_composition_cannot_be_saved():
    schedule = ms.constant(0.5)
    for _ in range(ms.config.MAX_CONFIG_DEPTH - 1):
        schedule = ms.warmup(schedule, 1)
    assert ms.from_config(schedule.to_config()).depth == ms.config.MAX_CONFIG_DEPTH
    deeper = ms.warmup(schedule, 1)
    with pytest.raises(ValueError, match=r"'warmup' nests 65 schedules deep; a config holds "
                                         r"at most 64 levels"):
        deeper.to_config()
    assert deeper.values([63, 64, 65]).tolist() == [0.0, 0.5, 0.5]   # still evaluates


@pytest.mark.parametrize("container", ["list", "dict"])
@pytest.mark.parametrize("where", ["value", "factors"])
def test_data_nested_far_too_deep_is_refused_before_recursing(container, where):
    # a list (or dict) nested 10,000 deep used to exhaust the stack (RecursionError, from
    # the repr in an error message or from the recursion itself)
    value = 1.0
    for _ in range(10_000):
        value = [value] if container == "list" else {"a": value}
    config = ({"name": "constant", "value": value} if where == "value"
              else {"name": "multiply", "factors": [0.5, value]})
    limit = 2 * ms.config.MAX_CONFIG_DEPTH + 1   # a dict and a list per schedule, a leaf
    with pytest.raises(ValueError, match=rf"nest at most 64 levels deep \(at most {limit} "
                                         rf"levels of lists and dicts\); config\.{where}"):
        ms.from_config(config)


def test_nesting_of_lists_at_the_limit_still_builds():
    # 64 schedules deep through lists of factors: the deepest valid config of lists and dicts
    config = {"name": "constant", "value": 0.5}
    for _ in range(ms.config.MAX_CONFIG_DEPTH - 1):
        config = {"name": "multiply", "factors": [config]}
    assert ms.from_config(config).values(2).tolist() == [0.5, 0.5]
