"""The reproduction's report.md and plots, rendered from its files (no training)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nas import plots
from nas.arch import Arch
from nas.errors import RunError
from nas.objective import Objective
from nas.report import (
    COST_AXES,
    OP_NAMES,
    RunData,
    arch_table,
    cost_axis,
    fmt,
    fmt_count,
    load_run,
    md_table,
    plural,
    top_k_size,
    write_report,
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
from nas.reproduce.provenance import PhaseRecord, provenance_rows, read_provenance
from nas.reproduce.request import REQUEST_FILE, is_reproduction, seed_runs
from nas.reproduce.retrain import pick_candidates, read_retrain, retrain_settings
from nas.reproduce.significance import ALPHA, MIN_POINTS, PairedTest, finding_pvalue, judge_finding, paired_test
from nas.runs import RunDir, atomic_write
from nas.settings import SearchSettings, settings_from_run
from nas.stats import (
    CHOICE_FIELDS,
    Correlation,
    choice_frequencies,
    kendall_tau,
    majority,
)


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
    write_report(search_run, top_k=top_k)
    search = load_run(search_run)
    runs = seed_runs(int(asked.get("seed", 0)), int(asked.get("search_seeds", 1)))
    searches, baselines = {runs[0].seed: search}, {}
    for pair in runs:
        for sub, into in ((pair.tpe, searches), (pair.random, baselines)):
            if pair.seed not in into and RunDir(folder / sub).exists():
                write_report(RunDir(folder / sub), top_k=top_k, full_counts=False)
                into[pair.seed] = load_run(RunDir(folder / sub))
    settings = retrain_settings(settings_from_run(search_run), asked.get("retrain_epochs"))
    seeds = [settings.seed + i for i in range(int(asked.get("seeds", 1)))]
    candidates = pick_candidates(search, int(asked.get("top", 3)), int(asked.get("rank_extra", 0)), seeds)
    ref_string = search.reference.to_string() if search.reference else None
    retrained = summarise_retrain(read_retrain(folder), candidates, search.objective(), ref_string,
                                  settings.proxy.epochs)
    k = top_k or top_k_size(len(search.complete))
    study = Study(searches, baselines, [p.seed for p in runs], load_precondition(folder))
    text = _render(folder, asked, target, study, retrained, settings, k)
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

    @property
    def search(self) -> RunData:
        return self.searches[self.seeds[0]]

    @property
    def baseline(self) -> RunData | None:
        return self.baselines.get(self.seeds[0])


def _render(folder: Path, asked: dict[str, Any], target: Target, study: Study, retrained: list[Retrained],
            settings: SearchSettings, k: int) -> str:
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
        f"{plural(int(asked.get('seeds', 1)), 'seed')} for the {asked.get('top')} best found and the reference. "
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
    out.append(_answers(target, found, ref, findings, curves, versus, tau, tau_n, k, study))
    out.append(_precondition_section(target, study.precondition))
    out.append(_retrain_section(folder, found, ref, retrained, search, target))
    out.append(_findings_section(target, findings, study, k))
    out.append(_random_section(folder, curves, versus, study))
    out.append(_tau_section(folder, retrained, tau, tau_n))
    out.append(_provenance_section(read_provenance(folder)))
    out.append(_search_section(search))
    return "".join(out)


def _answers(target: Target, found: list[Retrained], ref: Retrained | None,
             findings: list[tuple[Claim, dict[str, Any]]], curves: dict[str, Any], versus: PairedTest | None,
             tau: Correlation, tau_n: int, k: int, study: Study) -> str:
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
    reproduced = [c.text for c, m in findings if m["verdict"] == "reproduced"]
    others = [f"{c.text}: {m['verdict']}" for c, m in findings if m["verdict"] != "reproduced"]
    pooled = findings[0][1]["n"] if findings else 0
    lines.append(f"- **Paper's design findings** (top {k} trials of each TPE search, {pooled} architectures): "
                 f"{len(reproduced)} of {len(findings)} reproduced (found, p < {ALPHA:g} against uniform draws, "
                 f"and not ruled out by the device)" + (f" ({'; '.join(reproduced)})" if reproduced else "")
                 + (f"; {'; '.join(others)}" if others else "") + ".")
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


def _versus_text(versus: PairedTest) -> str:
    interval = (f", 95% CI {fmt(versus.low)} to {fmt(versus.high)}" if math.isfinite(versus.low) else "")
    tests = (f"; paired t-test p = {fmt_p(versus.pvalue)}, Wilcoxon p = {fmt_p(versus.wilcoxon_pvalue)}"
             if versus.pairs >= MIN_POINTS else "")
    return (f"best reward TPE − random {fmt(versus.mean_difference)} on average{interval}{tests}: "
            f"**{versus.verdict()}**")


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
               f"{plural(found.rounds, 'interleaved round')} of `nas.measure` step timings (median of each "
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


def _findings(target: Target, study: Study, k: int) -> list[tuple[Claim, dict[str, Any]]]:
    """Each finding measured on the pooled top k of every TPE search (and of every random
    baseline), its chance level on uniform draws, p-value, hardware expectation and verdict."""
    search = study.search
    top = [a for s in study.searches.values() for a in found_top(s, k)]
    rand = [a for b in study.baselines.values() for a in found_top(b, k)]
    uniform = uniform_sample(search.space) if search.space is not None else []
    ref = [search.reference] if search.reference is not None else []
    out = []
    for claim in target.claims:
        def measure(archs: list[Arch], claim: Claim = claim) -> tuple[str, bool | None]:
            if not archs:
                return "–", None
            value = claim.value(archs)
            return claim.show(archs, value), (None if math.isnan(value) else claim.holds(archs, value))

        (top_text, holds), (rand_text, _), (uni_text, _), (ref_text, _) = (
            measure(top), measure(rand), measure(uniform), measure(ref))
        hardware = (Expectation(None, "MACs reward: the device plays no part") if target.cost != "step_ms"
                    else expectation(study.precondition, claim.hardware))
        p = finding_pvalue(claim, uniform, top)
        out.append((claim, {"top": top_text, "holds": bool(holds), "random": rand_text, "uniform": uni_text,
                            "p": p, "paper": ref_text, "n": len(top), "hardware": hardware,
                            "verdict": judge_finding(bool(holds), p, len(top), hardware)}))
    return out


def found_top(run: RunData, k: int) -> list[Arch]:
    """The k best complete trials by reward that the search found: the reference, enqueued as
    trial 0 of every run, shows every finding by construction and is left out."""
    ref = run.reference.to_string() if run.reference is not None else None
    rows = sorted((r for r in run.complete if r["arch"] != ref), key=lambda r: -r["reward"])
    return [Arch.from_string(r["arch"]) for r in rows[:k]]


def _findings_section(target: Target, findings: list[tuple[Claim, dict[str, Any]]], study: Study, k: int) -> str:
    search = study.search
    n = findings[0][1]["n"] if findings else 0
    out = [f"\n## Do the paper's design findings reappear? (top {k} of each TPE search, {n} architectures)\n\n"]
    out.append(f"Measured on the top {k} trials by reward of each TPE search ({len(study.searches)}), pooled, the "
               f"reference (trial 0 of every run) left out; \"random top\" is the same measure on the random "
               f"baselines' top trials (if it shows the finding as well, selecting by reward did it, not TPE), "
               f"\"chance\" on 2,000 architectures drawn uniformly from the space, \"paper\" on the published "
               f"architecture. \"p\" is how often {n} uniform draws show the finding at least as strongly "
               f"(one-sided, 1,000 draws; {len(findings)} findings are tested, so one may pass at p < {ALPHA:g} by "
               f"chance alone in about {1 - (1 - ALPHA) ** max(1, len(findings)):.0%} of reproductions). A finding "
               f"is **reproduced** only when it holds, p < {ALPHA:g}, it rests on at least {MIN_POINTS} "
               f"architectures and the device does not speak against it (hardware precondition above): a design "
               f"this device does not run faster is \"not expected on this device\", which is a different verdict "
               f"from \"expected but not found\".\n\n")
    rows = [[claim.text, m["paper"], m["top"], m["random"], m["uniform"], fmt_p(m["p"]), m["hardware"].text,
             m["verdict"]] for claim, m in findings]
    out.append(md_table(["finding", "paper", f"TPE top {k} ×{len(study.searches)}", "random top", "chance", "p",
                         "hardware", "verdict"], rows))
    out.append(_stage_agreement(search, k))
    out.append("\n![choices per stage](search/choices.png)\n")
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
    if len(commits) == 1 and not any(r.dirty for r in records):
        which = "code outside a git checkout" if None in commits else f"one clean commit ({records[0].commit[:12]})"
        out.append(f"Every phase ran from {which}.")
    else:
        out.append(f"**The code changed during this reproduction** ({plural(len(commits), 'commit')}"
                   f"{', a dirty tree' if any(r.dirty for r in records) else ''}): its phases did not all run the "
                   f"same code, so differences between them may come from the code as well as from the search.")
    if changed:
        out.append(" `--allow-code-change` was given for: " + ", ".join(r.phase for r in changed) + ".")
    out.append("\n\n" + md_table(["phase", "commit", "tree", "started (UTC)", "--allow-code-change"],
                                  provenance_rows(records)))
    return "".join(out)


def _search_section(search: RunData) -> str:
    return ("\n## The search itself\n\n"
            "Full report of the search run: [search/report.md](search/report.md) (best architecture, Pareto front, "
            "failures, settings and versions); the baseline's: [random/report.md](random/report.md).\n\n"
            f"![accuracy vs cost](search/{cost_axis(search).plot})\n")

