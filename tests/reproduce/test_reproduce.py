"""`nas reproduce`: the paper's findings as measures, candidate picking, verdicts, and a tiny
end-to-end reproduction (the hidden --space tiny, digits data) that a second run only re-reads."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from nas.cli import main
from nas.measure.costs import StepTimeCache
from nas.records.runs import RunDir
from nas.report.run_report import RunData
from nas.report.stats import kendall_tau
from nas.reproduce.analysis import (
    REWARD_WORDS,
    Retrained,
    accuracy_difference,
    best_after,
    best_by_trial,
    compare,
    equivalence_text,
    summarise_retrain,
    uniform_sample,
)
from nas.reproduce.claims import B0_CLAIMS, V2_CLAIMS
from nas.reproduce.precondition import (
    PRECONDITION_FILE,
    Expectation,
    Precondition,
    expectation,
    fused_variants,
    load_precondition,
    ratio,
    variant_words,
)
from nas.reproduce.report import tau_text
from nas.reproduce.request import seed_runs
from nas.reproduce.retrain import RETRAIN_FILE, Candidate, best_of_each_search, pick_candidates, read_retrain
from nas.reproduce.run import _share_reference
from nas.reproduce.significance import (
    ALPHA,
    attribute,
    claim_score,
    judge_finding,
    paired_test,
    rank_test,
    seed_test,
)
from nas.spec.arch import Arch, Stage
from nas.spec.resources import load_arch
from nas.spec.settings import settings_from_run
from nas.spec.space import SearchSpace
from tests.report.test_run_report import assert_links_resolve, assert_plots, tables

TINY = ["reproduce", "v2s", "--space", "tiny", "--dataset", "digits", "--budget", "3", "--baseline-budget", "2",
        "--search-seeds", "2", "--top", "1", "--seeds", "2", "--retrain-epochs", "1", "--rank-extra", "1",
        "--precondition-rounds", "3", "--max-train", "300", "--epochs", "1", "--search-args", "--pruner none",
        "--allow-code-change", "--quiet"]  # a checkout under development may be dirty (test_provenance refuses it)


def tiny_arch(*stages: tuple[str, int, float, float]) -> Arch:
    return Arch(stages=tuple(Stage(op=o, kernel=k, expansion=e, se=s, channels=16, layers=1, stride=1)
                             for o, k, e, s in stages), stem_channels=16)


def holds(claim, archs) -> bool:
    return claim.holds(archs, claim.value(archs))


# -- the papers' findings --------------------------------------------------------------------
def test_the_published_models_show_their_papers_findings() -> None:
    v2s = [load_arch("efficientnetv2-s")]
    assert [holds(c, v2s) for c in V2_CLAIMS] == [True, True, True, True]
    assert V2_CLAIMS[0].value(v2s) == 1.0  # stages 1-3 of V2-S are all Fused-MBConv
    assert V2_CLAIMS[2].show(v2s, V2_CLAIMS[2].value(v2s)) == "3.0 early vs 5.3 later"
    b0 = [load_arch("efficientnet-b0")]
    assert [holds(c, b0) for c in B0_CLAIMS] == [True, True]
    assert B0_CLAIMS[0].value(b0) == pytest.approx(3 / 7)  # 5x5 in stages 3, 5 and 6


def test_findings_fail_where_the_choices_go_the_other_way() -> None:
    # MBConv early, Fused later, big expansion early, 5x5 everywhere: the opposite of V2-S
    opposite = [tiny_arch(("mbconv", 5, 6, 0.25), ("mbconv", 5, 6, 0.0), ("fused_mbconv", 5, 1, 0.0),
                          ("fused_mbconv", 5, 1, 0.0))] * 3
    assert [holds(c, opposite) for c in V2_CLAIMS] == [False, False, False, False]
    all_3x3 = [tiny_arch(*[("mbconv", 3, 4, 0.25)] * 5)]
    assert [holds(c, all_3x3) for c in B0_CLAIMS] == [False, False]


def test_uniform_sample_gives_chance_rates() -> None:
    archs = uniform_sample(SearchSpace.load("v2"), n=2000)
    assert V2_CLAIMS[0].value(archs) == pytest.approx(0.5, abs=0.04)  # two operators
    assert V2_CLAIMS[1].value(archs) == pytest.approx(0.25, abs=0.04)  # MBConv and SE
    assert abs(V2_CLAIMS[2].value(archs)) < 0.2  # the same expansions everywhere


# -- the seed as the unit, unbiased samples, attribution -----------------------------------------
def test_the_seed_is_the_unit_of_the_test_against_random_search() -> None:
    # the v2s shares: 0.41 / 0.72 / 0.87 fused-early in TPE's top per seed; 3 seeds cannot
    # reach p < 0.05 however consistent (1/2^3 = 0.125), while 39 pooled trials would have
    three = seed_test([0.41, 0.72, 0.87], [0.30, 0.50, 0.45])
    assert three.pvalue == pytest.approx(0.125) and three.seeds == 3
    six = seed_test([0.41, 0.72, 0.87, 0.6, 0.7, 0.8], [0.30, 0.50, 0.45, 0.5, 0.4, 0.55])
    assert six.pvalue == pytest.approx(1 / 64)
    mixed = seed_test([0.41, 0.72, 0.87, 0.6, 0.3, 0.8], [0.50, 0.50, 0.45, 0.7, 0.4, 0.55])
    assert mixed.pvalue > ALPHA
    assert seed_test([0.5] * 6, [0.5] * 6).pvalue == 1.0  # no seed differs: nothing shown
    assert math.isnan(seed_test([0.9, 0.9], [0.1, 0.1]).pvalue)  # fewer than 3 seeds
    assert seed_test([0.9, math.nan, 0.8, 0.7], [0.1, 0.2, 0.3, 0.2]).seeds == 3  # a seed with no value drops out


def test_the_rank_test_asks_whether_the_reward_favours_a_finding() -> None:
    scores = [i / 19 for i in range(20)]
    assert rank_test(scores, [s + 0.01 * (i % 3) for i, s in enumerate(scores)]).pvalue < 0.001
    against = rank_test(scores, [-s for s in scores])
    assert against.rho == pytest.approx(-1.0) and against.pvalue > 0.99  # one-sided: disfavoured is not shown
    assert math.isnan(rank_test([0.5] * 20, scores).pvalue)  # every architecture alike: nothing to rank
    assert math.isnan(rank_test([0.1, 0.9], [0.2, 0.8]).pvalue)


def test_claim_scores_are_values_or_whether_a_mix_holds() -> None:
    v2s, b0 = load_arch("efficientnetv2-s"), load_arch("efficientnet-b0")
    assert claim_score(V2_CLAIMS[0], [v2s]) == 1.0  # V2-S fuses its whole first half
    assert claim_score(B0_CLAIMS[0], [b0]) == 1.0  # B0 mixes 3x3 and 5x5: a 1/0 score
    assert math.isnan(claim_score(V2_CLAIMS[0], []))


def test_the_ablation_attributes_a_finding_to_accuracy_or_cost() -> None:
    up = seed_test([0.9] * 6, [0.1 * i for i in range(6)])  # every seed one way: p = 1/64
    flat = seed_test([0.5, 0.4, 0.6, 0.5, 0.4, 0.6], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert attribute(up, up, flat).startswith("accuracy (found without the cost term")
    assert attribute(up, flat, up).startswith("cost (found more with the cost term than without")
    assert attribute(up, up, up).startswith("accuracy and cost")
    assert attribute(up, flat, flat).startswith("neither shown")
    assert attribute(flat, flat, flat).endswith("(nor is the finding itself shown)")
    assert attribute(up, seed_test([1.0], [0.0]), up).startswith("not attributable: fewer than 3 seeds")


# -- verdicts: a finding is reproduced only with p below the threshold -------------------------
EXPECTED = Expectation(True, "expected on this device (fused early is 1.30× as fast here)")
NOT_EXPECTED = Expectation(False, "not expected on this device (fused early is 0.90× here, slower)")
UNRELATED = Expectation(None, "not a speed finding: this ablation does not bear on it")


@pytest.mark.parametrize("hardware", [EXPECTED, NOT_EXPECTED, UNRELATED])
@pytest.mark.parametrize("seed_p", [0.001, 0.049, 0.05, 0.3, math.nan])
@pytest.mark.parametrize("reward_p", [0.0, 0.049, 0.05, 1.0, math.nan])
@pytest.mark.parametrize("seeds", [2, 3, 6])
@pytest.mark.parametrize("found", [True, False])
def test_a_finding_is_reproduced_only_when_both_tests_are_below_the_threshold(
        found: bool, seeds: int, reward_p: float, seed_p: float, hardware: Expectation) -> None:
    verdict = judge_finding(found, seed_p, reward_p, seeds, hardware)
    assert (verdict == "reproduced") == (found and seed_p < ALPHA and reward_p < ALPHA and seeds >= 3
                                         and hardware is not NOT_EXPECTED)


def test_finding_verdicts_name_the_reason() -> None:
    assert judge_finding(True, 0.3, 0.01, 6, EXPECTED) == (
        "not shown (TPE vs random per seed p = 0.3; each must be < 0.05)")
    assert judge_finding(True, 0.01, 0.75, 6, EXPECTED) == (
        "not shown (reward among random trials p = 0.75; each must be < 0.05)")
    assert judge_finding(True, 0.01, 0.01, 2, EXPECTED) == "a direction only (2 search seeds)"
    assert judge_finding(False, 0.9, 0.9, 6, EXPECTED) == "expected but not found"
    assert judge_finding(False, 0.9, 0.9, 6, UNRELATED) == "not found"
    # a device that does not run the design faster: its own verdict, found or not
    assert judge_finding(False, 0.9, 0.9, 6, NOT_EXPECTED) == NOT_EXPECTED.text
    assert judge_finding(True, 0.01, 0.01, 6, NOT_EXPECTED) == f"found although {NOT_EXPECTED.text}"
    assert judge_finding(True, 0.2, 0.01, 6, NOT_EXPECTED).endswith(NOT_EXPECTED.text)


def test_paired_test_of_tpe_vs_random() -> None:
    better = paired_test([0.95, 0.96, 0.94, 0.97], [0.90, 0.92, 0.91, 0.91])
    assert better.mean_difference == pytest.approx(0.045) and better.low > 0 and better.pvalue < ALPHA
    assert better.verdict() == "better"
    assert better.wilcoxon_pvalue == pytest.approx(0.125)  # 4 pairs: the smallest two-sided p there is
    mixed = paired_test([0.95, 0.90, 0.93], [0.90, 0.93, 0.92])
    assert mixed.low < 0 < mixed.high and mixed.verdict().startswith("no difference beyond the spread (p = ")
    two = paired_test([0.99, 0.98], [0.5, 0.4])  # however large the gap, 2 seeds are a direction
    assert math.isnan(two.pvalue) and two.verdict() == "a direction only (2 seeds)"
    same = paired_test([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])  # no spread to test against: never a pass
    assert math.isnan(same.pvalue) and same.verdict() != "better"
    with pytest.raises(ValueError, match="must pair up"):
        paired_test([1.0], [1.0, 2.0])


# -- the hardware precondition -----------------------------------------------------------------
def test_fused_variants_switch_only_the_operators() -> None:
    v2s = load_arch("efficientnetv2-s")
    variants = fused_variants(v2s)
    # Table 3's four rows: none, stages 1-3, stages 1-5, every stage
    assert list(variants) == ["none", "early", "most", "all"]
    assert [[s.op for s in variants[k].stages] for k in variants] == [
        ["mbconv"] * 6, ["fused_mbconv"] * 3 + ["mbconv"] * 3, ["fused_mbconv"] * 5 + ["mbconv"], ["fused_mbconv"] * 6]
    assert variants["early"] == v2s  # V2-S itself fuses stages 1-3
    for arch in variants.values():
        assert [(s.kernel, s.expansion, s.se, s.channels, s.layers, s.stride) for s in arch.stages] == [
            (s.kernel, s.expansion, s.se, s.channels, s.layers, s.stride) for s in v2s.stages]


def precondition(none: list[float], early: list[float], every: list[float]) -> Precondition:
    return Precondition(shape="batch 8", batch=8, hardware={}, reference="r", archs={},
                        step_ms={"none": none, "early": early, "all": every}, params={}, macs={})


def test_throughput_ratios_and_what_they_lead_to_expect() -> None:
    # fused early ~1.39x as fast in every round (the paper's 155 -> 216 img/s), fusing all slower again
    faster = precondition([100.0, 104.0, 98.0, 101.0, 99.0], [72.0, 74.0, 71.0, 73.0, 72.0],
                          [130.0, 128.0, 133.0, 131.0, 129.0])
    r = faster.ratio("early", "none")
    assert r.value == pytest.approx(1.39, abs=0.02) and r.low > 1 and r.pvalue < ALPHA and r.faster()
    assert faster.img_s("early") == pytest.approx(8000 / 72)
    assert expectation(faster, "early").expected is True
    assert expectation(faster, "late").expected is True  # MBConv later: early-fused beats all-fused
    assert expectation(faster, None).expected is None
    # fused early 0.9x as fast: not expected here, said with the ratio
    slower = precondition([100.0, 101.0, 99.0], [111.0, 112.0, 110.0], [150.0, 149.0, 151.0])
    hardware = expectation(slower, "early")
    assert hardware.expected is False and hardware.text.startswith("not expected on this device (fused early is 0.90×")
    # a gap inside the spread is no reason to expect the design either
    noisy = precondition([100.0, 60.0, 140.0], [90.0, 80.0, 100.0], [100.0, 100.0, 100.0])
    assert noisy.ratio("early", "none").faster() is None
    assert expectation(noisy, "early").expected is False
    # two rounds: a direction only, no expectation either way
    two = ratio("early", "none", {"early": [50.0, 50.0], "none": [100.0, 100.0]})
    assert two.faster() is None and "a direction only" in two.text()
    assert expectation(None, "early").expected is None


def test_the_baseline_scores_on_the_searchs_reference_and_table_generation(tmp_path: Path) -> None:
    main, baseline = tmp_path / "search-seed0", tmp_path / "random-seed0"
    main.mkdir()
    (main / "reference.json").write_text('{"step_ms": 12.5}')
    (main / "step_table.json").write_text('{"path": "/cache/step-times/cpu/g3.json", "generation": 3}')
    _share_reference(main, baseline)
    for name in ("reference.json", "step_table.json"):
        assert (baseline / name).read_text() == (main / name).read_text()
    (baseline / "config.yaml").write_text("made: true\n")  # a started run keeps its own
    (main / "step_table.json").write_text('{"path": "/cache/step-times/cpu/g4.json", "generation": 4}')
    _share_reference(main, baseline)
    assert "g3.json" in (baseline / "step_table.json").read_text()


def test_seed_runs_keep_the_first_seeds_plain_names() -> None:
    assert [(r.seed, r.tpe, r.random) for r in seed_runs(4, 3)] == [
        (4, "search", "random"), (5, "search-seed5", "random-seed5"), (6, "search-seed6", "random-seed6")]


# -- candidates and verdicts -----------------------------------------------------------------
def fake_run(rows: list[dict], reference: Arch) -> RunData:
    return RunData(run=RunDir(Path("/nonexistent")), config={}, rows=rows, reference=reference)


def row(number: int, arch: Arch, reward: float, accuracy: float, state: str = "COMPLETE") -> dict:
    return {"number": number, "state": state, "reward": reward, "accuracy": accuracy, "arch": arch.to_string(),
            "step_ms": 10.0, "params": 1000, "macs": 5000, "reason": ""}


def test_pick_candidates() -> None:
    ref = tiny_arch(("fused_mbconv", 3, 1, 0.0))
    a, b, c, d, e = (tiny_arch(("mbconv", k, x, 0.0)) for k, x in ((3, 1), (3, 4), (5, 1), (5, 4), (5, 6)))
    rows = [row(0, ref, 0.95, 0.95), row(1, a, 0.90, 0.90), row(2, b, 0.97, 0.93), row(3, a, 0.96, 0.96),
            row(4, c, 0.80, 0.80), row(5, d, 0.85, 0.85), row(6, e, 0.70, 0.70), row(7, e, 0.99, 0.99, "PRUNED")]
    picked = pick_candidates(fake_run(rows, ref), top=2, rank_extra=2, seeds=[0, 1, 2])
    # best distinct architectures, the reference apart; a's better retry (trial 3) stands for it
    assert [(p.role, p.trial) for p in picked] == [("found", 2), ("found", 3), ("reference", 0), ("rank", 5),
                                                   ("rank", 6)]
    assert picked[0].seeds == (0, 1, 2) and picked[-1].seeds == (0,)
    assert len({p.arch for p in picked}) == len(picked)


def retrained(acc: tuple[float, float], step: tuple[float, float], reward: tuple[float, float],
              seeds: int = 3) -> Retrained:
    return Retrained("found", 1, "", 0.9, 0.9, acc, step, reward, 1, 1, seeds, acc[0], 0)


def test_compare_verdicts() -> None:
    ref = retrained((0.90, 0.01), (100.0, 5.0), (0.90, 0.01))
    # reward 0.95 vs 0.90 over 3 seeds: Welch p = 0.004; step time p = 0.008; accuracy p = 0.07
    better = retrained((0.92, 0.01), (80.0, 5.0), (0.95, 0.01))
    on_reward, front = compare(better, ref)
    assert on_reward == "beats"
    # faster beyond the spread, more accurate only on average: never "dominates"
    assert front.startswith("costs less step time at an accuracy not distinguishable from the reference's (+0.0200 "
                            "accuracy at 0.80× the step time; accuracy not distinguishable (95% CI of the difference ")
    assert compare(replace(better, seeds=20), replace(ref, seeds=20))[1] == (
        "dominates the reference (+0.0200 accuracy at 0.80× the step time)")
    sharper = retrained((0.95, 0.005), (101.0, 5.0), (0.96, 0.01))
    assert compare(sharper, ref)[1].startswith("is more accurate at a step time not distinguishable")
    alike = retrained((0.901, 0.01), (101.0, 5.0), (0.90, 0.01))
    assert compare(alike, ref)[1].startswith("is not distinguishable from the reference in accuracy or step time")
    close = retrained((0.89, 0.01), (70.0, 5.0), (0.905, 0.01))
    on_reward, front = compare(close, ref)
    assert on_reward == "is not distinguishable from" and front.startswith("costs less step time at an accuracy not")
    worse = retrained((0.85, 0.01), (120.0, 5.0), (0.84, 0.01))
    assert compare(worse, ref) == ("loses to",
                                   "is dominated by the reference (-0.0500 accuracy at 1.20× the step time)")
    noisy = retrained((0.91, 0.02), (80.0, 5.0), (0.93, 0.02))
    assert "; accuracy not distinguishable (95% CI of the difference " in compare(noisy, ref)[1]
    # B0's cost axis is MACs, which do not vary between seeds: never "within the spread"
    cheap = replace(worse, macs=500)
    assert compare(cheap, replace(ref, macs=1000), "macs")[1] == (
        "trades accuracy for less MACs (-0.0500 accuracy at 0.50× the MACs)")


def test_compare_needs_a_significant_difference() -> None:
    ref = retrained((0.90, 0.01), (100.0, 5.0), (0.90, 0.01))
    # a reward gap of 0.03 with stds 0.02 and 0.01 over 3 seeds each: Welch p ≈ 0.1, not a win
    ahead = retrained((0.92, 0.01), (90.0, 5.0), (0.93, 0.02), seeds=3)
    assert compare(ahead, ref)[0] == "is not distinguishable from"
    assert compare(replace(ahead, seeds=20), replace(ref, seeds=20))[0] == "beats"  # same means, 20 seeds
    # fewer than 3 seeds: a direction only, however large the gap
    for seeds in (1, 2):
        one = retrained((0.99, 0.001), (50.0, 0.1), (0.99, 0.001), seeds=seeds)
        on_reward, front = compare(one, ref)
        assert on_reward == "is untested against" and REWARD_WORDS[on_reward] == "fewer than 3 seeds: a direction only"
        assert front.endswith("; fewer than 3 seeds: a direction only, no gap tested against the spread over seeds)")


def test_equal_accuracy_is_said_only_from_an_equivalence_test() -> None:
    ref = retrained((0.955, 0.006), (100.0, 5.0), (0.90, 0.01))
    # the v2s example's numbers: 3 seeds each, a gap of +0.002 that no test tells from zero
    close = retrained((0.957, 0.004), (50.0, 5.0), (0.95, 0.01))
    d = accuracy_difference(close, ref)
    assert d.low < 0 < d.high and not d.equivalent()
    text = compare(close, ref)[1]
    assert "not distinguishable (95% CI of the difference " in text and "; not shown equivalent within" in text
    # 20 seeds each with a tight spread: TOST puts the gap within ±0.5 points
    tight = accuracy_difference(replace(close, accuracy=(0.9560, 0.002), seeds=20), replace(ref, accuracy=(
        0.9555, 0.002), seeds=20))
    assert tight.equivalent() and equivalence_text(tight).startswith("equivalent within ±0.5 points (TOST p = ")
    # a gap beyond the margin is never equivalent, however many seeds
    apart = accuracy_difference(replace(close, accuracy=(0.965, 0.001), seeds=50), replace(ref, accuracy=(
        0.955, 0.001), seeds=50))
    assert not apart.equivalent()


def test_summarise_retrain_means_over_seeds() -> None:
    arch = tiny_arch(("mbconv", 3, 4, 0.0)).to_string()
    rows = [{"arch": arch, "seed": s, "epochs": 2, "state": "COMPLETE", "accuracy": acc, "step_ms": 10.0,
             "params": 100, "macs": 1000} for s, acc in ((0, 0.90), (1, 0.92), (2, 0.94))]
    rows.append({"arch": arch, "seed": 3, "epochs": 2, "state": "FAIL", "accuracy": None, "step_ms": None,
                 "params": None, "macs": None})
    cand = Candidate("found", 4, arch, 0.8, 0.8, (0, 1, 2, 3))
    (summary,) = summarise_retrain(rows, [cand], objective=None, reference_arch=None, epochs=2)
    assert summary.accuracy == pytest.approx((0.92, 0.02))
    assert summary.seeds == 3 and summary.failed == 1 and summary.first_seed_accuracy == 0.90
    assert summarise_retrain(rows, [cand], objective=None, reference_arch=None, epochs=5) == []


def test_best_after_n_trials() -> None:
    arch = tiny_arch(("mbconv", 3, 4, 0.0))
    rows = [row(0, arch, 0.5, 0.5), row(1, arch, 0.7, 0.7), row(2, arch, 0.0, 0.0, "FAIL"),
            row(3, arch, 0.0, 0.0, "FAIL"), row(4, arch, 0.9, 0.9)]
    rows[3]["reason"] = "interrupted (worker died)"  # run again later: not one of the budget's trials
    counts, best = best_by_trial(rows, None)
    assert counts == [1, 2, 4] and best == [0.5, 0.7, 0.9]
    assert best_after(counts, best, 1) == 0.5
    assert best_after(counts, best, 3) == 0.7
    assert best_after(counts, best, 4) == 0.9
    assert best_after(counts, best, 0) is None


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reproduction(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main([*TINY, "--runs-dir", str(runs), "--name", "tiny-repro"]) == 0
    return runs / "tiny-repro"


@pytest.mark.slow
def test_tiny_reproduction_writes_the_study(reproduction: Path) -> None:
    for name in ("reproduce.yaml", RETRAIN_FILE, PRECONDITION_FILE, "report.md", "search/report.md",
                 "random/report.md", "search-seed1/report.md", "random-seed1/report.md"):
        assert (reproduction / name).is_file(), name
    for sub, trials in (("search", 3), ("random", 2), ("search-seed1", 3), ("random-seed1", 2)):
        assert len(RunDir(reproduction / sub).read_results()) == trials, sub
    assert RunDir(reproduction / "search-seed1").config()["seed"] == 1
    precondition = load_precondition(reproduction)
    assert precondition.rounds == 3 and set(precondition.step_ms) == {"none", "early", "most", "all"}
    retrain = read_retrain(reproduction)
    # 1 found and the reference with 2 seeds each, 1 more architecture with one seed, and the best of
    # every TPE and random search with both seeds; an architecture two roles share is trained once a seed
    assert len({(r["arch"], r["seed"]) for r in retrain}) == len(retrain)
    assert {(r["role"], r["seed"]) for r in retrain} >= {
        ("found", 0), ("found", 1), ("rank", 0), ("reference", 0), ("reference", 1)}
    trained = {(r["arch"], r["seed"]) for r in retrain}
    per_seed = best_of_each_search(reproduction, seed_runs(0, 2), [0, 1])
    assert sorted(per_seed) == [0, 1] and all(set(sides) == {"tpe", "random"} for sides in per_seed.values())
    assert all((c.arch, s) in trained for sides in per_seed.values() for c in sides.values() for s in (0, 1))
    assert all(r["epochs"] == 1 and r["state"] == "COMPLETE" for r in retrain)
    # retrained on train, tested on the held-out split: 20% of digits' 1,797 images, seen by no search
    assert {r["split"] for r in retrain} == {"test"} and {r["train_images"] for r in retrain} == {1150}
    assert "accuracy on the held-out test split no search or selection saw" in (reproduction / "report.md").read_text()
    report = reproduction / "report.md"
    text = report.read_text()
    # the command that made it, rebuilt from the request (pytest's own argv is not it)
    assert ("Made with `nas reproduce v2s --budget 3 --baseline-budget 2 --search-seeds 2 --top 1 --seeds 2 "
            "--retrain-epochs 1 --rank-extra 1 --precondition-rounds 3 ") in text
    for heading in ("## Answers", "## Hardware precondition", "## Found vs reference after longer training",
                    "## Do the paper's design findings", "## TPE vs random search", "## How well did the proxy rank"):
        assert heading in text, heading
    # TPE vs random over 2 seeds, best found vs reference over 2 seeds: directions, never verdicts
    assert "paired by seed over 2 seeds" in text and "**a direction only (2 seeds)**" in text
    assert re.search(r"reference on reward \([^)]*, Welch p = ([\d.e-]+|–)\)", text)
    assert "fewer than 3 seeds: a direction only" in text
    # tau is the one of the recorded accuracies: each retrained architecture's proxy accuracy
    # (its search trial) against its first seed's; "–" only where those really tie
    proxy = {r["number"]: r["accuracy"] for r in RunDir(reproduction / "search").read_results()}
    ranked_roles = ("found", "reference", "rank")
    first_seed = sorted((r for r in retrain if r["state"] == "COMPLETE" and r["role"] in ranked_roles),
                        key=lambda r: r["seed"])
    pairs = {r["arch"]: (proxy[r["trial"]], r["accuracy"]) for r in reversed(first_seed)}
    expected = kendall_tau([p for p, _ in pairs.values()], [q for _, q in pairs.values()])
    assert len(pairs) == 3
    assert f"{tau_text(expected)} between proxy accuracy" in text
    if math.isnan(expected.statistic):
        assert len({p for p, _ in pairs.values()}) < 2 or len({q for _, q in pairs.values()}) < 2
    else:
        assert re.search(r"Kendall tau -?[01]\.\d\d \(p = [\d.e-]+\) between proxy accuracy", text)
        assert 0.0 <= expected.pvalue <= 1.0
    assert_plots(reproduction, ["retrained.png", "search_vs_random.png", "proxy_vs_retrained.png"])
    assert_links_resolve(report)
    parsed = tables(text)
    ablation = next(t for t in parsed if t[0][0] == "variant")
    stages = len(load_arch(precondition.archs["none"]).stages)
    assert [r[0] for r in ablation[1:]] == [variant_words(v, stages) for v in ("none", "early", "most", "all")]
    assert [r[-1] for r in ablation[1:]] == ["155", "216", "223", "206"]  # the paper's column beside them
    ratios = next(t for t in parsed if t[0][0] == "ratio")
    assert all(re.match(r"\d+\.\d\d×, 95% CI .*, p = ", r[1]) for r in ratios[1:])  # 3 rounds: an interval
    findings = next(t for t in parsed if t[0][0] == "finding")
    assert findings[0][4:] == ["TPE per seed", "random per seed", "p (seeds)", "ρ with reward (p)", "hardware",
                               "verdict"]
    assert len(findings) - 1 == len(V2_CLAIMS)
    for row, claim in zip(findings[1:], V2_CLAIMS, strict=True):
        tpe, rnd, p, rho, hardware, verdict = row[4:]
        assert len(tpe.split(" / ")) == len(rnd.split(" / ")) == 2  # one score per search seed
        if verdict == "reproduced":  # never with either p-value missing or at or above the threshold
            assert float(p) < ALPHA and float(rho.split("p = ")[1].rstrip(")")) < ALPHA
        if claim.hardware is None:
            assert hardware == "not a speed finding: this ablation does not bear on it"
        else:  # the device's verdict from the measured ablation
            assert hardware.startswith(("expected on this device", "not expected on this device", "hardware: "))
            if hardware.startswith("not expected") and verdict != "reproduced":
                assert hardware in verdict or verdict.startswith(("not shown", "a direction only"))
    # the cost-term ablation: an accuracy-only search per seed, and what made each finding
    ablation = next(t for t in parsed if t[0][0] == "finding" and "made by" in t[0])
    assert len(ablation) - 1 == len(V2_CLAIMS)
    assert all(len(r[1].split(" / ")) == 2 and r[-1].startswith("not attributable: fewer than 3 seeds")
               for r in ablation[1:])
    space = SearchSpace.load(str(reproduction / "accuracy-only" / "space.yaml"))
    assert (space.objective.step_time_weight, space.objective.params_weight, space.objective.macs_weight) == (0, 0, 0)
    for row in RunDir(reproduction / "accuracy-only").read_results():  # its reward is accuracy alone
        assert row["reward"] == pytest.approx(row["accuracy"])
    # every phase that did work names its code (the fixture allows a dirty development tree)
    phases = next(t for t in parsed if t[0][0] == "phase")
    assert [r[0] for r in phases[1:]] == ["precondition", "search search", "search random", "search accuracy-only",
                                          "search search-seed1", "search random-seed1", "search accuracy-only-seed1",
                                          "retrain"]
    assert {r[-1] for r in phases[1:]} == {"yes"} and "`--allow-code-change` was given for: precondition" in text
    assert all(re.fullmatch(r"\d+\.\d", r[4]) for r in phases[1:])  # every stretch finished, its minutes shown
    assert re.search(r"Time it took \(finished stretches of work\): searches \d+ min, retraining \d+ min", text)
    results = next(t for t in parsed if t[0][0] == "role")
    assert [r[0] for r in results[1:]] == ["found", "reference", "rank"]
    # mean ± std over the seeds; an architecture retrained with one seed (a rank-only one that is not
    # also the best of a search) has no spread to show
    seeds_column = results[0].index("seeds")
    assert [" ± " in r[3] for r in results[1:]] == [int(r[seeds_column]) > 1 for r in results[1:]]
    assert [int(r[seeds_column]) for r in results[1:3]] == [2, 2]


@pytest.mark.slow
def test_running_it_again_reuses_every_part(reproduction: Path) -> None:
    before = {p: p.read_bytes() for p in (reproduction / RETRAIN_FILE, reproduction / PRECONDITION_FILE,
                                          *(reproduction / sub / "results.csv" for sub in (
                                              "search", "random", "search-seed1", "random-seed1")))}
    assert main([*TINY, "--runs-dir", str(reproduction.parent), "--name", "tiny-repro"]) == 0
    for path, data in before.items():
        assert path.read_bytes() == data, path


@pytest.mark.slow
def test_report_command_re_renders_a_reproduction(reproduction: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (reproduction / "report.md").unlink()
    assert main(["report", str(reproduction)]) == 0
    assert capsys.readouterr().out.strip() == str(reproduction / "report.md")
    assert "## Answers" in (reproduction / "report.md").read_text()


@pytest.mark.slow
def test_settings_from_run_match_the_search(reproduction: Path) -> None:
    settings = settings_from_run(RunDir(reproduction / "search"))
    config = RunDir(reproduction / "search").config()
    assert settings.to_dict()["proxy"] == config["proxy"]
    assert settings.dataset == "digits" and settings.space.name == "tiny"
    assert settings.proxy.epochs == 1 and settings.proxy.max_train == 300
    assert settings.pruner == "none"  # from --search-args


@pytest.mark.slow
def test_another_target_under_the_same_name_is_refused(reproduction: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a if a != "v2s" else "b0" for a in TINY]
    assert main([*args, "--runs-dir", str(reproduction.parent), "--name", "tiny-repro"]) == 2
    err = capsys.readouterr().err
    assert "was made with target = 'v2s'" in err and err.count("\n") == 1



@pytest.mark.slow
def test_a_macs_reproduction_times_no_step_and_quotes_none(tmp_path: Path) -> None:
    # b0's MACs reward does not depend on the device: no precondition, no step timed anywhere
    args = [a if a != "v2s" else "b0" for a in TINY]
    for option, value in (("--search-seeds", "1"), ("--budget", "2"), ("--seeds", "1"), ("--rank-extra", "0")):
        args[args.index(option) + 1] = value
    assert main([*args, "--runs-dir", str(tmp_path), "--name", "tiny-b0"]) == 0
    folder = tmp_path / "tiny-b0"
    assert not (folder / PRECONDITION_FILE).exists()
    for sub in ("search", "random"):
        rows = RunDir(folder / sub).read_results()
        assert rows and all(math.isnan(r["step_ms"]) for r in rows)
        record = json.loads((folder / sub / "step_table.json").read_text())
        assert len(StepTimeCache(record["path"])) == record["entries_at_start"]  # no part timed
    retrain = read_retrain(folder)
    assert retrain and all(r["state"] == "COMPLETE" and math.isnan(r["step_ms"]) for r in retrain)
    text = (folder / "report.md").read_text()
    assert "no step was timed" in text and "MACs reward: the device plays no part" in text
    assert "step time" not in text.split("## Answers")[1].split("\n## ")[0]
    assert "nan" not in text and "– ± –" not in text
    # the search's accuracy/cost plot is against MACs: a step-time plot would be empty
    assert "search/accuracy_vs_macs.png" in text and not (folder / "search" / "accuracy_vs_step_time.png").exists()
    assert "Pareto front (accuracy vs MACs)" in (folder / "search" / "report.md").read_text()
    assert_links_resolve(folder / "report.md")
    assert_links_resolve(folder / "search" / "report.md")


# -- retraining: the candidate's failure is a row, a poisoned process is not --------------------
@pytest.mark.parametrize(("error", "recorded"), [
    (ValueError("the candidate's own bug"), "ValueError: the candidate's own bug"),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), None),
])
def test_a_retraining_fails_only_for_the_candidates_own_reasons(monkeypatch: pytest.MonkeyPatch, error: Exception,
                                                                recorded: str | None) -> None:
    import nas.measure.costs as costs_module
    import nas.reproduce.retrain as retrain_module
    import nas.search.trial as trial_module
    from nas.spec.settings import SearchSettings

    def broken(*args: object, **kwargs: object) -> None:
        raise error  # a fault injected on purpose

    monkeypatch.setattr(trial_module, "evaluate", broken)
    monkeypatch.setattr(costs_module, "warm_up_process", lambda device: None)
    settings = SearchSettings(space=SearchSpace.load("tiny"), dataset="digits", test_fraction=0.2)
    cand = Candidate("found", 3, SearchSpace.load("tiny").reference.to_string(), 0.9, 0.9, (0,))
    if recorded is None:  # not the candidate's fault: raised, so nothing is recorded and a re-run retrains it
        with pytest.raises(RuntimeError, match="illegal memory access"):
            retrain_module.retrain_one(cand, 0, settings)
    else:
        row = retrain_module.retrain_one(cand, 0, settings)
        assert (row["state"], row["reason"], row["split"]) == ("FAIL", recorded, "test")
