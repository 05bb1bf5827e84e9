"""Study specs: parsing, validation and resolution against a model's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import FileFormatError, InvalidInputError
from inverse.spec import StudySpec, load_spec, parse_spec, resolve_spec

REPO = Path(__file__).resolve().parents[2]
CONDITIONS = ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
RANGES = {"ABS_f_D": (0.3, 0.7), "CT_f_D_tort1": (0.4, 1.0), "CT_f_A_tort1": (0.4, 1.0)}
DESCRIPTORS = ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1", "STAT_e", "DISS_f10_D"]


def _resolve(spec: StudySpec):
    return resolve_spec(spec, condition_names=CONDITIONS, condition_ranges=RANGES, descriptor_names=DESCRIPTORS, recipe_names=["phi", "chi", "log_time"])


def test_target_forms_and_intervals():
    spec = parse_spec({
        "name": "x",
        "targets": {
            "ABS_f_D": {"at_least": 0.45, "at_most": 0.5},
            "CT_f_D_tort1": {"at_least": 0.9},
            "CT_f_A_tort1": {"equal": 0.8, "tolerance": 0.05},
        },
    })
    assert spec.targets["ABS_f_D"].interval == (0.45, 0.5)
    assert spec.targets["CT_f_D_tort1"].interval == (0.9, float("inf"))
    assert spec.targets["CT_f_A_tort1"].interval == pytest.approx((0.75, 0.85))
    assert spec.targets["ABS_f_D"].point == pytest.approx(0.475)
    assert spec.n_objectives == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"targets": {"ABS_f_D": {"at_least": 0.6, "at_most": 0.5}}}, "targets.ABS_f_D"),
        ({"targets": {"ABS_f_D": {"equal": 1.2, "tolerance": 0.1}}}, "targets: ABS_f_D: target 1.2 is outside [0, 1]"),
        ({"targets": {"ABS_f_D": {"equal": 0.5}}}, "targets.ABS_f_D"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "search": {"ABS_f_D": [0.6, 0.4]}}, "search: ABS_f_D: reversed bounds"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "search": {"ABS_f_D": [0.2, 1.5]}}, "search: ABS_f_D: bound 1.5 is outside [0, 1]"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "sampler": "tpe", "input_constraint": True}, "input_constraint: only the botorch sampler"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "search": {"CT_f_D_tort1": -0.1}}, "search: CT_f_D_tort1: bound -0.1 is outside [0, 1]"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "sampler": "cmaes"}, "sampler"),
        ({"targets": {"ABS_f_D": {"at_least": 0.5}}, "colour": "red"}, "colour"),
        ({}, "give at least one target or objective"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(InvalidInputError) as info:
        parse_spec({"name": "x", **data})
    message = str(info.value)
    assert field in message and "\n" not in message


def test_counts_may_exceed_one():
    spec = parse_spec({"name": "x", "targets": {"STAT_e": {"at_least": 500}}})
    assert spec.targets["STAT_e"].interval[0] == 500


def test_load_spec_reports_malformed_toml_and_overrides(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[targets\n")
    with pytest.raises(FileFormatError, match="malformed TOML"):
        load_spec(bad)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text("[targets]\nABS_f_D = { at_least = 0.4 }\n")
    spec = load_spec(good, n_trials=7, model="some.bundle", seed=None)
    assert (spec.name, spec.n_trials, spec.model, spec.seed) == ("good", 7, "some.bundle", 0)


def test_resolve_fills_bounds_and_rejects_unknown_names():
    spec = parse_spec({"name": "x", "targets": {"ABS_f_D": {"at_least": 0.4}}, "search": {"CT_f_A_tort1": 0.8, "ABS_f_D": [0.35, 0.6]}})
    resolved = _resolve(spec)
    assert resolved.bounds == {"ABS_f_D": (0.35, 0.6), "CT_f_D_tort1": (0.4, 1.0)}
    assert resolved.fixed == {"CT_f_A_tort1": 0.8}
    assert resolved.condition_vector({"ABS_f_D": 0.5, "CT_f_D_tort1": 0.9}) == [0.5, 0.9, 0.8]
    for data, field in [
        ({"targets": {"CT_f_X": {"at_least": 0.4}}}, "targets.CT_f_X: unknown descriptor"),
        ({"objectives": [{"descriptor": "nope"}]}, "objectives.nope: unknown descriptor"),
        ({"targets": {"ABS_f_D": {"at_least": 0.4}}, "search": {"phi": [0, 1]}}, "search.phi"),
        ({"targets": {"ABS_f_D": {"at_least": 0.4}}, "recipe": {"temperature": {"at_most": 3}}}, "recipe.temperature"),
    ]:
        with pytest.raises(InvalidInputError, match=field.replace(".", r"\.")):
            _resolve(parse_spec({"name": "x", **data}))


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_resolve_against_a_two_phase_model(path):
    from generator.descriptors import descriptor_names

    spec = load_spec(path)
    resolved = resolve_spec(
        spec, condition_names=CONDITIONS, condition_ranges=RANGES, descriptor_names=descriptor_names(2), recipe_names=["phi", "chi", "log_time"]
    )
    assert spec.model == "default" and spec.name == path.stem
    assert set(resolved.bounds) | set(resolved.fixed) == set(CONDITIONS)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[targets]\nSTAT_e = { at_least = nan }", "targets.STAT_e.at_least"),  # counts skip the [0, 1] check
        ("[targets]\nSTAT_e = { at_most = inf }", "targets.STAT_e.at_most"),
        ("[targets]\nABS_f_D = { at_least = 0.4 }\n[recipe]\nlog_time = { at_most = nan }", "recipe.log_time.at_most"),
        ("[targets]\nABS_f_D = { at_least = 0.4 }\n[generation]\nguidance = inf", "generation.guidance"),
        ("[targets]\nABS_f_D = { at_least = 0.4 }\n[generation]\nguidance = nan", "generation.guidance"),
        ("[targets]\nABS_f_D = { at_least = 0.4 }\n[search]\nSTAT_e = [0.0, inf]", "search.STAT_e"),
        ("seed = -1\n[targets]\nABS_f_D = { at_least = 0.4 }", "seed"),
        ("seed = 99999999999999\n[targets]\nABS_f_D = { at_least = 0.4 }", "seed"),
        ('name = "opv\\n"\n[targets]\nABS_f_D = { at_least = 0.4 }', "name"),
    ],
)
def test_non_finite_numbers_bad_seeds_and_names_are_rejected(tmp_path, text, field):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        load_spec(path)
    message = str(info.value)
    assert f": {field}" in message and "\n" not in message


def test_the_largest_seed_is_accepted():
    from generator.validation import MAX_SEED

    assert parse_spec({"name": "x", "seed": MAX_SEED, "targets": {"ABS_f_D": {"at_least": 0.4}}}).seed == MAX_SEED


def test_old_spec_keys_still_work_with_a_deprecation_warning(tmp_path):
    """``generator`` is now ``model`` and ``sampler`` (Optuna's) ``search_sampler``; [generation] sampler is unchanged."""
    import warnings

    path = tmp_path / "old.toml"
    path.write_text('generator = "my.bundle"\nsampler = "gp"\n[targets]\nABS_f_D = { at_least = 0.4 }\n[generation]\nsampler = "ddim"\n')
    with pytest.warns(DeprecationWarning, match="'generator' is now 'model'"):
        spec = load_spec(path)
    assert (spec.model, spec.search_sampler, spec.generation.sampler) == ("my.bundle", "gp", "ddim")
    with pytest.warns(DeprecationWarning, match="StudySpec.generator is now StudySpec.model"):
        assert spec.generator == "my.bundle"
    with pytest.warns(DeprecationWarning, match="'sampler' is now 'search_sampler'"):
        assert parse_spec({"name": "x", "sampler": "tpe", "targets": {"ABS_f_D": {"at_least": 0.4}}}).search_sampler == "tpe"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names: no warning
        newer = tmp_path / "new.toml"
        newer.write_text('model = "my.bundle"\n[targets]\nABS_f_D = { at_least = 0.4 }\n')
        assert load_spec(newer, model="other.bundle", search_sampler="random").model == "other.bundle"  # overrides win
        new = parse_spec({"name": "x", "model": "m", "search_sampler": "botorch", "targets": {"ABS_f_D": {"at_least": 0.4}}})
    assert "generator" not in new.model_dump() and new.model_dump()["model"] == "m"
    with pytest.raises(InvalidInputError, match="model: given twice, also under its old name 'generator'"):
        parse_spec({"name": "x", "model": "a", "generator": "b", "targets": {"ABS_f_D": {"at_least": 0.4}}})
