"""Safety (issue 7, part 5): no input file can run code, and nothing listens beyond loopback.

Static checks walk the AST of every module in nas/ (import aliases resolved, so `import yaml as y;
y.load` is caught too): YAML is loaded only with safe loading, `torch.load` always passes
`weights_only=True`, pickle is used only through the restricted CIFAR unpickler in nas/training/data.py,
and a private Ray has no dashboard on a public interface. Behavioural checks feed YAML with
Python object tags to every loader and to the CLI, and check that nothing ran.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import nas
from nas.cli import main
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch, space_path
from nas.spec.space import SearchSpace

PACKAGE = Path(nas.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# -- a small AST toolkit ---------------------------------------------------------------------
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> qualified name, from every import in the module (also those inside functions)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`np.load` -> `numpy.load` given `import numpy as np`; None for non-dotted expressions."""
    dotted = _dotted(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    if head not in aliases:
        return None  # a local variable or attribute chain, not an imported name
    return f"{aliases[head]}.{rest}" if rest else aliases[head]


def _references(tree: ast.Module, aliases: dict[str, str]) -> Iterator[tuple[ast.AST, str]]:
    """Every use of an imported name (calls, attribute reads, base classes...), qualified."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
            name = _qualified(node, aliases)
            if name is not None:
                yield node, name


def _calls(tree: ast.Module, aliases: dict[str, str], name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _qualified(node.func, aliases) == name:
            yield node


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 1)}"


MODULES = [(path, _tree(path)) for path in SOURCES]


# -- static checks ---------------------------------------------------------------------------
UNSAFE_YAML = {
    f"yaml.{name}"
    for name in ("load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
                 "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader", "add_constructor",
                 "add_multi_constructor")
}


Modules = list[tuple[Path, ast.Module]]


def yaml_violations(modules: Modules) -> list[str]:
    bad = []
    for path, tree in modules:
        for node, name in _references(tree, _aliases(tree)):
            if name in UNSAFE_YAML:
                bad.append(f"{_where(path, node)} uses {name}")
    return bad


def torch_load_violations(modules: Modules) -> list[str]:
    bad = []
    for path, tree in modules:
        aliases = _aliases(tree)
        for name in ("torch.load", "torch.serialization.load"):
            for call in _calls(tree, aliases, name):
                flag = _keyword(call, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    bad.append(f"{_where(path, call)}: {name} without weights_only=True")
    return bad


PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
RESTRICTED_UNPICKLER_HOME = PACKAGE / "training" / "data.py"


def pickle_violations(modules: Modules) -> list[str]:
    bad = []
    for path, tree in modules:
        aliases = _aliases(tree)
        imported = {q.split(".")[0] for q in aliases.values()} & PICKLE_MODULES
        if path != RESTRICTED_UNPICKLER_HOME:
            bad += [f"{_where(path, tree)} imports {m}" for m in sorted(imported)]
        else:
            bad += [f"{_where(path, tree)} imports {m}" for m in sorted(imported - {"pickle"})]
            # pickle.Unpickler only as the base of a class that overrides find_class
            bases = set()
            for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
                if any(_qualified(b, aliases) == "pickle.Unpickler" for b in cls.bases):
                    if "find_class" not in {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}:
                        bad.append(f"{_where(path, cls)}: {cls.name} subclasses pickle.Unpickler without find_class")
                    bases.update(id(b) for b in cls.bases)
            for node, name in _references(tree, aliases):
                if name in ("pickle.load", "pickle.loads", "pickle.Unpickler") and id(node) not in bases:
                    bad.append(f"{_where(path, node)} uses {name} outside the restricted unpickler")
        # pickle through other doors
        for call in _calls(tree, aliases, "numpy.load"):
            flag = _keyword(call, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                bad.append(f"{_where(path, call)}: numpy.load with allow_pickle")
        for name in ("pandas.read_pickle", "torch.jit.load"):
            bad += [f"{_where(path, c)}: {name}" for c in _calls(tree, aliases, name)]
    return bad


def server_violations(modules: Modules) -> list[str]:
    """A private Ray starts without a dashboard (or with it on loopback); no code names 0.0.0.0."""
    bad = []
    for path, tree in modules:
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::"):
                bad.append(f"{_where(path, node)}: binds {node.value!r}")
        if not any(True for _ in _calls(tree, aliases, "ray.init")):
            continue
        # the settings may be collected in a dict first (`kwargs.update(include_dashboard=False)`)
        keywords = [k for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords]
        no_dashboard = any(k.arg == "include_dashboard" and isinstance(k.value, ast.Constant)
                           and k.value.value is False for k in keywords)
        hosts = [k.value for k in keywords if k.arg == "dashboard_host"]
        on_loopback = bool(hosts) and all(isinstance(h, ast.Constant) and h.value in LOOPBACK for h in hosts)
        if not (no_dashboard or on_loopback):
            bad.append(f"{_where(path, tree)}: ray.init without include_dashboard=False or a loopback dashboard_host")
    return bad


def test_yaml_is_loaded_only_with_safe_load() -> None:
    assert not yaml_violations(MODULES)
    uses = sum(name == "yaml.safe_load" for _, tree in MODULES for _, name in _references(tree, _aliases(tree)))
    assert uses >= 3, "the walker found no yaml.safe_load: is it still reading nas/?"


def test_torch_load_always_passes_weights_only_true() -> None:
    assert not torch_load_violations(MODULES)


def test_pickle_is_used_only_through_the_restricted_cifar_unpickler() -> None:
    assert not pickle_violations(MODULES)
    data = _tree(RESTRICTED_UNPICKLER_HOME)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "find_class" for n in ast.walk(data))


def test_servers_listen_on_loopback_only() -> None:
    assert not server_violations(MODULES)


@pytest.mark.parametrize(
    ("check", "source"),
    [
        (yaml_violations, "import yaml as y\ny.load(text, Loader=y.Loader)"),
        (yaml_violations, "from yaml import unsafe_load\nunsafe_load(text)"),
        (yaml_violations, "def f(t):\n    import yaml\n    return yaml.full_load(t)"),
        (torch_load_violations, "import torch\ntorch.load(path)"),
        (torch_load_violations, "import torch as T\nT.load(path, weights_only=False)"),
        (torch_load_violations, "from torch import load\nload(path, map_location='cpu')"),
        (pickle_violations, "import pickle\npickle.loads(blob)"),
        (pickle_violations, "import numpy as np\nnp.load(path, allow_pickle=True)"),
        (pickle_violations, "import cloudpickle"),
        (pickle_violations, "data.py:import pickle\nwith open(p, 'rb') as f:\n    batch = pickle.load(f)"),
        (pickle_violations, "data.py:import pickle\nclass Loose(pickle.Unpickler):\n    pass"),
        (server_violations, "import ray\nray.init(num_cpus=1)"),
        (server_violations, "import ray\nray.init(dashboard_host='0.0.0.0')"),
    ],
)
def test_the_checks_catch_what_they_forbid(check, source: str) -> None:
    """The walkers themselves work: each forbidden pattern, in a module of its own, is reported."""
    name, _, code = source.partition(":") if source.startswith("data.py:") else ("example.py", "", source)
    assert check([(RESTRICTED_UNPICKLER_HOME.parent / name, ast.parse(code))])


# -- behaviour: object tags never run --------------------------------------------------------
def _payloads(marker: Path) -> dict[str, str]:
    """YAML that runs `touch marker` under an unsafe loader."""
    touch = f'["touch {marker}"]'
    tiny = space_path("tiny").read_text()
    b0 = (space_path("v2").parent / "arches" / "efficientnet-b0.yaml").read_text()
    return {
        "whole file": f"!!python/object/apply:os.system {touch}\n",
        "space name": tiny.replace("name: tiny\n", f"name: !!python/object/apply:os.system {touch}\n", 1),
        "stage field": tiny.replace("channels: 16, layers: 1, stride: 1}",
                                    f"channels: !!python/object/apply:os.system {touch}, layers: 1, stride: 1}}", 1),
        "arch stem": b0.replace("stem: {channels: 32", f"stem: {{channels: !!python/object/apply:os.system {touch}", 1),
        "subprocess": f'!!python/object/new:subprocess.Popen [["touch", "{marker}"]]\n',
        "exec": f"!!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]\n",
        "name tag": "reference: !!python/name:os.system\n",
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def test_payloads_would_run_under_an_unsafe_loader(marker: Path) -> None:
    """The check below is only worth something if the payloads are live."""
    payloads = _payloads(marker)
    for key in ("whole file", "space name", "arch stem", "exec"):
        yaml.unsafe_load(payloads[key])
        assert marker.exists(), key
        marker.unlink()


def _cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.mark.parametrize("which", list(_payloads(Path("x"))))
def test_yaml_object_tags_are_config_errors_and_never_run(which: str, marker: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(_payloads(marker)[which])
    for load in (lambda: SearchSpace.load(str(path)), lambda: Arch.load(path), lambda: load_arch(str(path))):
        with pytest.raises(ConfigError) as info:
            load()
        assert str(path) in str(info.value)
    for args in (["search", "--space", str(path), "--budget", "1", "--runs-dir", str(tmp_path / "runs")],
                 ["arch", str(path)]):
        code, err = _cli(*args)
        assert code == 2 and err.startswith("nas: error:") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
    assert not marker.exists(), f"{which}: the payload ran"


def test_a_poisoned_run_folder_does_not_run_code(marker: Path, tmp_path: Path) -> None:
    """Resuming or showing a run reads its config.yaml and space.yaml: those are input too."""
    run = tmp_path / "runs" / "victim"
    (run / "trials").mkdir(parents=True)
    payload = _payloads(marker)["whole file"]
    (run / "config.yaml").write_text(payload)
    (run / "space.yaml").write_text(payload)
    for args in (["search", "--name", "victim", "--resume", "--budget", "1", "--runs-dir", str(tmp_path / "runs")],
                 ["show", "victim", "--runs-dir", str(tmp_path / "runs")]):
        code, err = _cli(*args)
        assert code == 2 and err.startswith("nas: error:") and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
    assert sorted(os.listdir(run)) == ["config.yaml", "space.yaml", "trials"]
