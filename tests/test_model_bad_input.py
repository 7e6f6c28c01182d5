"""Bad input to every `mlship model` command: one line naming the problem, exit 2, nothing partial written."""

from __future__ import annotations

import pytest
from model_support import SMALL, mlship, workspace_args


@pytest.fixture
def run(tmp_path, capsys):
    """Run a command; return (exit code, stderr lines) and check nothing was written."""

    def run_command(*args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = mlship(*args, *workspace_args(tmp_path))
        written = [p for p in (tmp_path / "build").rglob("*")] + [p for p in (tmp_path / "dist").rglob("*")]
        assert written == [], f"partial output left behind: {written}"
        return code, capsys.readouterr().err.splitlines()

    return run_command


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CUSTOMERS = "tenure,plan,churned\n" + "".join(f"{i},{'gold' if i % 3 else 'basic'},{i % 2}\n" for i in range(40))


@pytest.mark.parametrize(
    ("make_csv", "target", "message"),
    [
        (lambda tmp: str(tmp / "nowhere.csv"), "churned", "data file {tmp}/nowhere.csv not found"),
        (lambda tmp: write(tmp, "empty.csv", ""), "churned", "empty.csv is empty; expected a header row and data rows"),
        (lambda tmp: write(tmp, "header.csv", "tenure,plan,churned\n"), "churned", "header.csv has a header but no data rows"),
        (lambda tmp: write(tmp, "c.csv", CUSTOMERS), "left", "target column 'left' not in {tmp}/c.csv; its columns are tenure, plan, churned"),
        (lambda tmp: write(tmp, "t.csv", CUSTOMERS.replace("\n7,", "\nseven,", 1)), "churned",
         "t.csv line 9, column 'tenure': 'seven' is not a number"),
        (lambda tmp: write(tmp, "y.csv", CUSTOMERS.replace(",1\n", ",maybe\n", 1)), "churned",
         "target column 'churned', data row 2 of {tmp}/y.csv: 'maybe' is not a class; use 0/1, true/false or yes/no"),
        (lambda tmp: write(tmp, "one.csv", "x,churned\n" + "1,1\n" * 20), "churned", "holds only one class ('1'); it needs both"),
    ],
)
def test_bad_training_data(run, tmp_path, make_csv, target, message):
    code, error = run("train", "--data", make_csv(tmp_path), "--target", target)
    assert code == 2 and len(error) == 1
    assert error[0].startswith("mlship model: error: ")
    assert message.format(tmp=tmp_path) in error[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate"], "no trained model churn-1.0.0"),
        (["package"], "no trained model churn-1.0.0"),
        (["train", "--version", "1.0"], "version '1.0' is not a semantic version"),
        (["train", "--set", "gates.auc=0.9"], "gate 'auc' is not a metric; choose from auc_roc, precision"),
        (["train", "--set", "holdout=0.9"], "setting 'holdout' must be between 0.05 and 0.5"),
        (["train", "--set", "colour=blue"], "unknown setting 'colour'"),
        (["train", "--settings", "/nonexistent/settings.yaml"], "settings file /nonexistent/settings.yaml not found"),
        (["train", "--set", "features=[tenure_months,shoe_size]"], "feature 'shoe_size' not in synthetic"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["publish", "--bucket", "b", "--region", "eu-west-1"], "no packaged release at"),
    ],
)
def test_bad_settings_and_order_of_commands(run, args, message):
    code, error = run(*args)
    assert code == 2 and len(error) == 1 and message in error[0], error


def test_failed_training_keeps_the_previous_model(tmp_path, capsys):
    options = [*SMALL, *workspace_args(tmp_path)]
    assert mlship("train", *options) == 0
    model = tmp_path / "build/churn-1.0.0/model.joblib"
    before = model.read_bytes()
    assert mlship("train", *options, "--data", str(tmp_path / "missing.csv")) == 2
    assert model.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["churn-1.0.0"]  # no temp folders left
