"""The benchmark scripts' shared harness: interleaving, ratios, and the busy-machine warning."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import conditions  # noqa: E402


def test_interleave_alternates_after_a_warm_up_and_ratios_are_per_round_medians():
    calls: list[str] = []
    values = {"a": iter([9.0, 1.0, 2.0, 3.0]), "b": iter([9.0, 2.0, 4.0, 12.0])}

    def make(name):
        return lambda: (calls.append(name), next(values[name]))[1]

    rounds = conditions.interleave({"a": make("a"), "b": make("b")}, 3)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert rounds == {"a": [1.0, 2.0, 3.0], "b": [2.0, 4.0, 12.0]}
    assert conditions.median_ratio(rounds["b"], rounds["a"]) == 2.0  # per round 2, 2, 4 (the ratio of medians is 2 too, of means 3)
    with pytest.raises(ValueError):
        conditions.median_ratio([1.0], [1.0, 2.0])


def test_a_busy_machine_is_reported_and_a_quiet_one_is_not():
    quiet = conditions.Conditions(load_before=(0.4, 0.4, 0.4), others=0.02, info={"cores": 2, "cores_usable": 2})
    assert quiet.quiet and quiet.warnings() == []
    loaded = conditions.Conditions(load_before=(1.5, 1.0, 1.0), others=None, info={"cores": 2, "cores_usable": 2})
    assert len(loaded.warnings()) == 1 and "busy before the run" in loaded.warnings()[0]
    # a lagging load average (the previous benchmark) with nobody else running during this one: quiet
    lagging = conditions.Conditions(load_before=(1.5, 1.0, 1.0), others=0.01, info={"cores": 2, "cores_usable": 2})
    assert lagging.quiet
    shared = conditions.Conditions(load_before=(0.1, 0.1, 0.1), others=0.35, info={"cores": 2, "cores_usable": 2})
    assert not shared.quiet and "35%" in shared.warnings()[0]


def test_conditions_prints_the_machine_and_the_load(capsys):
    lines: list[str] = []
    with conditions.Conditions(printer=lines.append) as c:
        pass
    assert lines[0].startswith("machine  ") and "cores" in lines[0] and "torch" in lines[0]
    assert lines[1].startswith("load before") and lines[2].startswith("load after")
    assert c.info["cores"] >= 1
