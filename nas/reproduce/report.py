"""The reproduction's report.md and plots, rendered from its files (no training)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas.records.runs import RunDir, atomic_write
from nas.report.run_report import (
    COST_AXES,
    OP_NAMES,
    RunData,
    arch_table,
    cost_axis,
    fmt,
    fmt_count,
    load_run,
    md_table,
    plots,
    plural,
    top_k_size,
    write_report,
)
from nas.report.stats import (
    CHOICE_FIELDS,
    Correlation,
    choice_frequencies,
    kendall_tau,
    majority,
)
from nas.reproduce.analysis import (
    REWARD_WORDS,
    Retrained,
    best_after,
    best_by_trial,
    compare,
    cost_of,
    reward_pvalue,
    summarise_retrain,
    uniform_sample,
)
from nas.reproduce.claims import TARGETS, Claim, Target
from nas.reproduce.precondition import (
    RATIO_COLUMNS,
    VARIANT_COLUMNS,
    Expectation,
    Precondition,
    expectation,
    load_precondition,
    paper_ratio,
    ratio_rows,
    variant_rows,
)
from nas.reproduce.provenance import PhaseRecord, phase_minutes, provenance_rows, read_provenance
from nas.reproduce.request import REQUEST_FILE, SeedRuns, is_reproduction, seed_runs
from nas.reproduce.retrain import best_of_each_search, pick_candidates, ranked, read_retrain, retrain_settings
from nas.reproduce.significance import (
    ALPHA,
    MIN_POINTS,
    PairedTest,
    RankTest,
    SeedTest,
    attribute,
    claim_score,
    judge_finding,
    paired_test,
    rank_test,
    seed_test,
)
from nas.spec.arch import Arch
from nas.spec.errors import RunError
from nas.spec.objective import Objective
from nas.spec.settings import SearchSettings, settings_from_run


# -- the report ------------------------------------------------------------------------------
def write_reproduction_report(folder: Path, top_k: int | None = None) -> Path:
    """Render report.md and plots of a reproduction from its files (no training)."""
    folder = Path(folder)
    if not is_reproduction(folder):
        raise RunError(f"{folder} is not a reproduction folder (no {REQUEST_FILE})")
    asked = yaml.safe_load((folder / REQUEST_FILE).read_text()) or {}
    target = TARGETS[asked["target"]]
    search_run = RunDir(folder / "search")
    if not search_run.exists():
        raise RunError(f"reproduction {folder.name} has no search yet; run the same `nas reproduce` command again")
    from nas.measure.costs import count_costs

    write_report(search_run, top_k=top_k, count_full=count_costs)
    search = load_run(search_run)
    runs = seed_runs(int(asked.get("seed", 0)), int(asked.get("search_seeds", 1)))
    searches, baselines, ablations = {runs[0].seed: search}, {}, {}
    for pair in runs:
        for sub, into in ((pair.tpe, searches), (pair.random, baselines), (pair.accuracy, ablations)):
            if pair.seed not in into and RunDir(folder / sub).exists():
                write_report(RunDir(folder / sub), top_k=top_k)
                into[pair.seed] = load_run(RunDir(folder / sub))
    settings = retrain_settings(settings_from_run(search_run), asked.get("retrain_epochs"))
    seeds = [settings.seed + i for i in range(int(asked.get("seeds", 1)))]
    candidates = pick_candidates(search, int(asked.get("top", 3)), int(asked.get("rank_extra", 0)), seeds)
    ref_string = search.reference.to_string() if search.reference else None
    retrained = summarise_retrain(read_retrain(folder), candidates, search.objective(), ref_string,
                                  settings.proxy.epochs)
    k = top_k or top_k_size(len(search.complete))
    study = Study(searches, baselines, [p.seed for p in runs], load_precondition(folder), ablations)
    after = _retrained_per_seed(folder, runs, seeds, search, settings.proxy.epochs)
    text = _render(folder, asked, target, study, retrained, settings, k, after)
    atomic_write(folder / "report.md", text)
    return folder / "report.md"


@dataclass(frozen=True)
class Study:
    """The runs a report reads, by search seed: TPE searches (the first seed's is the one
    retrained and reported in detail), random baselines, and the hardware precondition."""

    searches: dict[int, RunData]
    baselines: dict[int, RunData]
    seeds: list[int]
    precondition: Precondition | None
    ablations: dict[int, RunData] = field(default_factory=dict)  # accuracy-only searches (cost weights 0)

    @property
    def search(self) -> RunData:
        return self.searches[self.seeds[0]]

    @property
    def baseline(self) -> RunData | None:
        return self.baselines.get(self.seeds[0])


@dataclass(frozen=True)
class RetrainedVersus:
    """TPE's and random search's best per search seed, each retrained with the same seeds and
    recipe: per seed the two summaries, and paired tests over the seeds of reward and accuracy."""

    seeds: list[int]
    tpe: list[Retrained]
    random: list[Retrained]
    reward: PairedTest
    accuracy: PairedTest


def _retrained_per_seed(folder: Path, runs: list[SeedRuns], seeds: list[int], search: RunData,
                        epochs: int) -> RetrainedVersus | None:
    per_seed = best_of_each_search(folder, runs, seeds)
    candidates = [c for sides in per_seed.values() for c in sides.values()]
    ref = search.reference.to_string() if search.reference is not None else None
    summary = {(r.role, r.arch): r for r in summarise_retrain(read_retrain(folder), candidates, search.objective(),
                                                               ref, epochs)}
    both = [(seed, summary.get(("tpe-best", sides["tpe"].arch)), summary.get(("random-best", sides["random"].arch)))
            for seed, sides in sorted(per_seed.items()) if {"tpe", "random"} <= set(sides)]
    both = [(seed, t, r) for seed, t, r in both if t is not None and r is not None]
    if not both:
        return None
    tpe, rnd = [t for _, t, _ in both], [r for _, _, r in both]
    return RetrainedVersus([seed for seed, _, _ in both], tpe, rnd,
                           paired_test([t.reward[0] for t in tpe], [r.reward[0] for r in rnd]),
                           paired_test([t.accuracy[0] for t in tpe], [r.accuracy[0] for r in rnd]))


def _render(folder: Path, asked: dict[str, Any], target: Target, study: Study, retrained: list[Retrained],
            settings: SearchSettings, k: int, after: RetrainedVersus | None = None) -> str:
    search, baseline = study.search, study.baseline
    objective = search.objective()
    out = [f"# Reproducing {target.paper} at small scale: `{folder.name}`\n\n"]
    out.append(f"Made with `{asked.get('command', 'nas reproduce ' + target.name)}`.\n\n")
    finished = search.finished()
    out.append(
        f"Search: {asked.get('space')} space, dataset {asked.get('dataset')}, objective {target.objective}, "
        f"**{finished} of {asked.get('budget')} trials** (TPE, seed {study.seeds[0]}); "
        + (f"{len(study.searches) - 1} more TPE search{'es' if len(study.searches) > 2 else ''} with other seeds; "
           if len(study.searches) > 1 else "")
        + (f"random-search baseline {baseline.finished()} of {asked.get('baseline_budget')} trials"
           + (f" per seed over {plural(len(study.baselines), 'seed')}; " if len(study.baselines) > 1 else "; ")
           if baseline else "no random-search baseline; ")
        + f"retraining: {plural(settings.proxy.epochs, 'epoch')} on the whole training split, "
        f"{plural(int(asked.get('seeds', 1)), 'seed')} for the {asked.get('top')} best found and the reference"
        + (" and for the best of every TPE and random search" if after is not None else "") + ". "
        f"The paper sampled up to 1000 models trained ~10 "
        f"epochs at reduced size on ImageNet; this is a proxy of a proxy, so read the numbers as such. "
        f"Every verdict below is a test at p < {ALPHA:g}; a result from fewer than {MIN_POINTS} points "
        f"(seeds, architectures) is called a direction only.\n"
    )
    found = [r for r in retrained if r.role == "found"]
    ref = next((r for r in retrained if r.role == "reference"), None)
    findings = _findings(target, study, k)
    tau, tau_n = _tau(retrained)
    curves = _curves(search, baseline, objective)
    versus = _tpe_vs_random(study, objective)
    out.append("\n## Answers\n\n")
    out.append(_answers(target, found, ref, findings, curves, versus, tau, tau_n, k, study, after))
    out.append(_precondition_section(target, study.precondition))
    out.append(_retrain_section(folder, found, ref, retrained, search, target))
    out.append(_findings_section(target, findings, study, k))
    out.append(_random_section(folder, curves, versus, study))
    out.append(_retrained_versus_section(after))
    out.append(_tau_section(folder, retrained, tau, tau_n))
    out.append(_provenance_section(read_provenance(folder)))
    out.append(_search_section(search))
    return "".join(out)


def _answers(target: Target, found: list[Retrained], ref: Retrained | None,
             findings: list[Finding], curves: dict[str, Any], versus: PairedTest | None,
             tau: Correlation, tau_n: int, k: int, study: Study, after: RetrainedVersus | None = None) -> str:
    lines = []
    lines.append(f"- **Hardware precondition**: {_precondition_answer(target, study.precondition)}")
    if found and ref is not None:
        best = found[0]
        on_reward, front = compare(best, ref, target.cost)
        # a MACs search never timed a step: no time to quote
        step_text = (f"step time {_pm(best.step_ms, 1, best.seeds)} vs {_pm(ref.step_ms, 1, ref.seeds)} ms, "
                     if target.cost == "step_ms" else "")
        lines.append(
            f"- **Found vs reference (retrained)**: the best found (trial {best.trial}) {on_reward} the reference on "
            f"reward ({_pm(best.reward, 4, best.seeds)} vs {_pm(ref.reward, 4, ref.seeds)}, Welch "
            f"p = {fmt_p(reward_pvalue(best, ref))}) and {front}: accuracy "
            f"{_pm(best.accuracy, 4, best.seeds)} vs {_pm(ref.accuracy, 4, ref.seeds)}, {step_text}MACs "
            f"{fmt_count(best.macs)} vs {fmt_count(ref.macs)} (mean ± std over {plural(best.seeds, 'seed')} "
            f"and {plural(ref.seeds, 'seed')})."
        )
    else:
        lines.append("- **Found vs reference**: not retrained yet.")
    reproduced = [f.claim.text for f in findings if f.verdict == "reproduced"]
    others = [f"{f.claim.text}: {f.verdict}" for f in findings if f.verdict != "reproduced"]
    seeds = findings[0].versus_random.seeds if findings else 0
    lines.append(f"- **Paper's design findings** (top {k} of each search, {plural(seeds, 'search seed')} as the "
                 f"unit): {len(reproduced)} of {len(findings)} reproduced (TPE's top beyond random search's per seed, "
                 f"and the reward favouring it among random search's trials, each p < {ALPHA:g}, not ruled out by "
                 f"the device)" + (f" ({'; '.join(reproduced)})" if reproduced else "")
                 + (f"; {'; '.join(others)}" if others else "") + ". "
                 + "Accuracy or cost: " + _made_by_text(findings) + ".")
    if versus is not None:
        lines.append(f"- **TPE vs random search** after {versus_n(study)} trials, paired by seed over "
                     f"{plural(versus.pairs, 'seed')}: {_versus_text(versus)}.")
    elif curves.get("random") and curves["common"] > 0:
        lines.append(f"- **TPE vs random search** after {curves['common']} trials: best reward "
                     f"{fmt(curves['tpe_at'])} vs {fmt(curves['random_at'])}; one seed: a direction only.")
    elif "random" in curves:
        lines.append("- **TPE vs random search**: the random baseline has no finished trials yet.")
    else:
        lines.append("- **TPE vs random search**: no baseline run.")
    if after is not None:
        lines.append(f"- **TPE vs random search after retraining** (each side's best per seed, the same retraining "
                     f"seeds and recipe, {_split_words(after.tpe[0].split)}), paired over "
                     f"{plural(len(after.seeds), 'search seed')}: {_versus_text(after.reward)}; "
                     f"{_versus_text(after.accuracy, 'accuracy')}.")
    else:
        lines.append("- **TPE vs random search after retraining**: no search's best retrained yet (a reproduction "
                     "made before this comparison existed, or one still running).")
    if tau_n < MIN_POINTS:
        caveat = f" ({tau_n} architectures: a direction only)"
    elif not tau.significant(ALPHA):  # NaN included: never read as agreement
        caveat = f" (not distinguishable from an unrelated order at p < {ALPHA:g})"
    else:
        caveat = ""
    if MIN_POINTS <= tau_n < 10:
        caveat += "; fewer than 10 architectures, so only a strong agreement can show (raise --rank-extra)"
    lines.append(f"- **Proxy vs longer training**: {tau_text(tau)} between proxy accuracy and retrained "
                 f"accuracy over {tau_n} architectures{caveat}.")
    return "\n".join(lines) + "\n"


def _made_by_text(findings: list[Finding]) -> str:
    """What made each finding, said once when it is the same for all (e.g. no ablation run)."""
    verdicts = [f.made_by.split(" (")[0] for f in findings]
    if len(set(verdicts)) == 1:
        return f"{verdicts[0]} (every finding)" if verdicts else "–"
    return "; ".join(f"{f.claim.text}: {v}" for f, v in zip(findings, verdicts, strict=True))


def _versus_text(versus: PairedTest, figure: str = "reward") -> str:
    interval = (f", 95% CI {fmt(versus.low)} to {fmt(versus.high)}" if math.isfinite(versus.low) else "")
    tests = (f"; paired t-test p = {fmt_p(versus.pvalue)}, Wilcoxon p = {fmt_p(versus.wilcoxon_pvalue)}"
             if versus.pairs >= MIN_POINTS else "")
    return (f"best {figure} TPE − random {fmt(versus.mean_difference)} on average{interval}{tests}: "
            f"**{versus.verdict()}**")


def _split_words(split: str) -> str:
    return ("accuracy on the held-out test split no search or selection saw" if split == "test"
            else "accuracy on the validation split that selected the networks: no test split was held out")


def _retrained_versus_section(after: RetrainedVersus | None) -> str:
    out = ["\n## TPE vs random search after retraining\n\n"]
    if after is None:
        return out[0] + ("No search's best retrained yet (a reproduction made before this comparison existed, one "
                         "still running, or one without a random baseline).\n")
    out.append(f"The proxy's seed noise is of the size of the differences between architectures, so the best of each "
               f"search is retrained (same seeds and recipe for both sides; {_split_words(after.tpe[0].split)}); "
               f"the mean over retraining seeds is one value per search seed, and the search seeds are paired:\n\n")
    rows = [[seed, t.trial, r.trial, _pm(t.accuracy, 4, t.seeds), _pm(r.accuracy, 4, r.seeds),
             _pm(t.reward, 4, t.seeds), _pm(r.reward, 4, r.seeds), fmt(t.reward[0] - r.reward[0])]
            for seed, t, r in zip(after.seeds, after.tpe, after.random, strict=True)]
    out.append(md_table(["search seed", "TPE best trial", "random best trial", "TPE acc", "random acc", "TPE reward",
                         "random reward", "reward TPE − random"], rows))
    out.append(f"\nReward: {_versus_text(after.reward)}. Accuracy: {_versus_text(after.accuracy, 'accuracy')}.\n")
    return "".join(out)


# -- the hardware precondition ---------------------------------------------------------------
def _precondition_answer(target: Target, found: Precondition | None) -> str:
    if target.cost != "step_ms":
        return "not needed: the MACs reward does not depend on the device."
    if found is None:
        return "not measured (see below)."
    early, whole = found.ratio("early", "none"), found.ratio("all", "none")
    expected = [c.text for c in target.claims if expectation(found, c.hardware).expected]
    return (f"training throughput with the first half fused ÷ none fused {early.text()}; every stage fused ÷ none "
            f"{whole.text()} (paper, B4 on a V100: {paper_ratio('early', 'none')} for stages 1–3, "
            f"{paper_ratio('all', 'none')} for every stage). "
            + (f"Expected on this device: {'; '.join(expected)}." if expected
               else "This device gives the step-time reward no reason to prefer the V2 operator layout."))


def _precondition_section(target: Target, found: Precondition | None) -> str:
    out = ["\n## Hardware precondition\n\n"]
    if target.cost != "step_ms":
        return out[0] + ("The MACs reward counts multiply-adds, which are the same on every device, so the "
                         "findings do not depend on the hardware and no ablation is measured.\n")
    out.append("EfficientNetV2 (Table 3, EfficientNet-B4 on a V100) found Fused-MBConv in stages 1–3 raises training "
               "throughput from 155 to 216 img/s, stages 1–5 to 223, while fusing every stage is slower again (206): "
               "that is why a step-time "
               "reward favours fused early stages and MBConv later. Whether *this* device does the same decides "
               "what the search can be expected to find, so the same ablation is measured on it.\n\n")
    if found is None:
        return "".join(out) + ("Not measured in this reproduction (older reproduction, or `--precondition-rounds 0`); "
                               "run `python benchmarks/fused_ablation.py` for it.\n")
    out.append(f"The reference ({found.reference}) with only the stage operators switched, each the whole full-size "
               f"network timed at the search's timing shape ({found.shape}) on {_hardware_words(found.hardware)}; "
               f"{plural(found.rounds, 'interleaved round')} of `nas.measure.costs` step timings (median of each "
               f"round's median, IQR over rounds):\n\n")
    out.append(md_table(VARIANT_COLUMNS, variant_rows(found)))
    out.append("\nThroughput ratios (geometric mean of the per-round ratios, 95% t-interval, p of no difference):\n\n")
    out.append(md_table(RATIO_COLUMNS, ratio_rows(found)))
    out.append("\nWhat each design finding can be expected to show here:\n\n")
    for claim in target.claims:
        out.append(f"- {claim.text}: {expectation(found, claim.hardware).text}\n")
    for note in found.notes:
        out.append(f"\nNote: {note}.\n")
    return "".join(out)


def _hardware_words(hardware: dict[str, Any]) -> str:
    device = hardware.get("device_model") if hardware.get("device") == "cuda" else hardware.get("cpu")
    return (f"{device} ({hardware.get('device')}, {hardware.get('threads')} threads, {hardware.get('dtype')}, "
            f"torch {hardware.get('torch')})")


def _pm(pair: tuple[float, float], digits: int = 4, seeds: int = 2) -> str:
    """mean ± std; one seed has no spread to show, and a figure never measured (NaN) no spread either."""
    if seeds < 2 or not math.isfinite(pair[0]):
        return fmt(pair[0], digits)
    return f"{fmt(pair[0], digits)} ± {fmt(pair[1], digits)}"


def _retrain_section(folder: Path, found: list[Retrained], ref: Retrained | None, retrained: list[Retrained],
                     search: RunData, target: Target) -> str:
    out = ["\n## Found vs reference after longer training\n\n"]
    if not retrained:
        return out[0] + "No retraining finished yet.\n"
    if target.cost == "step_ms":
        out.append("Reward re-scored with the reference's step time measured in the same (warm) process as the "
                   "others; the search normalised by its first measurement of the process"
                   + (f" ({fmt(search.normalisers.step_ms, 1)} ms vs {fmt(ref.step_ms[0], 1)} ms now)"
                      if ref is not None and search.normalisers is not None else "") + ".\n\n")
    else:
        out.append("The MACs reward does not depend on the device, so no step was timed (step ms: –).\n\n")
    rows = []
    for r in retrained:
        verdict = ""
        if r.role == "found" and ref is not None:
            on_reward, front = compare(r, ref, target.cost)
            verdict = f"{REWARD_WORDS[on_reward]}; {front}"
        rows.append([
            r.role, r.trial if r.trial is not None else "–", fmt(r.proxy_accuracy), _pm(r.accuracy, 4, r.seeds),
            _pm(r.step_ms, 1, r.seeds), _pm(r.reward, 4, r.seeds), fmt_count(r.params), fmt_count(r.macs), r.seeds,
            verdict,
        ])
    out.append(md_table(["role", "trial", "proxy acc", "retrained acc", "step ms", "reward", "params", "MACs",
                         "seeds", "vs reference"], rows))
    def point(r: Retrained, label: str) -> plots.Point:
        x, x_err = cost_of(r, target.cost)
        return plots.Point(x, r.accuracy[0], x_err, r.accuracy[1], label)

    plots.scatter_front(folder / "retrained.png", [], xlabel=COST_AXES[target.cost].label,
                        title="retrained: mean ± std over seeds",
                        reference=point(ref, "reference") if ref is not None else None,
                        highlights=[point(r, f"trial {r.trial}") for r in found])
    out.append(f"\n![retrained accuracy vs {COST_AXES[target.cost].noun}](retrained.png)\n")
    if found:
        out.append(f"\nBest found (trial {found[0].trial}), full-size layout:\n\n")
        out.append(arch_table(Arch.from_string(found[0].arch)))
    if search.reference is not None:
        out.append(f"\nReference ({target.paper.split(' (')[0]}), full-size layout:\n\n")
        out.append(arch_table(search.reference))
    return "".join(out)


@dataclass(frozen=True)
class Finding:
    """One design finding measured every way the report shows it."""

    claim: Claim
    paper: str  # on the published architecture
    top: str  # on the pooled top k of every TPE search (descriptive only)
    uniform: str  # on uniform draws: the space's chance level (descriptive only)
    holds: bool  # on the pooled top k
    versus_random: SeedTest  # per seed: TPE's top k against the same seed's random top k
    reward: RankTest  # unbiased samples (random searches' trials): does the reward favour it?
    accuracy: RankTest  # ... does accuracy alone?
    cost: RankTest  # ... does the cost factor alone?
    accuracy_only: SeedTest  # per seed: the accuracy-only search's top k against random's
    with_cost: SeedTest  # per seed: TPE's top k (with the cost term) against the accuracy-only search's
    hardware: Expectation
    verdict: str
    made_by: str


def _findings(target: Target, study: Study, k: int) -> list[Finding]:
    """Each finding tested with the search seed as the unit (TPE's top k against the same
    seed's random search's top k), on unbiased samples (every finished trial of the random
    searches, ranked by reward), and attributed to accuracy or cost by the accuracy-only searches."""
    search = study.search
    objective = search.objective()
    paired = [s for s in study.seeds if s in study.searches and s in study.baselines]
    ablated = [s for s in paired if s in study.ablations]
    uniform = uniform_sample(search.space) if search.space is not None else []
    pooled = [a for s in study.searches.values() for a in found_top(s, k)]
    samples = [row for s in paired for row in _unbiased_rows(study.baselines[s])]
    sample_archs = [Arch.from_string(r["arch"]) for r in samples]
    figures = {"reward": [_rescored(r, objective) for r in samples], "accuracy": [r["accuracy"] for r in samples],
               "cost": [objective.cost_factor(r["step_ms"], r["params"], r["macs"]) if objective else math.nan
                        for r in samples]}
    out = []
    for claim in target.claims:
        def text(archs: list[Arch], claim: Claim = claim) -> str:
            return claim.show(archs, claim.value(archs)) if archs else "–"

        def scores(runs: dict[int, RunData], seeds: list[int], claim: Claim = claim) -> list[float]:
            return [claim_score(claim, found_top(runs[s], k)) for s in seeds]

        value = claim.value(pooled) if pooled else math.nan
        holds = bool(pooled) and not math.isnan(value) and claim.holds(pooled, value)
        versus = seed_test(scores(study.searches, paired), scores(study.baselines, paired))
        per_arch = [claim_score(claim, [a]) for a in sample_archs]
        ranks = {name: rank_test(per_arch, values) for name, values in figures.items()}
        accuracy_only = seed_test(scores(study.ablations, ablated), scores(study.baselines, ablated))
        with_cost = seed_test(scores(study.searches, ablated), scores(study.ablations, ablated))
        hardware = (Expectation(None, "MACs reward: the device plays no part") if target.cost != "step_ms"
                    else expectation(study.precondition, claim.hardware))
        out.append(Finding(
            claim, text([search.reference] if search.reference is not None else []), text(pooled), text(uniform),
            holds, versus, ranks["reward"], ranks["accuracy"], ranks["cost"], accuracy_only, with_cost, hardware,
            judge_finding(holds, versus.pvalue, ranks["reward"].pvalue, versus.seeds, hardware),
            attribute(versus, accuracy_only, with_cost)))
    return out


def _unbiased_rows(run: RunData) -> list[dict[str, Any]]:
    """A random search's finished trials, the reference (its trial 0, chosen, not drawn) left out."""
    ref = run.reference.to_string() if run.reference is not None else None
    return [r for r in run.complete if r["arch"] != ref and r.get("accuracy") is not None]


def _rescored(row: dict[str, Any], objective: Objective | None) -> float:
    if objective is None:
        return float(row["reward"])
    return objective.reward(row["accuracy"], row["step_ms"], row["params"], row["macs"])


def found_top(run: RunData, k: int) -> list[Arch]:
    """The k best distinct architectures by reward that the search found (the reference, trial 0
    of every run, shows every finding by construction and is left out)."""
    return [Arch.from_string(r["arch"]) for r in ranked(run)[:k]]


def _per_seed(test: SeedTest, side: str) -> str:
    values = test.a if side == "a" else test.b
    return " / ".join(fmt(v, 2) for v in values) if values else "–"


def _rank_text(test: RankTest) -> str:
    return "–" if math.isnan(test.rho) else f"{test.rho:+.2f} (p = {fmt_p(test.pvalue)})"


def _findings_section(target: Target, findings: list[Finding], study: Study, k: int) -> str:
    search = study.search
    seeds = findings[0].versus_random.seeds if findings else 0
    samples = findings[0].reward.n if findings else 0
    pruned = sum(r["state"] == "PRUNED" for b in study.baselines.values() for r in b.rows)
    left_out = (f"; {pruned} pruned trials are left out, since their accuracy is from fewer epochs, so these "
                f"are the trials that survived the median pruner, not a uniform sample" if pruned else "")
    out = [f"\n## Do the paper's design findings reappear? (top {k} of each search, "
           f"{plural(seeds, 'search seed')})\n\n"]
    out.append(f"Two questions, each with its own test, and a finding is **reproduced** only when both say so, it "
               f"holds in the searches' top {k}, and the device does not speak against it (hardware precondition "
               f"above):\n\n"
               f"1. *Does the search find it beyond what random search finds?* Per search seed, the finding's score "
               f"in the top {k} by reward of the TPE search against the top {k} of the random search with the same "
               f"seed; across seeds a one-sided Wilcoxon signed-rank test (the seed is the unit: the trials of one "
               f"search are correlated, since TPE converges; with n seeds all one way p = 1/2^n, so 3 seeds cannot "
               f"go below 0.125).\n"
               f"2. *Does the reward favour it at all?* On unbiased samples, every finished trial of the random "
               f"searches ({samples} trials{left_out}), Spearman's rank correlation of the finding's score per "
               f"architecture with its reward (one-sided). A share in TPE's top alone shows where TPE converged, "
               f"not what the reward favours.\n\n"
               f"Scores are shares of stages (0–1), or 1/0 for whether a mix holds. \"pooled top\" and \"chance\" "
               f"(2,000 uniform draws) describe, they test nothing. {len(findings)} findings are tested, so one may "
               f"pass at p < {ALPHA:g} by chance alone in about {1 - (1 - ALPHA) ** max(1, len(findings)):.0%} of "
               f"reproductions.\n\n")
    rows = [[f.claim.text, f.paper, f.top, f.uniform, _per_seed(f.versus_random, "a"), _per_seed(f.versus_random, "b"),
             fmt_p(f.versus_random.pvalue), _rank_text(f.reward), f.hardware.text, f.verdict] for f in findings]
    out.append(md_table(["finding", "paper", f"pooled top {k}", "chance", "TPE per seed", "random per seed",
                         "p (seeds)", "ρ with reward (p)", "hardware", "verdict"], rows))
    out.append(_ablation_section(findings, study, k))
    out.append(_stage_agreement(search, k))
    out.append("\n![choices per stage](search/choices.png)\n")
    return "".join(out)


def _ablation_section(findings: list[Finding], study: Study, k: int) -> str:
    out = ["\n### Accuracy or cost: the cost-term ablation\n\n"]
    out.append("The reward multiplies accuracy by a cost factor, so a finding can come from either. The ablation runs "
               "the same searches (seeds, budget) with every cost weight set to 0, searching for accuracy alone. "
               f"\"accuracy-only vs random\": per seed, its top {k} against the random search's (does accuracy alone "
               f"find it?); \"with vs without cost\": the reward search's top {k} against the accuracy-only one's "
               "(does the cost term add it?); both one-sided Wilcoxon over seeds. The unbiased samples (random "
               "searches' trials) give the same answer without any search: ρ of the finding with accuracy and with "
               "the cost factor.\n\n")
    if not study.ablations:
        out.append("No accuracy-only search in this reproduction (made before the ablation, or `--no-ablation`); "
                   "only the unbiased samples' correlations speak.\n\n")
    rows = [[f.claim.text, _per_seed(f.accuracy_only, "a"), fmt_p(f.accuracy_only.pvalue), fmt_p(f.with_cost.pvalue),
             _rank_text(f.accuracy), _rank_text(f.cost), f.made_by] for f in findings]
    out.append(md_table(["finding", "accuracy-only per seed", "accuracy-only vs random p", "with vs without cost p",
                         "ρ with accuracy (p)", "ρ with cost factor (p)", "made by"], rows))
    return "".join(out)


def _stage_agreement(search: RunData, k: int) -> str:
    top = found_top(search, k)
    if not top or search.reference is None:
        return ""
    rows = []
    matches = 0
    for i, per_field in enumerate(choice_frequencies(top)):
        row: list[Any] = [i + 1]
        paper = search.reference.stages[i] if i < len(search.reference.stages) else None
        for name in CHOICE_FIELDS:
            value, share = majority(per_field[name])
            want = getattr(paper, name) if paper is not None else None
            same = value == want
            matches += same
            row.append(f"{_choice(value, name)} {share:.0%} / {_choice(want, name)}" + (" ✓" if same else ""))
        rows.append(row)
    total = len(rows) * len(CHOICE_FIELDS)
    return (f"\nPer stage, the most frequent choice among the top {len(top)} (share) / the paper's choice; "
            f"{matches} of {total} agree:\n\n"
            + md_table(["stage", "operator", "kernel", "expansion", "SE"], rows))


def _choice(value: Any, name: str) -> str:
    if value is None:
        return "–"
    if name == "op":
        return OP_NAMES.get(value, value)
    if name == "kernel":
        return f"{value}×{value}"
    return f"{value:g}"


def _curves(search: RunData, baseline: RunData | None, objective: Objective | None) -> dict[str, Any]:
    tpe = best_by_trial(search.rows, objective)
    out: dict[str, Any] = {"tpe": tpe}
    if baseline is not None:
        rnd = best_by_trial(baseline.rows, objective)
        out["random"] = rnd
        common = min(search.finished(), baseline.finished())
        out["common"] = common
        out["tpe_at"] = best_after(*tpe, common)
        out["random_at"] = best_after(*rnd, common)
    return out


def versus_n(study: Study) -> int:
    """The trial count every seed's TPE and random runs have both reached."""
    counts = [r.finished() for seed in study.seeds for r in (study.searches.get(seed), study.baselines.get(seed))
              if r is not None and seed in study.searches and seed in study.baselines]
    return min(counts, default=0)


def _tpe_vs_random(study: Study, objective: Objective | None) -> PairedTest | None:
    """Best reward after the same number of trials, TPE vs random with the same seed, every seed
    scored on the first search's reference measurement."""
    n = versus_n(study)
    paired = [s for s in study.seeds if s in study.searches and s in study.baselines]
    if n < 1 or not paired:
        return None
    tpe = [best_after(*best_by_trial(study.searches[s].rows, objective), n) for s in paired]
    rnd = [best_after(*best_by_trial(study.baselines[s].rows, objective), n) for s in paired]
    pairs = [(a, b) for a, b in zip(tpe, rnd, strict=True) if a is not None and b is not None]
    if not pairs:
        return None
    return paired_test([a for a, _ in pairs], [b for _, b in pairs])


def _random_section(folder: Path, curves: dict[str, Any], versus: PairedTest | None, study: Study) -> str:
    search, baseline = study.search, study.baseline
    out = ["\n## TPE vs random search\n\n"]
    named = {"TPE": curves["tpe"]}
    if "random" in curves:
        named["random"] = curves["random"]
    ref = search.reference_row
    plots.progress(folder / "search_vs_random.png", named, title=f"best reward so far, seed {study.seeds[0]}",
                   reference=ref["reward"] if ref else None, xlabel="trials finished")
    out.append("![search vs random](search_vs_random.png)\n")
    if "random" not in curves:
        return "".join(out) + "\nNo random baseline in this reproduction.\n"
    if versus is not None:
        n = versus_n(study)
        out.append(f"\nBest reward after {n} trials (the count every run reached), per search seed, TPE and "
                   f"random search run with the same seed (same data split and same first draws):\n\n")
        rows = [[seed, fmt(a), fmt(b), fmt(a - b)] for seed, a, b in zip(
            [s for s in study.seeds if s in study.searches and s in study.baselines], versus.a, versus.b,
            strict=False)]
        out.append(md_table(["seed", "TPE", "random", "TPE − random"], rows))
        out.append(f"\n{_versus_text(versus)}. The paired t-test decides; Wilcoxon's signed-rank test is shown as a "
                   f"check that needs no normality (with 3 seeds its p cannot go below 0.25, with 6 below 0.031).\n")
    last = max(search.finished(), baseline.finished() if baseline else 0)
    marks = sorted(n for n in {10, 20, 50, 100, 200, 500, 1000, curves["common"], last} if 0 < n <= last)
    rows = []
    for n in marks:
        # a run that has not reached n trials has no "best after n"
        t = best_after(*curves["tpe"], n) if n <= search.finished() else None
        r = best_after(*curves["random"], n) if baseline is not None and n <= baseline.finished() else None
        rows.append([n, fmt(t), fmt(r), fmt(t - r) if t is not None and r is not None else "–"])
    out.append(f"\nSeed {study.seeds[0]}: best reward among the first N trials. Each run's trial 0 is the reference, "
               "and TPE's first 10 trials are random draws from the same seeds as the baseline's, so the two start "
               "alike:\n\n")
    out.append(md_table(["N", "TPE", "random", "TPE − random"], rows))
    return "".join(out)


def _tau(retrained: list[Retrained]) -> tuple[Correlation, int]:
    pairs = [(r.proxy_accuracy, r.first_seed_accuracy) for r in retrained
             if r.proxy_accuracy is not None and r.first_seed_accuracy is not None]
    return kendall_tau([p for p, _ in pairs], [q for _, q in pairs]), len(pairs)


def tau_text(tau: Correlation) -> str:
    """Kendall's tau with its p-value; "–" for both when undefined."""
    return f"Kendall tau {fmt(tau.statistic, 2)} (p = {fmt_p(tau.pvalue)})"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"


def _tau_section(folder: Path, retrained: list[Retrained], tau: Correlation, n: int) -> str:
    out = ["\n## How well did the proxy rank architectures?\n\n"]
    points = [plots.Point(r.proxy_accuracy, r.first_seed_accuracy, label=f"{r.role} {r.trial}")
              for r in retrained if r.proxy_accuracy is not None and r.first_seed_accuracy is not None]
    plots.rank_scatter(folder / "proxy_vs_retrained.png", points, xlabel="proxy accuracy",
                       ylabel="retrained accuracy (first seed)", title=f"proxy vs retrained, {tau_text(tau)}")
    out.append(f"Kendall tau between proxy accuracy and retrained accuracy (first seed) over {n} architectures: "
               f"**{fmt(tau.statistic, 2)}** (1 = same order, 0 = unrelated), p = {fmt_p(tau.pvalue)} (the chance "
               f"of an order this close if the two were unrelated; `scipy.stats.kendalltau`). The architectures "
               f"are the best found, the reference and a few more spread over the proxy ranking.\n\n"
               f"![proxy vs retrained](proxy_vs_retrained.png)\n")
    return "".join(out)


def _provenance_section(records: list[PhaseRecord]) -> str:
    out = ["\n## Which code made it\n\n"]
    if not records:
        return out[0] + "No phase recorded its commit (a reproduction made before phases were recorded).\n"
    commits = {r.commit for r in records}
    changed = [r for r in records if r.allowed_code_change]
    dirty = any(r.dirty for r in records)
    if len(commits) == 1 and not dirty:
        which = "code outside a git checkout" if None in commits else f"one clean commit ({records[0].commit[:12]})"
        out.append(f"Every phase ran from {which}.")
    else:
        if len(commits) > 1:
            out.append(f"**The code changed during this reproduction**: its phases ran from {len(commits)} commits, "
                       f"so differences between them may come from the code as well as from the search.")
        if dirty:
            out.append(f"{' ' if len(commits) > 1 else ''}**Some phases ran from a tree with uncommitted changes**, "
                       f"so the code that made them is not fully known.")
    if changed:
        out.append(" `--allow-code-change` was given for: " + ", ".join(r.phase for r in changed) + ".")
    searches, retraining = phase_minutes(records, "search "), phase_minutes(records, "retrain")
    cut = sum(r.finished is None for r in records)
    out.append(f" Time it took (finished stretches of work): searches {searches:.0f} min, retraining "
               f"{retraining:.0f} min, precondition {phase_minutes(records, 'precondition'):.1f} min"
               + (f"; {cut} stretch{'es' if cut != 1 else ''} cut off (interrupted, or still running) not counted"
                  if cut else "")
               + ".")
    out.append("\n\n" + md_table(["phase", "commit", "tree", "started (UTC)", "minutes", "--allow-code-change"],
                                  provenance_rows(records)))
    return "".join(out)


def _search_section(search: RunData) -> str:
    return ("\n## The search itself\n\n"
            "Full report of the search run: [search/report.md](search/report.md) (best architecture, Pareto front, "
            "failures, settings and versions); the baseline's: [random/report.md](random/report.md).\n\n"
            f"![accuracy vs cost](search/{cost_axis(search).plot})\n")

