"""Model, loss and train-step modules must not import the data-preparation stack (TF, dlib, librosa)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import sys
import configs.default, configs.tiny
import thflax, thflax.face.geometry, thflax.training.losses, thflax.measures.metrics, thflax.training.parallel, thflax.face.sketch
import thflax.models.stl, thflax.models.ltv, thflax.training.stl_stage, thflax.training.ltv_stage, thflax.training.train_state
import thflax.io.checkpoint, thflax.training.trainer, thflax.inference.generation, thflax.training.tasks, thflax.models.build
import thflax.models.face_features, thflax.training.face_features, thflax.models.syncnet, thflax.training.syncnet_stage
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets", "dlib", "librosa", "cv2"))
print("BAD", bad)
"""

# Inference (generation, evaluation, loading parameters, exporting) builds no training objects.
INFERENCE = """
import sys
import thflax.inference.generation, thflax.inference.networks, thflax.inference.params, thflax.measures.evaluation, thflax.io.images, thflax.models.build
import thflax.measures.lip_sync_expert, thflax.inference.syncnet_weights
train = sorted(m for m in sys.modules if m in ("thflax.training.trainer", "thflax.training.stl_stage", "thflax.training.ltv_stage",
                                                 "thflax.training.train_state", "thflax.training.tasks", "optax"))
print("TRAIN", train)
"""


def test_model_layer_imports_no_data_stack():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BAD []" in out.stdout, out.stdout


def test_inference_imports_no_training_code():
    out = subprocess.run([sys.executable, "-c", INFERENCE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TRAIN []" in out.stdout, out.stdout


# ---- the layout: layers and no cycles (static: every import statement, also those inside functions) ----

import ast  # noqa: E402
import collections  # noqa: E402

#: What each folder may import of this project (besides itself), by module-name prefix. `thflax.errors` and
#: `thflax.configlib` sit under everything. cli, app and the top-level package are entry points: any.
LAYERS = {
    "thflax.io": (),
    "thflax.face": ("thflax.io",),
    "thflax.models": ("thflax.io", "thflax.face"),
    "thflax.synthetic": ("thflax.io", "thflax.face"),
    "thflax.inference": ("thflax.io", "thflax.face", "thflax.models", "thflax.cli", "thflax"),
    "thflax.measures": ("thflax.io", "thflax.face", "thflax.models", "thflax.inference"),
    "thflax.training": ("thflax.io", "thflax.face", "thflax.models", "thflax.measures", "thflax.cli",
                        "input_pipeline", "thflax"),
    "input_pipeline": ("thflax.io", "thflax.face", "thflax.synthetic", "thflax.cli", "thflax"),
}
BASE = ("thflax.errors", "thflax.configlib")


def _modules() -> dict[str, str]:
    """Every module of thflax and input_pipeline: dotted name -> file."""
    found = {}
    for top in ("thflax", "input_pipeline"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                if n.endswith(".py"):
                    dotted = os.path.relpath(os.path.join(folder, n), ROOT)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = os.path.join(folder, n)
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (`from pkg import mod` counts as mod, not pkg)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                         for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_each_folder_imports_only_the_layers_below_it():
    graph = _graph()
    assert {"thflax.io.video", "thflax.face.geometry", "thflax.inference.generation"} <= set(graph)  # finds them
    bad = []
    for name, deps in sorted(graph.items()):
        layer = next((p for p in LAYERS if _within(name, p)), None)
        if layer is None:
            continue
        allowed = (layer, *LAYERS[layer], *BASE)
        # "thflax" alone (the top-level package's lazy names) is allowed only where listed as such.
        bad += [f"{name} -> {d}" for d in sorted(deps)
                if not any(_within(d, a) if a != "thflax" else d == "thflax" for a in allowed)]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layer_check_sees_a_violation():
    """The checks above would fail on a model module importing training code or on a two-module cycle."""
    graph = collections.defaultdict(set, {"thflax.models.x": {"thflax.training.trainer"}})
    layer = "thflax.models"
    allowed = (layer, *LAYERS[layer], *BASE)
    assert not any(_within(d, a) for d in graph["thflax.models.x"] for a in allowed)
