"""salnet's shape, read from the source: its parts stacked in layers that import only downwards (lazy imports
included), its root holding only the shared utilities, only salnet.run importing submitit or Ray, no import
circle, no sys.path edits, no pickling by value, and importing the job layer leaving the environment alone."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers import synthetic_shards

REPO = Path(__file__).resolve().parents[1]
CLUSTER_PACKAGES = ("submitit", "ray", "cloudpickle")
# the one file that pickles a module by value (no file edits sys.path), with why; not part of the job layer
PICKLE_BY_VALUE_EXCEPTIONS = {  # a test-only function run as a 2-task Slurm job: the job cannot import tests/slurm
    "tests/slurm/test_train_slurm.py": "pickles tests/slurm/sweep_helpers.py by value"}
# salnet's parts, lowest first: a module may import its own layer and the layers above it in this table, never
# one below it (lazy imports included). A module belongs to the longest package named here that holds it, so
# "salnet" stands for the root's own modules; the root holds nothing else (test_the_root_holds_only_utilities).
LAYERS = (
    ("utilities", ("salnet", "salnet.atomic", "salnet.config", "salnet.logs", "salnet.native", "salnet.imresize",
                   "salnet.metric_names")),
    ("building blocks", ("salnet.data", "salnet.losses", "salnet.metrics", "salnet.models")),
    ("training", ("salnet.train",)),
    ("inference", ("salnet.inference",)),
    ("interop", ("salnet.interop",)),
    ("sweeps", ("salnet.sweeps",)),
    ("recipes", ("salnet.recipes",)),
    ("job layer", ("salnet.run",)),  # the only part that drives Slurm and Ray
    ("scripts", ("jobs",)),
)
ROOT_FILES = {"__init__.py", "atomic.py", "config.py", "logs.py", "native.py", "imresize.py", "metric_names.py",
              "csrc"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imported(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names, at any depth (lazy imports included); ``from a import
    b`` names both ``a`` and ``a.b``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return out


def sources() -> dict[str, Path]:
    """salnet's modules and the scripts in jobs/ (as ``jobs.<name>``), by module name."""
    files = [*sorted((REPO / "salnet").rglob("*.py")), *sorted((REPO / "jobs").glob("*.py"))]
    return {module_name(p): p for p in files}


def is_in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_only_salnet_run_imports_submitit_or_ray_and_the_library_never_imports_it():
    offenders = []
    for name, path in sources().items():
        for mod in imported(path):
            cluster = any(is_in(mod, p) for p in CLUSTER_PACKAGES)
            if cluster and not is_in(name, "salnet.run"):
                offenders.append(f"{path.relative_to(REPO)} imports {mod} (only salnet.run may)")
            if is_in(mod, "salnet.run") and not (is_in(name, "salnet.run") or is_in(name, "jobs")):
                offenders.append(f"{path.relative_to(REPO)} imports {mod} (the library must not use salnet.run)")
    assert not offenders, "\n".join(offenders)
    assert any(is_in(m, "ray") for m in imported(REPO / "salnet/run/tuner.py"))  # the walk sees imports


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    """No two modules of salnet/ or jobs/ import each other, directly or through others, lazy imports included."""
    mods = sources()
    graph = {name: {m for m in imported(p) if m in mods and m != name} for name, p in mods.items()}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the walk finds one
    assert "salnet.sweeps.summary" in graph["salnet.run.evaluate"]  # the walk sees lazy imports
    assert not cycles(graph), cycles(graph)


def layer_of(name: str) -> int | None:
    """The index in LAYERS of module ``name`` (the longest package of the table that holds it); None outside."""
    found = [(len(pkg), i) for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs if is_in(name, pkg)]
    return max(found)[1] if found else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of ``graph`` (module → the modules it imports) from a lower layer to a higher one."""
    out = []
    for name, mods in sorted(graph.items()):
        low = layer_of(name)
        for mod in sorted(mods):
            high = layer_of(mod)
            if low is not None and high is not None and high > low:
                out.append(f"{name} ({LAYERS[low][0]}) imports {mod} ({LAYERS[high][0]})")
    return out


def test_layers_import_only_downwards():
    """Utilities < data, losses, metrics, models < train < inference < interop < sweeps < recipes < run < jobs/:
    no module imports a layer above its own, lazy imports included."""
    assert upward_imports({"salnet.metrics.score": {"salnet.models.baselines", "torch"},
                           "salnet.train.validate": {"salnet.inference.predict"},
                           "salnet.config": {"salnet.atomic", "salnet.data.sample"}}) == [
        "salnet.config (utilities) imports salnet.data.sample (building blocks)",
        "salnet.train.validate (training) imports salnet.inference.predict (inference)"]  # the check sees one
    assert layer_of("salnet") == layer_of("salnet.native") == 0 and layer_of("salnet.sweeps.summary") == 5
    graph = {name: imported(p) for name, p in sources().items()}
    assert "salnet.models.baselines" in graph["salnet.run.train"]  # the walk sees lazy imports
    assert not upward_imports(graph), "\n".join(upward_imports(graph))


def test_the_root_holds_only_utilities():
    """salnet/ itself holds the shared utilities and the packages of LAYERS, nothing else."""
    packages = {pkg.split(".")[1] for _, pkgs in LAYERS[1:] for pkg in pkgs if pkg.startswith("salnet.")}
    assert {f"{m.split('.')[1]}.py" for m in LAYERS[0][1][1:]} | {"__init__.py", "csrc"} == ROOT_FILES
    found = {p.name for p in (REPO / "salnet").iterdir() if p.name != "__pycache__"}
    assert found - ROOT_FILES - packages == set(), "move these into a package of LAYERS"
    assert packages <= found and all((REPO / "salnet" / p / "__init__.py").is_file() for p in packages)
    assert all(layer_of(name) is not None for name in sources())


def edits(node: ast.AST) -> str | None:
    """What ``node`` does to the import machinery (a change of sys.path, pickling a module by value) or None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        target = ast.unparse(node.func)
        if target.startswith("sys.path.") or node.func.attr == "register_pickle_by_value":
            return target
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return next((t for t in map(ast.unparse, targets) if t.startswith("sys.path")), None)
    return None


def test_no_sys_path_edits_and_no_pickling_by_value():
    assert edits(ast.parse("sys.path.insert(0, 'x')").body[0].value) == "sys.path.insert"
    offenders = []
    for path in [*(REPO / "salnet").rglob("*.py"), *(REPO / "jobs").glob("*.py"), *(REPO / "tests").rglob("*.py"),
                 *(REPO / "benchmarks").rglob("*.py")]:
        rel = str(path.relative_to(REPO))
        offenders += [f"{rel}:{n.lineno}: {what}" for n in ast.walk(ast.parse(path.read_text()))
                      if (what := edits(n)) and not (rel in PICKLE_BY_VALUE_EXCEPTIONS and "pickle" in what)]
    assert not offenders, "\n".join(offenders)


def test_importing_the_job_layer_leaves_the_environment_alone():
    """Every salnet.run module and every script of jobs/ imported (not run) in a fresh interpreter: os.environ
    is what it was (Ray and submitit imported first: Ray sets RAY_CLIENT_MODE itself on import)."""
    scripts = sorted(str(p) for p in (REPO / "jobs").glob("*.py"))
    modules = sorted(n for n in sources() if is_in(n, "salnet.run"))
    code = f"""
import importlib, importlib.util, os, ray, ray.tune, submitit
before = dict(os.environ)
for name in {modules!r}:
    importlib.import_module(name)
for i, path in enumerate({scripts!r}):
    spec = importlib.util.spec_from_file_location(f"script{{i}}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print("changed:", changed)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "changed: []" in out.stdout, out.stdout
    assert len(modules) > 10 and len(scripts) > 8


# a trial's config as a trial runner makes and checks it, and a launcher's input checks (shards, weights)
NO_TORCH = """import sys; sys.modules['torch'] = None
import runpy, salnet.run.tuner
runpy.run_path('jobs/launch.py')  # the launcher script's imports
from salnet.run.train import check_inputs
from salnet.run.tuner import planned_trials
from salnet.sweeps.load import load_sweep, trial_run_config
spec = load_sweep('alpha')
cfg = trial_run_config(spec, planned_trials(spec)[0], {'model.weights': 'random', 'data.shards': sys.argv[1]}, None)
check_inputs(cfg, 'sweep alpha')
print('ok', cfg.train.alpha)
"""


def test_the_sweep_layer_imports_and_checks_configs_without_torch(tmp_path):
    """The sweep driver's Ray trial runners, which only submit and follow jobs, and the Slurm launcher import their
    modules and check a trial's config and inputs without torch: two seconds of CPU less for each of them. The
    metric names they read are salnet.metrics' own."""
    shards = synthetic_shards(tmp_path, {"train": 2, "val": 1}, (32, 48), 0.05)
    out = subprocess.run([sys.executable, "-c", NO_TORCH, str(shards)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stdout == "ok 0.05\n", out.stderr[-3000:]
    from salnet.metric_names import METRIC_NAMES, PAPER_COLUMNS
    from salnet.metrics import METRICS

    assert tuple(METRICS) == METRIC_NAMES and set(PAPER_COLUMNS) == set(METRIC_NAMES)
    assert [m for m in METRICS if not METRICS[m].higher_is_better] == ["kld", "emd"]
