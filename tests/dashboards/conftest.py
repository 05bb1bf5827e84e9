"""Fixtures of the dashboard tests: tiny studies run by ``inverse`` on the tiny model, and AppTest helpers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from dashboards import APP_PATH

#: Search settings shared by the tiny studies: few, cheap trials on the PCA plane of the training data.
TINY = dict(sampler="random", n_trials=5, samples_per_trial=2, feasibility="pca", generation={"steps": 4})


@dataclass(frozen=True)
class TinyStudies:
    """A SQLite storage holding ``opv`` (one objective), ``interface`` (two, with verification results) and ``empty``."""

    url: str
    runs_dir: Path
    bundle: Path
    single: str = "opv"
    multi: str = "interface"
    empty: str = "empty"

    def load(self, name: str) -> optuna.Study:
        """The stored study ``name``."""
        return optuna.load_study(study_name=name, storage=self.url)


def _add_verification(studies: TinyStudies) -> None:
    """Store a verification of the best trial of the multi-objective study, in ``docs/verification.md``'s schema.

    ``microdesign verify`` writes these from Cahn-Hilliard runs of the recipe
    (about a minute per recipe here, too slow for this fixture); this stand-in
    takes the trial's first saved volume as the one "simulated" run, measured
    and scored with inverse's own functions, so the page shows real numbers.
    """
    from optuna.artifacts import upload_artifact

    from dashboards import _data
    from inverse.evaluation import score, target_distances
    from inverse.recipes import study_recipes
    from inverse.spec import Target
    from inverse.storage import artifact_dir, artifact_store

    study = studies.load(studies.multi)
    best = study_recipes(study).iloc[0]
    trial = study.trials[int(best["trial"])]
    folder = str(artifact_dir(studies.multi, studies.url, studies.runs_dir))
    saved = _data.trial_samples(folder, trial.user_attrs["artifact_id"])
    first = saved.descriptors.iloc[0]
    spec = study.user_attrs["spec"]
    names = list(spec["targets"]) + [o["descriptor"] for o in spec["objectives"]]
    targets = {n: Target(**v) for n, v in spec["targets"].items()}
    distances = target_distances(first.to_dict(), targets, study.user_attrs["descriptor_scales"])
    npz = studies.runs_dir / "simulated.npz"
    np.savez_compressed(npz, labels=saved.labels[:1], seeds=np.array([100_000]),
                        descriptor_names=np.array(saved.descriptors.columns, dtype=str), descriptors=saved.descriptors.to_numpy()[:1])
    artifact_id = upload_artifact(artifact_store=artifact_store(studies.multi, studies.url, studies.runs_dir),
                                  file_path=str(npz), study_or_trial=study)
    record = {
        "schema": 1, "rank": 1, "recipe": trial.user_attrs["recipe_mean"], "steps": 231, "time": 23.1,
        "seeds": [100_000], "n_runs": 1, "preset": "tiny", "n_phases": 2,
        "simulated_mean": {k: float(v) for k, v in first.items()},
        "simulated_std": {k: 0.0 for k in first.index},
        "simulated_samples": {n: [float(first[n])] for n in names},
        "target_distance": distances, "score": score(distances), "meets_targets": score(distances) == 0.0,
        "fraction_meeting": float(score(distances) == 0.0),
        "generated_score": trial.user_attrs["score"], "generated_meets_targets": trial.user_attrs["score"] == 0.0,
        "below_spinodal": False, "outside_training": ["log_time"], "nearest_training_recipe": None,
        "artifact_id": artifact_id, "verified_at": "2026-11-25T17:30:00+00:00",
    }
    study.set_user_attr(_data.VERIFICATION_KEY, {
        "schema": 1, "simulation": {"preset": "tiny", "source": "preset", "n_phases": 2}, "descriptors": names,
        "updated": "2026-11-25T17:30:00+00:00", "trials": {str(trial.number): record},
    })


@pytest.fixture(scope="session")
def tiny_studies(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyStudies:
    """Three studies in one SQLite storage, run by :func:`inverse.search.run_study` on the tiny model."""
    from generator.loading import load_generator
    from inverse.search import run_study
    from inverse.spec import StudySpec

    runs = tmp_path_factory.mktemp("dashboard_runs")
    studies = TinyStudies(url=f"sqlite:///{runs / 'studies.db'}", runs_dir=runs, bundle=Path(tiny_bundle))
    generator = load_generator(tiny_bundle)
    common = dict(TINY, generator=str(tiny_bundle))
    specs = [
        StudySpec(name=studies.multi, seed=1, targets={"CT_f_D_tort1": {"at_least": 0.6}},
                  objectives=[{"descriptor": "STAT_e", "direction": "maximize"}], **common),
        StudySpec(name=studies.single, seed=0, targets={
            "ABS_f_D": {"at_least": 0.45, "at_most": 0.55}, "CT_f_D_tort1": {"at_least": 0.5}, "CT_f_A_tort1": {"at_least": 0.5},
        }, **common),
    ]
    for spec in specs:
        study = run_study(spec, generator=generator, storage=studies.url, progress=False, runs_dir=runs, n_jobs=1)
        assert any(t.user_attrs.get("status") == "measured" for t in study.trials), f"{spec.name}: no measured trial"
    _add_verification(studies)
    optuna.create_study(study_name=studies.empty, storage=studies.url)
    return studies


@pytest.fixture()
def open_app(tiny_studies: TinyStudies, monkeypatch: pytest.MonkeyPatch):
    """``open_app(study, page=None)``: an AppTest of the dashboard on ``tiny_studies``, run on ``page``."""
    from streamlit.testing.v1 import AppTest

    from dashboards import _data

    monkeypatch.setenv(_data.STORAGE_ENV, tiny_studies.url)
    monkeypatch.setenv(_data.RUNS_DIR_ENV, str(tiny_studies.runs_dir))

    def _open(study: str, page: str | None = None) -> Any:
        at = AppTest.from_file(str(APP_PATH), default_timeout=120)
        at.query_params["study"] = study
        at.run()
        if page is not None:
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        return at

    return _open


def plotly_figures(at: Any) -> list[dict[str, Any]]:
    """The plotly figures an AppTest rendered, as dicts (typed arrays decoded to numpy)."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict) and "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            if isinstance(shape, str):
                shape = [int(n) for n in shape.split(",")]
            return array.reshape(shape) if shape else array
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return [decode(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def trace(figure: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The trace called ``name`` of a figure (``None`` when absent)."""
    return next((t for t in figure["data"] if t.get("name") == name), None)


def metrics(at: Any) -> dict[str, str]:
    """``{label: value}`` of the page's metrics."""
    return {m.label: m.value for m in at.metric}
