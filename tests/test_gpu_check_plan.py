"""The GPU check on a lent machine (no ../shared, no package index): the OSIE step skipped and not counted, a
failing recipe reported, the budget plan at worst inside the 8 minutes, only the missing packages installed, from
the carried wheels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]


def test_the_default_recipe_is_skipped_without_shared_and_runs_with_it(tmp_path):
    nowhere = tmp_path / "nowhere"
    plan = gpu_check.steps(False, tmp_path / "out", gpu_check.DEFAULT_RECIPE, nowhere)
    skipped = {s.id: s.skip for s in plan if s.skip}
    assert list(skipped) == ["osie"] and skipped["osie"].startswith("skipped: no ../shared (osie and vgg16_")
    dry = gpu_check.steps(True, tmp_path / "out", None, nowhere)  # a dry run shows the row a lent machine gives
    assert dry[-1].skip == skipped["osie"]
    shared = tmp_path / "shared"
    for _, there, _ in gpu_check.recipe_inputs(shared):
        there.parent.mkdir(parents=True, exist_ok=True)
        there.touch()
    osie = gpu_check.steps(False, tmp_path / "out", gpu_check.DEFAULT_RECIPE, shared)[-1]
    assert osie.skip == ""
    assert osie.argv[-4:] == ["--data", str(shared / "data" / "osie"), "--weights",
                              str(shared / "weights" / "vgg16_features_hed_bsds500_fp16.pth")]
    # an explicit recipe (tests, another script) runs as given, whatever ../shared holds
    assert gpu_check.steps(False, tmp_path / "out", tmp_path / "mine.py", nowhere)[-1].skip.endswith("missing")


def test_the_budget_plan_at_worst(tmp_path):
    plan = gpu_check.steps(False, tmp_path / "out", gpu_check.DEFAULT_RECIPE, tmp_path / "nowhere")
    fits, text = gpu_check.plan(480, 230, plan)
    lines = text.splitlines()
    assert fits and lines[0] == "budget plan, at worst: setup 230 s"
    allotted = {ln.split(":")[0].strip(): ln.split(":")[1].split()[0] for ln in lines[1:-1]}
    assert allotted == {"env": "60", "adversarial": "80", "loss_study": "20", "loader_step": "20", "metrics": "20",
                        "pytest_gpu": "20", "compiled": "20", "osie": "skipped"}
    assert lines[-1] == "archive 10 s; total 480 s of 480 s: fits, every step gets at least its minimum"
    assert gpu_check.plan(480, 340, plan) == (False, gpu_check.plan(480, 340, plan)[1])  # the 240 s fallback: no
    assert gpu_check.plan(480, 340, plan)[1].endswith("DOES NOT FIT")


def fake_wheel(folder: Path, dist: str, module: str) -> None:
    """A minimal pure-Python wheel ``dist`` 0.0.0 whose ``module`` records where it was imported from."""
    info = f"{dist}-0.0.0.dist-info"
    with zipfile.ZipFile(folder / f"{dist}-0.0.0-py3-none-any.whl", "w") as z:
        z.writestr(f"{module}.py", "FROM_WHEEL = True\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", f"{module}.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")


def test_only_missing_packages_are_installed_from_their_wheels(tmp_path):
    """A Python that has torch, numpy and scipy but not webdataset, braceexpand or POT (this environment with those
    hidden); .whl holds wheels of those three and one of numpy: gpu_env.sh installs the three (--no-deps) and
    leaves numpy the machine's own."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    hidden = ("webdataset", "braceexpand", "ot", "pot")
    visible = tmp_path / "machine"
    visible.mkdir()
    for entry in site.iterdir():
        if entry.name.split("-")[0].split(".")[0].lower() not in hidden:
            (visible / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "py")], check=True, timeout=120)
    venv_site = next((tmp_path / "py" / "lib").glob("python3*/site-packages"))
    (venv_site / "machine.pth").write_text(f"{visible}\n")
    wheels = tmp_path / ".whl"
    wheels.mkdir()
    for dist, module in (("webdataset", "webdataset"), ("braceexpand", "braceexpand"), ("POT", "ot"),
                         ("numpy", "numpy")):
        fake_wheel(wheels, dist, module)
    probe = "import braceexpand, numpy, ot, webdataset; print(webdataset.__file__, ot.__file__, numpy.__file__)"
    script = f"DRY=1; TAG=t; source {REPO / 'benchmarks' / 'gpu_env.sh'}; echo site=$SITE; \"$PY\" -c '{probe}'"
    env = {**os.environ, "PYTHON": str(tmp_path / "py" / "bin" / "python")}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "t: installing webdataset braceexpand POT into" in out.stdout, out.stdout
    tmp_site = next(ln for ln in lines if ln.startswith("site=")).removeprefix("site=")
    wds_file, ot_file, np_file = lines[-1].split()
    assert wds_file == f"{tmp_site}/webdataset.py" and ot_file == f"{tmp_site}/ot.py"
    assert np_file.startswith(str(visible / "numpy"))  # the machine's numpy, not the wheel's


@pytest.mark.slow
def test_a_failing_recipe_is_reported_and_fails_the_check(tmp_path):
    """GPU_CHECK_STEPS=metrics,osie gpu_check.sh --dry with a recipe that exits 3: only those two steps run, the
    recipe's row is FAILED with the end of its output (the arguments it was given: OSIE's own epochs, the device,
    OUT/osie), the metrics step is ok regardless, and the exit status is 1. An unknown step id is refused, naming
    the steps."""
    recipe = tmp_path / "recipe.py"
    recipe.write_text("import sys\nprint('recipe args', sys.argv[1:])\nsys.exit(3)\n")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "OSIE_RECIPE": str(recipe), "PYTHON": sys.executable,
           "GPU_CHECK_STEPS": "metrics,osie"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the recipe failed, nothing else
    rows = {r["id"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert list(rows) == ["metrics", "osie"] and rows["metrics"]["status"] == "ok"
    assert rows["osie"]["status"] == "FAILED" and rows["osie"]["summary"].startswith("exit 3: recipe args")
    assert "--device" in rows["osie"]["summary"] and str(out / "osie") in rows["osie"]["summary"]
    assert "'--passes', '1'" in rows["osie"]["summary"]  # OSIE's own epochs: what fits the check's budget
    table = (out / "summary.txt").read_text().splitlines()
    assert len(table) == 3 and "FAILED" in table[-1] and "exit 1" in (out / "gpu_check.log").read_text()
    with pytest.raises(SystemExit) as refused:
        gpu_check.main(["--dry", "--out", str(tmp_path / "o2"), "--steps", "metrics,gpu"])
    assert refused.value.code == 2
