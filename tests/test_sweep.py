"""Sweep files (schema, line numbers, trial configs), nested dotted overrides, and the launcher's checks that
run before anything is submitted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from salnet.config import Config, ConfigError, set_values
from salnet.losses import LC2
from salnet.sweeps.load import SweepError, load_sweep, sweep_id, trial_config, with_budget

REPO = Path(__file__).resolve().parents[1]

GOOD = """name: good
base: loss_study
overrides:
  train.loss: {kld: 10.0, cc: -2.0, sig_mse: {weight: 1.0, lambda: 0.55}}
space:
  train.loss.sig_mse.lambda: {uniform: [0.1, 0.9]}
  train.loss.kld: {loguniform: [1.0, 30.0]}
metric: cc
mode: max
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["alpha", "sigmse_lambda", "lc1", "lc2"])
def test_shipped_sweeps_load_and_build_trial_configs(name):
    spec = load_sweep(name)
    assert spec.name == name and spec.space and spec.scheduler.name == "asha"
    lows = {k: next(iter(d.values()))[0] for k, d in spec.space.items()}
    cfg = trial_config(spec, lows)
    for key, v in lows.items():  # every searched key lands where the trainer reads it
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert node == v


def test_lc2_sweep_starts_from_the_papers_combination_plus_r():
    spec = load_sweep("lc2")
    assert trial_config(spec, {}).train.loss == {**LC2, "center_bias": 0.1}
    alpha = load_sweep("alpha")
    assert alpha.base == "salgan" and trial_config(alpha, {"train.alpha": 0.2}).train.alpha == 0.2


def test_nested_dotted_keys_set_one_parameter_of_one_term():
    cfg = set_values(Config(), {"train.loss": {"sig_mse": {"weight": 1.0, "lambda": 0.55}}})
    cfg = set_values(cfg, {"train.loss.sig_mse.lambda": 0.3, "train.loss.kld": 2.0})
    assert cfg.train.loss == {"sig_mse": {"weight": 1.0, "lambda": 0.3}, "kld": 2.0}
    cfg = set_values(cfg, {"train.loss.kld": 5.0})
    with pytest.raises(ConfigError, match="kld.*not a mapping"):
        set_values(cfg, {"train.loss.kld.weight": 1.0})
    with pytest.raises(ConfigError, match="did you mean 'train.alpha'"):
        set_values(cfg, {"train.alpah": 1.0})


def test_sweep_id_depends_on_the_spec_and_overrides_not_the_path(tmp_path):
    a = load_sweep(write(tmp_path, GOOD, "a.yaml"))
    b = load_sweep(write(tmp_path, GOOD, "b.yaml"))
    assert sweep_id(a) == sweep_id(b) and sweep_id(a).startswith("good-")
    assert sweep_id(a, {"train.epochs": 3}) != sweep_id(a)
    assert sweep_id(with_budget(a, trials=3)) != sweep_id(a)


@pytest.mark.parametrize("text,line,message", [
    (GOOD.replace("metric: cc", "metric: ccc"), 8, "'ccc' is not a metric"),
    (GOOD.replace("mode: max", "mode: min"), 9, "the wrong way"),
    (GOOD.replace("{uniform: [0.1, 0.9]}", "{uniform: [0.9, 0.1]}"), 6, "low 0.9 must be below high 0.1"),
    (GOOD.replace("{loguniform: [1.0, 30.0]}", "{gaussian: [1.0, 30.0]}"), 7, "expected one of"),
    (GOOD.replace("train.loss.kld:", "train.los.kld:"), 7, "unknown config key 'train.los.kld'"),
    (GOOD.replace("metric: cc", "metric: cc\nbudget: {trails: 3}"), 9, "unknown sweep key 'budget.trails'"),
    (GOOD.replace("metric: cc", "metric: cc\nbudget: {trials: many}"), 9, "budget.trials: expected an integer"),
    (GOOD.replace("base: loss_study", "base: nosuch.yaml"), 2, "neither a preset"),
    (GOOD.replace("  train.loss: {kld", "  train.lss: {kld"), 4, "unknown config key 'train.lss'"),
    (GOOD + "scheduler: {name: hyperband}\n", 10, "unknown scheduler 'hyperband'"),
    (GOOD.replace("space:", "space: [1, 2]\nx:"), 5, "expected a mapping"),
    ("name: bad\nspace: {a: [1,\n", 3, "not valid YAML"),
])
def test_malformed_sweeps_name_the_line_at_fault(tmp_path, text, line, message):
    p = write(tmp_path, text)
    with pytest.raises(SweepError) as exn:
        load_sweep(p)
    assert f"{p}:{line}:" in str(exn.value) and message in str(exn.value), str(exn.value)


def test_unknown_sweep_lists_the_known_ones():
    known = "alpha, lc1, lc2, loss_study, salgan_content, salgan_gan, sigmse_lambda"
    with pytest.raises(SweepError, match=f"unknown sweep 'alpah'.*{known}"):
        load_sweep("alpah")


def launch(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "jobs" / "launch.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_launch_errors_before_submitting_anything(tmp_path, launch_here):
    out = tmp_path / "runs"
    cases = [
        (["--sweep", "nosuch", "--backend", "local"], "unknown sweep 'nosuch'"),
        (["--sweep", "alpha", "--backend", "local", "data.shards=/no/shards"], "no shards at /no/shards"),
        (["--sweep", "alpha", "--backend", "local", "train.alpah=1"], "did you mean 'train.alpha'"),
        (["--train", "salgan", "--backend", "local", "data.shards=/no/shards"], "no shards at /no/shards"),
        (["--train", "/no/config.yaml", "--backend", "local"], "config file /no/config.yaml not found"),
        (["--sweep", "alpha", "--backend", "local", "--time", "soon", "--tiny"], "--time 'soon'"),
    ]
    for args, message in cases:
        res = launch_here(*args, "--out", str(out), cwd=tmp_path, env=dict(os.environ))
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    assert not (out / "sweeps").exists() and not (out / "jobs").exists()


def test_dry_run_prints_the_trials_tune_will_run(tmp_path, launch_here):
    from salnet.run.tuner import planned_trials

    res = launch_here("--sweep", "alpha", "--backend", "local", "--tiny", "--trials", "3", "--dry-run", "--verbose",
                      "--out", str(tmp_path / "runs"), cwd=tmp_path, env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    trials = [ln for ln in res.stdout.splitlines() if ln.startswith("--- trial")]
    planned = planned_trials(with_budget(load_sweep("alpha"), trials=3))
    assert len(trials) == 4 and [f"--- trial {i}: {p}" for i, p in enumerate(planned)] == trials  # + α = 0.05
    assert all(0.005 <= p["train.alpha"] <= 0.5 for p in planned)
    assert "alpha:" in res.stdout and "width: 0.0625" in res.stdout  # --verbose: the full trial configs
    assert not (tmp_path / "runs" / "sweeps").exists()


@pytest.fixture
def plan_of(launch_here):
    """``plan_of(*args, cwd=)``: jobs/launch.py on a machine without Slurm (no SLURM_CONF, no Slurm commands on
    PATH), no VGG-16 weights in the cache (TORCH_HOME: cwd/th) and downloads off."""
    def run(*args, cwd):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env["PATH"] = os.path.dirname(sys.executable) + ":/usr/bin:/bin"
        return launch_here(*args, cwd=cwd, env={**env, "SALNET_OFFLINE": "1", "TORCH_HOME": str(cwd / "th")})
    return run


def test_the_readme_cluster_commands_plan_without_slurm(tmp_path, plan_of, launch_here):
    """`--dry-run` asks Slurm nothing: salgan_gan's plan in about 15 lines — the ImageNet encoder (MISSING here,
    with how to provide it), one shared bootstrap that every trial starts from, a line per trial with only what
    differs from the base config, the jobs and the GPU-hours."""
    res = plan_of("--partition", "gpu", "--sweep", "salgan_gan", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) <= 40, out
    assert "Slurm is not asked" in out and "sinfo" not in out
    assert "shards   MISSING" in out and "python jobs/pack.py salicon --root RAW --out" in out
    assert "weights  MISSING imagenet" in out and "SALNET_VGG16_WEIGHTS" in out
    (stage,) = [ln for ln in lines if ln.strip().startswith("S0 ")]
    assert "15 epoch(s)" in stage and "trials 0, 1, 2, 3" in stage
    rows = [ln for ln in lines if "after S0" in ln]
    assert len(rows) == 4 and "train.adversarial=False" in rows[0] and "train.alpha=0.5" in rows[3]
    assert all("105 epoch(s)" in r for r in rows)
    (compute,) = [ln for ln in lines if ln.startswith("compute:")]
    assert "435 epochs of 10000 training images" in compute and "GPU-hours" in compute
    # with the weights in place (the one setting an offline cluster uses), the plan names the file
    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(b"")
    env_res = launch_here("--partition", "gpu", "--sweep", "alpha", "--dry-run", cwd=tmp_path,
                          env={**os.environ, "SALNET_VGG16_WEIGHTS": str(weights), "SLURM_CONF": "/nonexistent"})
    assert env_res.returncode == 0, env_res.stderr
    assert f"weights  imagenet: {weights}" in env_res.stdout + env_res.stderr
    assert "13 trial(s)" in env_res.stdout + env_res.stderr  # 12 samples and the paper's α
    for sweep in ("loss_study", "sigmse_lambda", "lc1", "lc2", "salgan_content"):
        res = plan_of("--partition", "gpu", "--sweep", sweep, "--dry-run", cwd=tmp_path)
        assert res.returncode == 0 and "weights  MISSING imagenet" in res.stdout + res.stderr, (sweep, res.stderr)


@pytest.mark.parametrize("args, message", [
    (["data.batch_size=0"], "data.batch_size=0: must be an integer ≥ 1"),
    (["data.batch_size=-1"], "data.batch_size=-1: must be an integer ≥ 1"),
    (["train.epochs=-3"], "train.epochs=-3: must be an integer ≥ 1"),
    (["train.bootstrap_epochs=-1"], "train.bootstrap_epochs=-1: must be an integer ≥ 0"),
    (["train.lr=0"], "train.lr=0.0: must be a number > 0"),
    (["train.bootstrap_lr=-0.1"], "train.bootstrap_lr=-0.1: must be a number > 0"),
    (["data.input_size=[8, 8]"], "data.input_size=[8, 8]: must be at least 32×32"),
    (["data.input_size=[40, 56]"], "must be multiples of 16"),
    (["data.workers=-1"], "data.workers=-1: must be an integer ≥ 0"),
    (["train.patience=0"], "train.patience=0: must be an integer ≥ 1"),
    (["train.optimizer=adamw"], "train.optimizer='adamw': must be one of lasagne_adagrad"),
    (["--trials", "-2"], "--trials -2: must be an integer ≥ 1"),
    (["--max-concurrent", "0"], "--max-concurrent 0: must be an integer ≥ 1"),
    (["--gpus-per-node", "-1"], "--gpus-per-node -1: must be an integer ≥ 0"),
    (["--nodes", "0"], "--nodes 0: must be an integer ≥ 1"),
    (["--cpus-per-task", "0"], "--cpus-per-task 0: must be an integer ≥ 1"),
    (["--time", "0"], "--time '0': use a positive time"),
    (["--mem", "0"], "--mem 0.0: must be a positive number"),
    (["--max-num-timeout", "-1"], "--max-num-timeout -1: must be an integer ≥ 0"),
])
def test_impossible_values_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, args,
                                                                         message):
    import importlib.util

    monkeypatch.chdir(tmp_path)  # in this process: jobs/launch.py's main() as the command runs it
    spec = importlib.util.spec_from_file_location("launch_script", REPO / "jobs" / "launch.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rc = script.main(["--sweep", "alpha", "--backend", "local", "--tiny", "--out", str(tmp_path / "runs"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_a_gpu_less_slurm_job_of_the_full_network_is_refused(tmp_path, plan_of):
    res = plan_of("--partition", "gpu", "--sweep", "salgan_gan", "--gpus-per-node", "0", "--dry-run", cwd=tmp_path)
    assert res.returncode == 2 and "--gpus-per-node 0: the full-size network needs at least one GPU" in res.stderr


def test_missing_weights_stop_a_launch_before_any_folder_or_job(tmp_path, plan_of):
    """A real launch resolves model.weights first: with no file (and downloads off) it stops with one error naming
    the file it looked for and the ways to provide it; nothing is written."""
    from helpers import synthetic_shards

    shards = synthetic_shards(tmp_path / "data", {"train": 4, "val": 2}, (32, 48), 0.05)
    for args in (["--sweep", "salgan_gan"], ["--train", "salgan"], ["--train", "loss_study"]):
        res = plan_of(*args, "--backend", "local", f"data.shards={shards}", "--out", str(tmp_path / "runs"),
                      cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert "vgg16-397923af.pth is not cached" in res.stderr and "SALNET_VGG16_WEIGHTS=" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_time_formats():
    from salnet.run.launch import parse_time

    assert [parse_time(t) for t in ("90", "1:30:00", "2-00:00:00", "45:00", "0:30", "1-12")] == [90, 90, 2880, 45, 1,
                                                                                                  2160]


def test_sweep_in_this_process_stops_early_and_retries_a_failing_trial(tmp_path):
    """The sweep driver without Slurm (--backend debug: Ray Tune here, every job inside its trial): a grid of a
    learning trial, a non-learning one (lr 1e-12: ASHA stops it at its first rung) and a diverging one (lr 1e30:
    NaN → retried once → failed); the sweep goes on and records each outcome."""
    import json

    from helpers import synthetic_shards

    shards = synthetic_shards(tmp_path / "data", {"train": 16, "val": 4, "test": 4}, (32, 48), 0.05)
    spec = write(tmp_path, """name: three
base: salgan
overrides: {train.procedure: content, train.optimizer: adam, train.bootstrap_epochs: 0,
            train.loss: {kld: 1.0, cc: -1.0}}
space:
  train.lr: {grid: [0.003, 1.0e-12, 1.0e+30]}
search: {algorithm: grid}
metric: cc
mode: max
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
budget: {trials: 1, max_concurrent: 1, retries: 1}
resources: {gpus_per_trial: 0, cpus_per_task: 1}
""")
    res = launch("--sweep", str(spec), "--backend", "debug", "--tiny", "--out", str(tmp_path / "runs"), "--no-evaluate",
                 f"data.shards={shards}", "data.input_size=[32, 48]", "train.epochs=3", "train.log_every=1",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (sweep,) = (tmp_path / "runs" / "sweeps").glob("three-*")
    recs = [json.loads((sweep / "trials" / t / "trial.json").read_text()) for t in ("t00000", "t00001", "t00002")]
    assert [r["params"]["train.lr"] for r in recs] == [0.003, 1e-12, 1e30]
    assert [r["status"] for r in recs] == ["done", "stopped", "failed"]
    assert recs[2]["attempts"] == 2 and recs[2]["error"].startswith("FloatingPointError: non-finite")
    epochs = [len((sweep / "trials" / t / "metrics.jsonl").read_text().splitlines()) for t in ("t00000", "t00001")]
    assert epochs == [3, 3]  # in-process jobs run to their end before Tune sees them; Slurm jobs are cancelled
    # Tune keeps every checkpoint, so a killed driver's saved state never names one already deleted
    assert len(list((sweep / "ray" / "tune" / "t00000").glob("checkpoint_*"))) == 3
    state = json.loads((sweep / "state.json").read_text())
    assert state["trials"] == {"done": 1, "stopped": 1, "failed": 1} and state["best"]["trial"] == "t00000"


def test_each_sweep_gets_its_own_ray_ports_and_temp_dir():
    from salnet.run.ray_head import RayHead, worker_port_range

    a, b = worker_port_range("alpha-1a2b3c4d5e6f"), worker_port_range("alpha-0f0e0d0c0b0a")
    assert a == worker_port_range("alpha-1a2b3c4d5e6f") and a != b
    assert all(20000 <= lo < hi < 60000 and hi - lo == 199 for lo, hi in (a, b))
    ha, hb = RayHead(Path("x"), 1, "alpha-1a2b3c4d5e6f"), RayHead(Path("x"), 1, "alpha-0f0e0d0c0b0a")
    assert ha.temp_dir != hb.temp_dir and len(str(ha.temp_dir)) < 40  # Unix sockets live below it (107 bytes)


@pytest.mark.parametrize("script", ["status.py", "cancel.py", "evaluate.py"])
def test_sweep_commands_name_a_missing_sweep(tmp_path, script, script_here):
    for target in ("nosuch", str(tmp_path / "no" / "folder")):
        res = script_here(script.removesuffix(".py"), target, "--out", str(tmp_path))
        assert res.returncode == 2 and f"no sweep folder {target!r}" in res.stderr, res.stderr


def test_ray_component_ports_avoid_the_worker_range(monkeypatch):
    from salnet.run import ray_head

    seq = iter([20010, 20010, 20150, 30001, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008])
    monkeypatch.setattr(ray_head, "free_port", lambda: next(seq))
    ports = ray_head.component_ports(20000, 20199)
    assert list(ports) == list(ray_head.PORTS) and list(ports.values()) == [30001, *range(30002, 30009)]


def test_seeds_repeat_every_point_and_every_sample(tmp_path):
    """``seeds: N`` (or ``--seeds N``) runs each point, and each random sample with the same values, once per seed;
    a shared first stage runs once per seed."""
    import dataclasses

    from salnet.run.tuner import planned_trials
    from salnet.sweeps.load import grid_size, shared_stages, with_seeds

    gan = with_seeds(load_sweep("salgan_gan"), 2)
    trials = planned_trials(gan)
    assert len(trials) == grid_size(gan) == 8
    assert sorted((t["point"], t["train.seed"]) for t in trials) == sorted(
        (p["label"], s) for p in gan.points for s in (0, 1))
    stages = shared_stages(gan, trials, {}, tmp_path)
    assert sorted(cfg.train.seed for cfg, _ in stages.values()) == [0, 1]
    assert all(len(users) == 4 for _, users in stages.values())
    alpha = with_budget(dataclasses.replace(load_sweep("alpha"), seeds=[3, 7], fixed=[]), trials=3)
    sampled = planned_trials(alpha)
    assert len(sampled) == 6
    by_alpha: dict[float, list[int]] = {}
    for t in sampled:
        by_alpha.setdefault(t["train.alpha"], []).append(t["train.seed"])
    assert len(by_alpha) == 3 and all(sorted(s) == [3, 7] for s in by_alpha.values())
    # one seed (the default) adds no parameter: the trials of a sweep without seeds are what they were
    assert "train.seed" not in planned_trials(load_sweep("salgan_gan"))[0]


@pytest.mark.parametrize("seeds, message", [("0", "give a count ≥ 1"), ("[1, 1]", "distinct seeds"),
                                            ("[-1]", "distinct seeds ≥ 0")])
def test_bad_seeds_name_the_line(tmp_path, seeds, message):
    text = (REPO / "sweeps" / "salgan_gan.yaml").read_text() + f"seeds: {seeds}\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(SweepError, match=message):
        load_sweep(tmp_path / "s.yaml")


def test_a_failed_shared_bootstrap_fails_the_sweep_naming_its_log(tmp_path):
    """The bootstrap diverges (NaN): its job fails (no retries here), the sweep stops before any trial with one error
    naming the stage and its job's log; the state says failed."""
    import json

    from helpers import synthetic_shards

    shards = synthetic_shards(tmp_path / "data", {"train": 8, "val": 4}, (32, 48), 0.05)
    spec = write(tmp_path, """name: boot
base: salgan
overrides: {train.epochs: 2, train.bootstrap_epochs: 1, train.bootstrap_lr: 1.0e+30}
search: {algorithm: points}
points:
  - {label: BCE/4, train.adversarial: false}
  - {label: GAN/4, train.alpha: 0.05}
metric: cc
mode: max
scheduler: {name: fifo}
budget: {trials: 1, max_concurrent: 2, retries: 0}
resources: {gpus_per_trial: 0, cpus_per_task: 1}
""")
    res = subprocess.run([sys.executable, str(REPO / "jobs" / "launch.py"), "--sweep", str(spec), "--backend",
                          "local", "--tiny", "--out", str(tmp_path / "runs"), "--no-evaluate",
                          f"data.shards={shards}", "data.input_size=[32, 48]"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    (error,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "the shared first stage" in error and "failed 1 time(s)" in error and "non-finite" in error
    log = error.rsplit("its log: ", 1)[1]
    assert log.endswith(".err") and "FloatingPointError" in Path(log).read_text()
    (sweep,) = (tmp_path / "runs" / "sweeps").glob("boot-*")
    state = json.loads((sweep / "state.json").read_text())
    assert state["status"] == "failed" and list(state["stages"].values()) == ["failed"]
    assert not (sweep / "trials").exists() or not any((sweep / "trials").iterdir())


def test_a_random_search_runs_its_fixed_trials_first_and_besides_its_samples():
    """alpha.yaml's fixed α = 0.05 (the paper's, its control) runs first; the 12 samples are those drawn without it."""
    import dataclasses

    from salnet.run.tuner import planned_trials
    from salnet.sweeps.load import grid_size, with_seeds

    alpha = load_sweep("alpha")
    trials = planned_trials(alpha)
    assert trials[0] == {"train.alpha": 0.05} and len(trials) == 13
    assert trials[1:] == planned_trials(dataclasses.replace(alpha, fixed=[]))
    seeded = planned_trials(with_seeds(alpha, 2))
    assert seeded[:2] == [{"train.alpha": 0.05, "train.seed": 0}, {"train.alpha": 0.05, "train.seed": 1}]
    assert grid_size(load_sweep("salgan_gan")) == 4


def test_the_plan_of_a_loss_study_counts_the_feature_cache(tmp_path, plan_of):
    """With the cache that data.features=auto finds, the plan names it and the compute is the head's alone."""
    import re

    from salnet.data.features import default_folder

    shards = tmp_path / "shards" / "mit1003"

    def pflop() -> tuple[float, str]:
        res = plan_of("--partition", "gpu", "--sweep", "loss_study", "--points", "MSE", "--dry-run",
                      f"data.shards={shards}", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        out = res.stdout + res.stderr
        return float(re.search(r"([\d,.]+) PFLOP", out).group(1).replace(",", "")), out

    plain, out = pflop()
    assert "features none" in out
    cache = default_folder(shards, (300, 400))
    cache.mkdir(parents=True)
    (cache / "manifest.json").write_text("{}")
    cached, out = pflop()
    assert f"features {cache}" in out
    assert 5 < plain / cached < 9  # 85.4 → 12.5 GFLOP a step, 78.8 → 6.0 a validation image
