"""Recipe verification: real Cahn-Hilliard re-runs of recipes, checked against the tiny dataset and a tiny study."""

from __future__ import annotations

import json

import h5py
import numpy as np
import optuna
import pytest

from generator.data.hdf5 import read_root_attributes, simulation_record
from generator.descriptors import compute_batch
from generator.errors import InvalidInputError
from generator.model_info import ModelRecord
from generator.physics import recipes as physics_recipes
from generator.physics.labels import grey_to_labels
from generator.physics.presets import load_preset
from inverse import verify
from inverse.spec import parse_spec

KEY_DESCRIPTORS = ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")


def _record(tiny_dataset, simulation="auto"):  # noqa: ANN001, ANN202
    """A :class:`ModelRecord` of the tiny dataset (no networks needed)."""
    import pandas as pd

    with h5py.File(tiny_dataset) as f:
        rows = [dict(f[name].attrs, name=name) for name in sorted(f)]
    table = pd.DataFrame(rows)
    sim = simulation_record([tiny_dataset]) if simulation == "auto" else simulation
    return ModelRecord(n_phases=2, volume_shape=(32, 32, 16), recipe_names=physics_recipes.RECIPE_NAMES, descriptor_table=table, simulation=sim)


def _sample(tiny_dataset, series: int, snapshot: int):  # noqa: ANN001, ANN202
    """Labels and attributes of one training sample."""
    with h5py.File(tiny_dataset) as f:
        dset = f[f"s{series:05d}_t{snapshot:04d}"]
        return grey_to_labels(dset[0], 2), dict(dset.attrs)


# ----------------------------------------------------------------------------- settings


def test_settings_come_from_the_dataset_record(tiny_dataset):
    record = _record(tiny_dataset)
    settings = verify.simulation_settings(record)
    assert settings.source == "bundle" and settings.preset == "tiny"
    assert settings.ch == load_preset("tiny").ch
    assert read_root_attributes(tiny_dataset)["ch_parameters"] == settings.to_json()["ch_parameters"]


def test_preset_is_needed_without_a_record_and_must_match_the_grid(tiny_dataset):
    record = _record(tiny_dataset, simulation=None)
    with pytest.raises(InvalidInputError, match="--preset"):
        verify.simulation_settings(record)
    assert verify.simulation_settings(record, "tiny").source == "preset"
    with pytest.raises(InvalidInputError, match=r"grid \[128, 128, 64\]"):
        verify.simulation_settings(record, "paper")


def test_films_are_simulated_at_the_generated_size(tiny_dataset):
    """A resizable generator trained on 32x32x16 films that generates 64x64x16 films is verified on 64x64x16 films."""
    import dataclasses

    record = dataclasses.replace(_record(tiny_dataset), volume_shape=(64, 64, 16), training_shape=(32, 32, 16))
    settings = verify.simulation_settings(record)
    assert settings.ch.shape == (64, 64, 16)
    assert settings.ch.model_dump(exclude={"shape"}) == load_preset("tiny").ch.model_dump(exclude={"shape"})
    assert verify.simulation_settings(record, "tiny").ch.shape == (64, 64, 16)
    # a study that generated at another size ([generation] size) is verified at that size
    assert verify.simulation_settings(record, size=(96, 32, 16)).ch.shape == (96, 32, 16)
    assert verify.simulation_settings(_record(tiny_dataset), size=(64, 32, 16)).ch.shape == (64, 32, 16)
    with pytest.raises(InvalidInputError, match=r"\[64, 64, 32\]"):
        verify.simulation_settings(record, size=(64, 64, 32))
    other_z = dataclasses.replace(record, volume_shape=(64, 64, 32))
    with pytest.raises(InvalidInputError, match=r"differs from the model's volume shape \[64, 64, 32\]"):
        verify.simulation_settings(other_z)


def test_bad_recipes_are_rejected_before_simulating(tiny_dataset):
    settings = verify.simulation_settings(_record(tiny_dataset))
    dt = settings.ch.dt
    assert list(physics_recipes.check_recipes([[0.5, 3.0, 1.0], [0.5, 3.0, np.log10(30.0)]], settings)) == [round(10 / dt), round(30 / dt)]
    for recipe, message in (([1.2, 3.0, 1.0], "phi=1.2"), ([0.5, np.nan, 1.0], "non-finite"), ([0.5, 3.0, 4.0], "--max-steps")):
        with pytest.raises(InvalidInputError, match=message):
            physics_recipes.check_recipes([recipe], settings)
    with pytest.raises(InvalidInputError, match="seeds"):
        physics_recipes.simulate_recipes([[0.5, 3.0, 1.0]], settings, [])


@pytest.mark.slow
def test_simulating_a_training_recipe_reproduces_the_training_sample(tiny_dataset):
    """A training sample's own (phi, chi, log_time) and seed give back that sample; other seeds give its statistics."""
    settings = verify.simulation_settings(_record(tiny_dataset))
    samples = [_sample(tiny_dataset, 1, 2), _sample(tiny_dataset, 3, 3)]  # two annealing times: two batches
    recipes = np.array([[a["phi"], a["chi"], a["log_time"]] for _, a in samples])
    seeds = [int(a["seed"]) for _, a in samples] + [11, 12]  # each sample's own seed, then fresh ones
    labels, steps = physics_recipes.simulate_recipes(recipes, settings, seeds, progress=False)
    assert labels.shape == (2, 4, 32, 32, 16)
    assert list(steps) == [a["step"] for _, a in samples]  # the time mapping inverts log_time exactly
    for i, ((reference, attrs), runs) in enumerate(zip(samples, labels)):
        assert np.mean(runs[i] == reference) > 0.999  # its own seed: the training sample itself
        others = [run for j, run in enumerate(runs) if j != i]
        assert np.mean(others[0] == reference) < 0.9  # other seeds: other microstructures ...
        measured = compute_batch(others, n_jobs=1)
        # ... of which the training sample is one more draw. On this 32x32x16 box the seed-to-seed
        # spread (std over 10 seeds) is ~0.002 for the donor fraction and ~0.05 for the straight-path
        # fractions, so allow ~4 std on the latter.
        donor = np.array([m["ABS_f_D"] for m in measured])
        assert np.all(np.abs(donor - attrs["ABS_f_D"]) < 0.01)
        assert np.all(np.abs(donor - attrs["phi"]) < 0.06)  # mass conservation: donor fraction ~ blend ratio
        for name in ("CT_f_D_tort1", "CT_f_A_tort1"):
            assert abs(attrs[name] - np.mean([m[name] for m in measured])) < 0.2, name


def test_nearest_training_recipe_finds_the_sample_itself(tiny_dataset):
    table = _record(tiny_dataset).descriptor_table
    row = table.iloc[7]
    names = [n for n in KEY_DESCRIPTORS + ("STAT_e", "DISS_f10_D")]
    found = verify.nearest_training_recipe(row[names].to_dict(), table, names, k=1)
    assert found == pytest.approx({n: row[n] for n in physics_recipes.RECIPE_NAMES})
    averaged = verify.nearest_training_recipe(row[names].to_dict(), table, names, k=len(table))
    assert averaged == pytest.approx({n: table[n].mean() for n in physics_recipes.RECIPE_NAMES})
    assert verify.nearest_training_recipe(row[names].to_dict(), None, names) is None
    bigger = row[names].to_dict() | {"STAT_e": 4.0 * row["STAT_e"]}  # the same film, 4x the area: counts grow, fractions do not
    assert verify.nearest_training_recipe(bigger, table, names, k=1) == pytest.approx(found)
    assert verify.nearest_training_recipe({"STAT_e": row["STAT_e"]}, table, ["STAT_e"]) is None  # counts alone say nothing
    assert verify.outside_training({"phi": 0.7, "chi": 3.0, "log_time": 2.0}, table) == ["phi", "log_time"]
    assert verify.outside_training({"phi": 0.5, "chi": 3.0, "log_time": 1.0}, table) == []


# ----------------------------------------------------------------------------- studies


def _spec(bundle, name: str = "v") -> dict:  # noqa: ANN001
    return {
        "name": name, "model": str(bundle), "search_sampler": "random", "n_trials": 3, "n_startup_trials": 1,
        "samples_per_trial": 2, "seed": 3, "generation": {"steps": 4},
        "targets": {"ABS_f_D": {"at_least": 0.3, "at_most": 0.7}, "CT_f_D_tort1": {"at_least": 0.2}},
        "search": {"ABS_f_D": [0.45, 0.55]},
    }


@pytest.fixture(scope="module")
def tiny_study(tiny_bundle, tmp_path_factory):
    from inverse.search import run_study

    folder = tmp_path_factory.mktemp("verify_study")
    url = f"sqlite:///{folder / 'v.db'}"
    study = run_study(parse_spec(_spec(tiny_bundle)), storage=url, runs_dir=folder, progress=False)
    return study, url


@pytest.mark.slow
def test_verify_study_simulates_scores_and_stores(tiny_study):
    from optuna.artifacts import download_artifact

    from inverse.recipes import study_recipes
    from inverse.storage import artifact_store

    study, url = tiny_study
    ranked = study_recipes(study)
    assert len(ranked) >= 1
    report = verify.verify_study(study, top_k=2, n_seeds=2, seed=5, storage_url=url)
    assert report.settings.source == "bundle" and report.settings.preset == "tiny"
    assert [r.trial for r in report.results] == list(ranked["trial"][:2])
    spec = parse_spec(study.user_attrs["spec"])
    for result in report.results:
        trial = study.trials[result.trial]
        row = ranked[ranked["trial"] == result.trial].iloc[0]
        assert result.recipe == pytest.approx({n: row[f"{n}_mean"] for n in physics_recipes.RECIPE_NAMES})
        # the tiny model has a training table: the recipe is the posterior's, with its interval, and the FP's mean is kept
        assert row["recipe_source"] == "posterior" and result.posterior is not None
        assert result.posterior["lower"]["chi"] <= result.recipe["chi"] <= result.posterior["upper"]["chi"]
        assert result.posterior["feature_predictor"] == pytest.approx({n: trial.user_attrs["recipe_mean"][n] for n in physics_recipes.RECIPE_NAMES})
        assert result.steps == report.settings.steps_for(result.recipe["log_time"]) and result.seeds == [5, 6]
        # the simulated table holds the real descriptors of the simulated labels
        assert result.simulated.to_dict("records") == compute_batch(list(result.labels), n_jobs=1, n_phases=2)
        lo, hi = spec.targets["ABS_f_D"].interval
        inside = lo <= result.simulated_mean["ABS_f_D"] <= hi
        assert (result.target_distance["ABS_f_D"] == 0.0) == inside
        assert result.meets_targets == all(d == 0.0 for d in result.target_distance.values())
        assert 0.0 <= result.fraction_meeting <= 1.0

    stored = json.loads(json.dumps(optuna.load_study(study_name=study.study_name, storage=url).user_attrs["verification"]))
    assert stored["schema"] == verify.SCHEMA_VERSION and stored["simulation"]["preset"] == "tiny"
    first = report.results[0]
    entry = stored["trials"][str(first.trial)]
    assert entry["simulated_mean"] == pytest.approx(first.simulated_mean)
    assert entry["meets_targets"] == first.meets_targets and entry["recipe"] == pytest.approx(first.recipe)
    assert entry["simulated_samples"]["ABS_f_D"] == pytest.approx(list(first.simulated["ABS_f_D"]))
    path = url.removeprefix("sqlite:///") + ".npz"
    download_artifact(artifact_store=artifact_store(study.study_name, url), artifact_id=entry["artifact_id"], file_path=path)
    with np.load(path) as saved:
        assert np.array_equal(saved["labels"], first.labels) and list(saved["seeds"]) == [5, 6]

    # a second verification with other seeds replaces that trial's entry and keeps the others
    again = verify.verify_study(study, top_k=1, n_seeds=1, seed=9, storage_url=url)
    merged = optuna.load_study(study_name=study.study_name, storage=url).user_attrs["verification"]["trials"]
    assert set(merged) == {str(r.trial) for r in report.results}
    assert merged[str(again.results[0].trial)]["seeds"] == [9]


def test_verify_study_rejects_bad_input(tiny_study, tiny_bundle, tmp_path):
    study, url = tiny_study
    with pytest.raises(InvalidInputError, match="top_k"):
        verify.verify_study(study, top_k=0, store=False)
    with pytest.raises(InvalidInputError, match="seeds"):
        verify.verify_study(study, n_seeds=0, store=False)
    with pytest.raises(InvalidInputError, match="no study 'nope'"):
        verify.load_study("nope", url)
    with pytest.raises(InvalidInputError, match="does not exist"):
        verify.load_study("v", f"sqlite:///{tmp_path / 'missing.db'}")
    empty = optuna.create_study(study_name="empty", storage=url)
    empty.set_user_attr("spec", _spec(tiny_bundle, "empty"))
    with pytest.raises(InvalidInputError, match="no completed, measured trial"):
        verify.verify_study(empty, store=False)
    bare = optuna.create_study(study_name="bare", storage=url)
    with pytest.raises(InvalidInputError, match="has no spec"):
        verify.verify_study(bare, store=False)
