"""Malformed input, tried systematically (issue 7, part 1).

Search-space files, architecture files, architecture strings and command lines are generated
with hypothesis. Structured cases start from the shipped files and break exactly one thing (a
wrong type, an unknown key, an empty choice list, a value out of range, a missing key, a
non-mapping, None, impossible strides), so each case knows the key path its error must name.
Every case must end in `ConfigError` (or, through the CLI, exit status 2 and one line on
stderr), never another exception. `conftest.pytest_terminal_summary` prints the case counts.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.spec.arch import KERNELS, OPS, STRIDES, Arch
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch, reference_names, space_path
from nas.spec.space import OBJECTIVE_KINDS, SearchSpace
from nas.spec.timing import METHODS
from nas.training.data import dataset_names
from tests.conftest import examples, run_nas

# -- case counts (printed by the terminal-summary hook in tests/conftest.py) ----------------
CASES: Counter[str] = Counter()


def summary_line(failed_nodeids: list[str]) -> str | None:
    """One line for the pytest summary, or None when no fuzz test ran."""
    if not CASES:
        return None
    parts = ", ".join(
        f"{CASES[k]} {k}" for k in ("space files", "arch files", "arch strings", "CLI invocations") if CASES[k]
    )
    failed = [n for n in failed_nodeids if "test_fuzz_inputs" in n]
    verdict = f"{len(failed)} fuzz test(s) FAILED" if failed else "all ended in ConfigError / exit 2"
    return f"fuzzed inputs: {parts} - {verdict}"


def fuzz(n: int) -> settings:
    """n examples on top of the loaded profile (tests/conftest.py: `ci` derandomized, or `fuzz`)."""
    return settings(max_examples=examples(n))

# -- the schema, as a spec independent of the parsers --------------------------------------
ARCH_KEYS = {"name", "resolution", "width", "depth", "dropout", "drop_path", "stem", "head", "stages", "string"}
STAGE_KEYS = {"op", "kernel", "expansion", "se", "channels", "layers", "stride", "skip"}
ALLOWED_KEYS: dict[tuple[str, ...], set[str]] = {
    (): {"name", "about", "reference", "objective", "proxy", "measure", "stem", "head", "stages", "resolution",
         "dropout", "drop_path"},
    ("stem",): {"channels", "stride"},
    ("head",): {"channels"},
    ("stages", "[]"): STAGE_KEYS,
    ("proxy",): {"resolution", "width", "depth", "stem_stride", "epochs", "batch", "lr", "max_train", "dropout",
                 "drop_path"},
    ("measure",): {"method", "batch", "resolution", "in_channels", "warmup", "steps", "max_steps", "target_spread",
                    "drift_tolerance"},
    ("objective",): {"kind", "step_time_weight", "params_weight", "macs_weight", "target_macs"},
}
ARCH_ALLOWED_KEYS = {(): ARCH_KEYS, ("stem",): {"channels", "stride"}, ("head",): {"channels"},
                     ("stages", "[]"): STAGE_KEYS}
ALL_KEYS = set().union(*ALLOWED_KEYS.values(), ARCH_KEYS)

INT_FIELDS = {"channels", "layers", "kernel", "stride", "stem_stride", "resolution", "epochs", "batch", "max_train",
              "warmup", "steps", "max_steps", "in_channels"}
NUMBER_FIELDS = {"width", "depth", "dropout", "drop_path", "lr", "se", "expansion", "step_time_weight",
                 "params_weight", "macs_weight", "target_macs", "target_spread",
                 "drift_tolerance"}
STR_FIELDS = {"name", "about", "op", "kind", "reference", "string", "method"}
REQUIRED_STAGE_KEYS = ("op", "kernel", "expansion", "channels", "layers")

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])
# integers YAML reads exactly but no float can hold: bad for every number field
HUGE = st.integers(min_value=2**1024, max_value=2**1030) | st.integers(min_value=-(2**1030), max_value=-(2**1024))
WORD = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
# Values that are wrong for each value kind, whatever the range.
OTHER_TYPES = {
    "int": st.one_of(st.floats(), st.text(max_size=6), st.booleans(), st.dates(), st.lists(st.just({"a": 1}),
                     min_size=1, max_size=2)),
    "number": st.one_of(st.text(max_size=6), st.booleans(), st.dates(),
                        st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=2), min_size=1, max_size=2)),
    "str": st.one_of(st.integers(), st.floats(), st.booleans(), st.dates(),
                     st.lists(st.integers(), min_size=1, max_size=2)),
}
OUT_OF_RANGE: dict[str, st.SearchStrategy] = {
    "channels": st.integers(max_value=0),
    "layers": st.integers(max_value=0),
    "epochs": st.integers(max_value=0),
    "steps": st.integers(max_value=0),
    "max_steps": st.integers(max_value=0),
    "in_channels": st.integers(max_value=0),
    "target_spread": st.one_of(st.floats(max_value=-1e-9), NONFINITE),
    "drift_tolerance": st.one_of(st.floats(max_value=-1e-9), NONFINITE),
    "method": WORD.filter(lambda w: w not in METHODS),
    "batch": st.integers(max_value=0),
    "warmup": st.integers(max_value=-1),
    "max_train": st.integers(max_value=9),
    "resolution": st.integers(max_value=7),
    "kernel": st.integers().filter(lambda k: k not in KERNELS),
    "stride": st.integers().filter(lambda s: s not in STRIDES),
    "stem_stride": st.integers().filter(lambda s: s not in STRIDES),
    "width": st.one_of(st.floats(max_value=0.0), NONFINITE),
    "depth": st.one_of(st.floats(max_value=0.0), NONFINITE),
    "lr": st.one_of(st.floats(max_value=0.0), st.integers(max_value=0), NONFINITE),
    "target_macs": st.one_of(st.floats(max_value=0.0), NONFINITE),
    "expansion": st.one_of(st.floats(max_value=0.99), st.integers(max_value=0), NONFINITE),
    "se": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), NONFINITE),
    "dropout": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), NONFINITE),
    "drop_path": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), NONFINITE),
    "step_time_weight": NONFINITE,
    "params_weight": NONFINITE,
    "macs_weight": NONFINITE,
    "op": WORD.filter(lambda w: w not in OPS),
    "kind": WORD.filter(lambda w: w not in OBJECTIVE_KINDS),
    # no dot: a name without one can never be an existing file next to the case
    "reference": st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True).filter(lambda w: w not in reference_names()),
}


def value_kind(field: str) -> str:
    if field in INT_FIELDS:
        return "int"
    if field in NUMBER_FIELDS:
        return "number"
    assert field in STR_FIELDS, field
    return "str"


# -- walking and editing nested data -------------------------------------------------------
Path_ = tuple[Any, ...]


def get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def put(data: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    get(data, path[:-1])[path[-1]] = value
    return data


def remove(data: Any, path: Path_) -> Any:
    del get(data, path[:-1])[path[-1]]
    return data


def leaves(data: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Paths of scalars and of lists of scalars (choice lists), and of their elements."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, (*path, key))
    elif isinstance(data, list) and any(isinstance(x, dict) for x in data):
        for i, value in enumerate(data):
            yield from leaves(value, (*path, i))
    else:
        yield path
        if isinstance(data, list):
            yield from ((*path, i) for i in range(len(data)))


def mappings(data: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(data, dict):
        yield path
        for key, value in data.items():
            yield from mappings(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from mappings(value, (*path, i))


def field_of(path: Path_) -> str:
    return next(k for k in reversed(path) if isinstance(k, str))


def shape(path: Path_) -> tuple[str, ...]:
    """('stages', 3, 'kernel') -> ('stages', '[]', 'kernel'): the schema's view of a path."""
    return tuple("[]" if isinstance(k, int) else k for k in path)


def render(data: Any, path: Path_) -> str:
    """The key path as the validator writes it: stages[3].kernel[1]."""
    out = ""
    node = data
    for key in path:
        if isinstance(node, list):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
    return out


def _has(node: dict | list, key: Any) -> bool:
    return key in node if isinstance(node, dict) else 0 <= key < len(node)


# -- the bases: shipped files ----------------------------------------------------------------
def _yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


SPACE_BASES = {name: _yaml_file(space_path(name)) for name in ("tiny", "v2")}
ARCH_BASES = {
    "efficientnetv2-s": _yaml_file(space_path("v2").parent / "arches" / "efficientnetv2-s.yaml"),
    "efficientnet-b0": load_arch("efficientnet-b0").to_dict(),  # with name and string keys
    "tiny-reference": copy.deepcopy(SPACE_BASES["tiny"]["reference"]),
}


@dataclass
class Case:
    """One malformed input: YAML data (or raw text / bytes) and the key path its error must name."""

    what: str
    data: Any = None
    text: str | None = None
    raw: bytes | None = None
    key_path: str | None = None

    def write(self, path: Path) -> Path:
        if self.raw is not None:
            path.write_bytes(self.raw)
        elif self.text is not None:
            path.write_text(self.text)
        else:
            # sort_keys=False: fuzzed keys (None, ints) do not sort against strings
            path.write_text(yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True))
        return path


def _none_allowed(kind: str, path: Path_) -> bool:
    """The few keys where None means 'use the default'."""
    if kind == "space":
        if path and path[0] == "reference":
            return path[1:] in (("name",), ("string",))
        return path in (("proxy", "max_train"), ("measure", "batch"))
    return path in (("name",), ("string",))


def _allowed_keys(kind: str, path: Path_) -> set[str]:
    if kind == "space" and path and path[0] == "reference":
        return ARCH_ALLOWED_KEYS[shape(path[1:])]
    return (ALLOWED_KEYS if kind == "space" else ARCH_ALLOWED_KEYS)[shape(path)]


@st.composite
def structured_cases(draw: st.DrawFn, kind: str) -> Case:
    """A shipped space ('space') or architecture ('arch') with exactly one thing broken."""
    bases = SPACE_BASES if kind == "space" else ARCH_BASES
    base_name = draw(st.sampled_from(sorted(bases)))
    original = bases[base_name]
    data = copy.deepcopy(original)
    leaf_paths = [p for p in leaves(data) if p]
    mapping_paths = list(mappings(data))
    stage_paths = [p for p in mapping_paths if shape(p)[-2:] == ("stages", "[]")]
    mutations = ["wrong type", "out of range", "unknown key", "empty choices", "not a mapping", "None",
                 "missing key"]
    if kind == "space":
        mutations.append("impossible strides")
    mutation = draw(st.sampled_from(mutations))

    if mutation == "wrong type":
        path = draw(st.sampled_from(leaf_paths))
        aliens = OTHER_TYPES[value_kind(field_of(path))]
        if not _none_allowed(kind, path):
            aliens = st.one_of(aliens, st.none())
        current = get(data, path)
        if value_kind(field_of(path)) == "int" and type(current) is int and draw(st.booleans()):
            aliens = st.just(float(current))  # kernel 3.0 equals 3, but a float kernel breaks the convs
        data = put(data, path, draw(aliens))
    elif mutation == "out of range":
        path = draw(st.sampled_from([p for p in leaf_paths if field_of(p) in OUT_OF_RANGE]
                                    + ([("name",)] if kind == "space" else [])))
        bad = OUT_OF_RANGE[field_of(path)] if path != ("name",) else st.just("")
        if field_of(path) in NUMBER_FIELDS:
            bad = st.one_of(bad, HUGE)
        data = put(data, path, draw(bad))
    elif mutation == "unknown key":
        parent = draw(st.sampled_from(mapping_paths))
        allowed = _allowed_keys(kind, parent)
        key = draw(st.one_of(st.sampled_from(sorted(ALL_KEYS - allowed)), WORD.filter(lambda w: w not in allowed),
                             st.integers(0, 99)))
        path = (*parent, key)
        data = put(data, path, draw(st.one_of(st.integers(), st.text(max_size=5), st.none())))
    elif mutation == "empty choices":
        lists = [p for p in leaf_paths if isinstance(get(data, p), list)]
        path = draw(st.sampled_from(lists + _stages_lists(data)))
        data = put(data, path, [])
    elif mutation == "not a mapping":
        targets = mapping_paths + _stages_lists(data)  # a stage list that is not a list belongs here too
        path = draw(st.sampled_from(targets))
        is_list = isinstance(get(data, path), list)
        aliens = [st.integers(), st.none(), st.booleans(), st.floats(),
                  st.from_regex(r"not-a-mapping-[a-z]{1,5}", fullmatch=True)]
        if not is_list:
            aliens.append(st.lists(st.integers(0, 9), max_size=3))
        else:
            aliens.append(st.dictionaries(WORD, st.integers(), max_size=2))
        data = put(data, path, draw(st.one_of(aliens)))
    elif mutation == "None":
        path = draw(st.sampled_from([p for p in leaf_paths + stage_paths if not _none_allowed(kind, p)]))
        data = put(data, path, None)
    elif mutation == "missing key":
        path = draw(st.sampled_from(_required(kind, data)))
        data = remove(data, path)
    else:  # impossible strides: total stride at the proxy above the proxy resolution
        n = len(data["stages"])
        doubled = draw(st.sets(st.integers(0, n - 1), min_size=1))
        stem_stride = draw(st.sampled_from(STRIDES))
        if stem_stride * 2 ** len(doubled) <= 8:  # the proxy resolution is at least 8 px
            doubled, stem_stride = set(range(n)), 2
        for i in doubled:
            data["stages"][i]["stride"] = 2
        data["proxy"]["stem_stride"] = stem_stride
        data["proxy"]["resolution"] = draw(st.integers(8, stem_stride * 2 ** len(doubled) - 1))
        path = ("proxy", "resolution")

    if kind == "space" and path[:1] == ("reference",) and isinstance(original.get("reference"), dict) and len(path) > 1:
        # a mapping reference is validated as an architecture whose source is "<file>: reference"
        key_path = "reference: " + render(original["reference"], path[1:])
    else:
        key_path = render(original, path) or "top level"
    return Case(what=f"{base_name}: {mutation} at {key_path}", data=data, key_path=key_path)


def _stages_lists(data: Any) -> list[Path_]:
    out = [("stages",)]
    if isinstance(data.get("reference"), dict):
        out.append(("reference", "stages"))
    return out


def _required(kind: str, data: dict) -> list[Path_]:
    def arch_required(prefix: Path_, arch: dict) -> list[Path_]:
        out = [(*prefix, "stem"), (*prefix, "stages"), (*prefix, "stem", "channels")]
        if "head" in arch:
            out.append((*prefix, "head", "channels"))
        out += [(*prefix, "stages", i, key) for i in range(len(arch["stages"])) for key in REQUIRED_STAGE_KEYS]
        return out

    if kind == "arch":
        return arch_required((), data)
    out = [("name",), ("stem",), ("stages",), ("reference",), ("stem", "channels"), ("head", "channels")]
    out += [("stages", i, key) for i in range(len(data["stages"])) for key in REQUIRED_STAGE_KEYS]
    if isinstance(data["reference"], dict):
        out += arch_required(("reference",), data["reference"])
    return out


YAMLISH = st.lists(
    st.sampled_from([
        ":", "- ", "[", "]", "{", "}", ",", "?", "|", ">", "'", '"', "#", "&a ", "*a", "*b", "!!", "!!int x",
        "!!float y", "!!timestamp z", "!!binary ~~", "!!python/object/apply:os.system ['true']", "%YAML 9.9", "---",
        "...", "\t", "\n", "\n  ", "  ", "2020-13-45", "0x", "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "1e400", "~",
        "null", "stages", "name", "stem", "kernel", "\x00", "\ufeff", "\x85", "é",
    ]),
    min_size=1, max_size=25,
).map("".join)


@st.composite
def garbage_cases(draw: st.DrawFn, kind: str) -> Case:
    """Text or bytes that cannot be a valid file (no key path to name)."""
    choice = draw(st.sampled_from(["text", "yamlish", "bytes"]))
    if choice == "bytes":
        raw = draw(st.binary(max_size=200))
        return Case(what=f"{kind}: random bytes", raw=raw)
    text = draw(st.text(max_size=200) if choice == "text" else YAMLISH)
    return Case(what=f"{kind}: random {choice}", text=text)


# -- checks --------------------------------------------------------------------------------
def expect_config_error(load: Callable[[], Any], case: Case, source: str) -> str:
    """`load()` must raise ConfigError naming the source and the case's key path, on one line."""
    try:
        load()
    except ConfigError as exc:
        message = str(exc)
    except Exception as exc:  # the point of the test: name the case that escaped
        raise AssertionError(f"{case.what}: {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError(f"{case.what}: accepted {case.data if case.data is not None else case.text!r}")
    assert "\n" not in message, message
    assert source in message, f"{case.what}: {message}"
    if case.key_path is not None:
        assert case.key_path in message, f"{case.what}: {message}"
    return message


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz(420)
@given(case=structured_cases("space"))
def test_malformed_space_files_name_the_key_path(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "space.yaml")
    expect_config_error(lambda: SearchSpace.load(str(path)), case, str(path))
    CASES["space files"] += 1


@fuzz(100)
@given(case=garbage_cases("space"))
def test_garbage_space_files_are_config_errors(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "garbage.yaml")
    expect_config_error(lambda: SearchSpace.load(str(path)), case, str(path))
    CASES["space files"] += 1


@fuzz(60)
@given(data=st.data())
def test_corrupted_shipped_space_text_loads_or_is_a_config_error(data: st.DataObject, scratch: Path) -> None:
    """Splice YAML-ish junk into a shipped file: tabs, unclosed brackets, bad tags, stray keys.
    A splice can leave the file valid (inside a comment, say); it must never crash."""
    text = space_path(data.draw(st.sampled_from(["tiny", "v2"]))).read_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    junk = data.draw(YAMLISH)
    case = Case(what="corrupted shipped space", text=text[:start] + junk + text[end:])
    path = case.write(scratch / "corrupted.yaml")
    try:
        SearchSpace.load(str(path))
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        CASES["space files"] += 1
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {case.text!r}") from exc


@fuzz(220)
@given(case=structured_cases("arch"))
def test_malformed_arch_files_name_the_key_path(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "arch.yaml")
    expect_config_error(lambda: Arch.load(path), case, str(path))
    expect_config_error(lambda: load_arch(str(path)), case, str(path))  # what `nas arch FILE` calls
    CASES["arch files"] += 1


@fuzz(60)
@given(case=garbage_cases("arch"))
def test_garbage_arch_files_are_config_errors(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "garbage-arch.yaml")
    expect_config_error(lambda: Arch.load(path), case, str(path))
    CASES["arch files"] += 1


def _alias_bomb(levels: int = 9) -> str:
    """A flow sequence of YAML aliases whose expansion holds 10**levels elements ("billion laughs")."""
    parts = ["&l0 [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    parts += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize(
    ("kind", "template", "key_path"),
    [
        ("space", "name: bomb\nstem: {{channels: 8}}\nreference: efficientnet-b0\nstages:\n  - {bomb}\n",
         "stages[0]"),
        ("space", "name: bomb\nstem: {{channels: 8}}\nreference: efficientnet-b0\nstages:\n"
                  "  - {{op: mbconv, kernel: {bomb}, expansion: 1, channels: 8, layers: 1}}\n", "stages[0].kernel[0]"),
        ("arch", "stem: {{channels: 8}}\nstages: [{{op: mbconv, kernel: 3, expansion: {bomb}, channels: 8, "
                 "layers: 1}}]\n", "stages[0].expansion"),
    ],
)
@pytest.mark.timeout(300)  # expanding 10**9 elements would never end (or exhaust memory): fail, not hang
def test_alias_bombs_fail_fast(kind: str, template: str, key_path: str, tmp_path: Path) -> None:
    """Aliases are shared, not copied, by safe_load; the error message must not expand them either."""
    path = tmp_path / "bomb.yaml"
    path.write_text(template.format(bomb=_alias_bomb()))
    load = (lambda: SearchSpace.load(str(path))) if kind == "space" else (lambda: Arch.load(path))
    message = expect_config_error(load, Case(what=f"{kind} alias bomb", key_path=key_path), str(path))
    assert len(message) < 1000, "the error message quotes an expanded value"
    CASES[f"{kind} files"] += 1


# -- architecture strings ------------------------------------------------------------------
ARCH_STRINGS = [load_arch(name).to_string() for name in ("efficientnet-b0", "efficientnetv2-s")]
ARCH_STRINGS.append(Arch.from_dict(ARCH_BASES["tiny-reference"]).to_string())
TOKEN_FIELDS = {"w": "width", "d": "depth", "r": "resolution", "do": "dropout", "dp": "drop_path",
                "stem": "stem.channels", "s": "stem.stride", "head": "head.channels"}
# Bad value text per token key: what no parser may accept (0 is a fine se, dropout or drop path).
_ALWAYS_BAD = ["-1", "-0.5", "1.5.2", "..", "1e999", "9" * 5000]
BAD_TOKEN_VALUES = {
    **{key: [*_ALWAYS_BAD, "0", "3.5", "1e-999"] for key in ("r", "stem", "s", "head", "k", "c", "l")},
    **{key: [*_ALWAYS_BAD, "0", "1e-999"] for key in ("w", "d")},
    "e": [*_ALWAYS_BAD, "0", "0.5"],
    **{key: [*_ALWAYS_BAD, "1", "1.5"] for key in ("se", "do", "dp")},
}


@st.composite
def string_cases(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A shipped arch string with one token broken, and the names one of which the error must give."""
    tokens = draw(st.sampled_from(ARCH_STRINGS)).split(",")
    mutation = draw(st.sampled_from(["value", "drop part", "unknown part", "repeat part", "op", "layout"]))
    if mutation == "layout":  # too few or swapped tokens: no single token to blame
        if draw(st.booleans()):
            return ",".join(tokens[: draw(st.integers(0, 2))]), ()
        i, j = draw(st.sampled_from([(0, 1), (0, len(tokens) - 1), (1, len(tokens) - 1)]))
        tokens[i], tokens[j] = tokens[j], tokens[i]
        return ",".join(tokens), ()
    last = len(tokens) - 1
    t = draw(st.integers(2, last - 1) if mutation == "op" else st.integers(0, last))
    names = {0: ("globals",), 1: ("stem",), last: ("head",)}.get(t, (f"stages[{t - 2}]",))
    parts = tokens[t].split("_")
    first = 1 if 2 <= t < last else 0  # a stage token starts with its op
    if mutation == "value":
        j = draw(st.integers(first, len(parts) - 1))
        key = re.match(r"[a-z]+", parts[j]).group(0)
        parts[j] = key + draw(st.sampled_from(BAD_TOKEN_VALUES[key]) | st.integers(max_value=-1).map(str))
        if key in TOKEN_FIELDS and first == 0:  # fails in the token parser or in the field check
            names = (*names, TOKEN_FIELDS[key])
    elif mutation == "drop part":
        del parts[draw(st.integers(first, len(parts) - 1))]
    elif mutation == "unknown part":
        junk = draw(st.from_regex(r"(zz|q|x|noskp)[0-9]{0,3}", fullmatch=True))
        parts.insert(draw(st.integers(first, len(parts))), junk)
    elif mutation == "repeat part":
        parts.append(parts[draw(st.integers(first, len(parts) - 1))])
    else:  # unknown op
        parts[0] = draw(WORD.filter(lambda w: w not in ("mb", "fmb")))
    tokens[t] = "_".join(parts)
    return ",".join(tokens), names


@fuzz(200)
@given(case=string_cases())
def test_malformed_arch_strings_name_the_token(case: tuple[str, tuple[str, ...]]) -> None:
    text, names = case
    for load in (Arch.from_string, load_arch):
        try:
            load(text)
        except ConfigError as exc:
            message = str(exc)
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc} for {text!r}") from exc
        else:
            raise AssertionError(f"accepted {text!r}")
        assert "\n" not in message
        assert not names or any(n in message for n in names), (names, message)
    CASES["arch strings"] += 1


@fuzz(60)
@given(text=st.one_of(st.text(max_size=80), YAMLISH).map(lambda s: s + ","))
def test_garbage_arch_strings_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        Arch.from_string(text)
    CASES["arch strings"] += 1


# -- the CLI -------------------------------------------------------------------------------
def cli(*args: str) -> tuple[int, str]:
    """`nas ARGS` in-process: (exit status, stderr). argparse errors exit via SystemExit."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    CASES["CLI invocations"] += 1
    return code, err.getvalue()


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nas: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


@fuzz(20)
@given(case=st.one_of(structured_cases("space"), garbage_cases("space").filter(lambda c: c.raw is not None)))
def test_cli_search_with_a_bad_space_exits_2_and_creates_no_run(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "cli-space.yaml")
    runs = scratch / "cli-runs"
    code, err = cli("search", "--space", str(path), "--budget", "1", "--runs-dir", str(runs), "--quiet")
    assert_one_line_error(code, err, *([case.key_path] if case.key_path else []))
    assert not runs.exists() or not any(runs.iterdir()), f"{case.what}: a run directory was created"


@fuzz(15)
@given(case=structured_cases("arch"))
def test_cli_arch_with_a_bad_file_exits_2(case: Case, scratch: Path) -> None:
    path = case.write(scratch / "cli-arch.yaml")
    code, err = cli("arch", str(path))
    assert_one_line_error(code, err, case.key_path)


def _not_a_positive_int(text: str) -> bool:
    try:
        return int(text) < 1
    except ValueError:
        return True


@fuzz(15)
@given(budget=st.one_of(st.integers(max_value=0).map(str), st.floats().map(str),
                        st.text(max_size=6)).filter(_not_a_positive_int))
def test_cli_rejects_budgets_that_are_not_positive_integers(budget: str, scratch: Path) -> None:
    runs = scratch / "budget-runs"
    code, err = cli("search", "--space", "tiny", "--budget", budget, "--runs-dir", str(runs))
    assert_one_line_error(code, err, "--budget")
    assert not runs.exists()


KNOWN_DATASETS = {spec.split(":")[0] for spec in dataset_names()}


@fuzz(10)
@given(name=st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,15}", fullmatch=True)
       .filter(lambda n: n.strip().split(":")[0] not in KNOWN_DATASETS))
def test_cli_rejects_unknown_datasets(name: str, scratch: Path) -> None:
    runs = scratch / "dataset-runs"
    code, err = cli("search", "--space", "tiny", "--dataset", name, "--budget", "1", "--runs-dir", str(runs))
    assert_one_line_error(code, err, "unknown dataset")
    assert not runs.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["search", "--space", "/no/such/dir/space.yaml"], "does not exist"),
        (["search", "--space", "~nobody-here-at-all/space.yaml"], "does not exist"),
        (["search", "--space", "{tmp}"], "is a directory"),  # a directory is not a space file
        (["search", "--space", "{tmp}/dir.yaml"], "is a directory"),  # nor one named like a file
        (["search", "--space", "tiny", "--dataset", "cifar10:/no/such/dir"], "/no/such/dir"),
        (["search", "--space", "tiny", "--dataset", "imagefolder:/no/such/dir"], "/no/such/dir"),
        (["search", "--space", "tiny", "--dataset", "cifar100:"], "needs a directory"),
        (["search", "--space", "tiny", "--dataset", "mnist5k:/tmp"], "takes no ':' argument"),
        (["search", "--space", "tiny", "--name", "nothing-yet", "--resume"], "cannot resume run 'nothing-yet'"),
        (["search", "--space", "tiny", "--name", "../escape"], "--name must be a plain folder name"),
        (["search", "--space", "tiny", "--budget", "1", "--epochs", "0"], "--epochs"),
        (["search", "--space", "tiny", "--budget", "1", "--val-fraction", "1.5"], "--val-fraction"),
        (["arch", "/no/such/arch.yaml"], "architecture file '/no/such/arch.yaml' does not exist"),
        (["arch", "~nobody-here-at-all/arch.yaml"], "does not exist"),
        (["arch", "{tmp}"], "is a directory"),
        (["arch", "efficientnet-b0", "--classes", "0"], "--classes"),
        (["show", "no-such-run"], "no run named 'no-such-run'"),
    ],
)
def test_cli_missing_paths_and_bad_values_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] in ("search", "show"):
        args += ["--runs-dir", str(tmp_path / "runs")]
    code, err = cli(*args)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-trial tiny run (a few seconds), made by the installed command."""
    root = tmp_path_factory.mktemp("existing")
    done = run_nas("search", "--space", "tiny", "--name", "taken", "--runs-dir", str(root / "runs"),
                   "--max-train", "300", "--epochs", "1", "--budget", "1", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("space", "resume"),
    # (tiny, --resume) is a legitimate resume, so not here
    [("v2", False), ("v2", True), ("tiny-variant", False), ("tiny-variant", True), ("tiny", False)],
)
@pytest.mark.slow
def test_cli_existing_run_with_another_space_is_refused(existing_run: Path, space: str, resume: bool) -> None:
    runs = existing_run / "runs"
    if space == "tiny-variant":
        data = copy.deepcopy(SPACE_BASES["tiny"])
        data["stages"][2]["kernel"] = [3, 5, 7]
        variant = existing_run / "variant.yaml"
        variant.write_text(yaml.safe_dump(data, sort_keys=False))
        space = str(variant)
    before = _snapshot(runs / "taken")
    args = ["search", "--space", space, "--name", "taken", "--runs-dir", str(runs), "--budget", "1", "--quiet",
            "--max-train", "300", "--epochs", "1"]
    code, err = cli(*args, *(["--resume"] if resume else []))
    assert_one_line_error(code, err, "taken")
    assert "was made with space" in err if resume else "already exists" in err
    assert _snapshot(runs / "taken") == before, "a refused command changed the existing run"
    assert sorted(p.name for p in runs.iterdir()) == ["taken"]


def test_counts_reach_the_terminal_summary(pytestconfig: pytest.Config) -> None:
    """The hook in tests/conftest.py prints `summary_line` for this module."""
    hooks = pytestconfig.pluginmanager.hook.pytest_terminal_summary.get_hookimpls()
    assert any(getattr(h.plugin, "__name__", "") == "tests.conftest" for h in hooks)
