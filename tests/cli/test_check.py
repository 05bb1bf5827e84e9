"""``microdesign check`` on the tiny model."""

from __future__ import annotations

import pytest

from tests.helpers import run_main


@pytest.fixture(scope="module")
def table(tiny_bundle):
    from generator.loading import load_generator

    return load_generator(tiny_bundle).descriptor_table


def test_feasible_target(tiny_bundle, table, monkeypatch, capsys):
    names = ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    z = (table[names] - table[names].mean()) / table[names].std()
    sample = table.iloc[int((z**2).sum(axis=1).to_numpy().argmin())]  # the most typical training sample
    targets = [f"--target={n}={sample[n]:.6f}" for n in ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")]
    code, out, _ = run_main(["check", "--model", str(tiny_bundle), *targets], monkeypatch, capsys)
    assert code == 0, out
    assert out.startswith("feasible:") and "T² =" in out


def test_infeasible_target_says_why_and_where_to_go(tiny_bundle, table, monkeypatch, capsys):
    # the most donor-rich training sample, with the acceptor straight paths of the most acceptor-rich one
    donor_rich = table.loc[table.ABS_f_D.idxmax()]
    args = ["check", "-m", str(tiny_bundle), "-t", f"ABS_f_D={donor_rich.ABS_f_D}", "-t", f"CT_f_A_tort1={table.CT_f_A_tort1.max()}",
            "-t", f"CT_f_D_tort1={table.CT_f_D_tort1.min()}"]
    code, out, _ = run_main(args, monkeypatch, capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("infeasible: ") and "lies outside the training data" in lines[0]
    assert lines[1].startswith("nearest feasible target: ABS_f_D = ")
    # the nearest feasible target really is feasible
    nearest = dict(part.split(" = ") for part in lines[1].removeprefix("nearest feasible target: ").split(", "))
    code, out, _ = run_main(["check", "-m", str(tiny_bundle), *[f"--target={k}={v}" for k, v in nearest.items()]], monkeypatch, capsys)
    assert code == 0, out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("CT_f_X=0.5", "error: --target CT_f_X: unknown descriptor"),
        ("ABS_f_D=1.5", "error: --target ABS_f_D: 1.5 is outside [0, 1]"),
        ("ABS_f_D", "error: --target: expected NAME=VALUE"),
        ("ABS_f_D=abc", "error: --target ABS_f_D: 'abc' is not a number"),
    ],
)
def test_bad_targets(tiny_bundle, target, message, monkeypatch, capsys):
    code, out, err = run_main(["check", "--model", str(tiny_bundle), "--target", target], monkeypatch, capsys)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1 and out == ""
