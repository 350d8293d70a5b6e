"""The reproduction's report.md and plots, rendered from its files (no training)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nas import plots
from nas.arch import Arch
from nas.errors import RunError
from nas.objective import Objective
from nas.report import (
    OP_NAMES,
    RunData,
    arch_table,
    fmt,
    fmt_count,
    load_run,
    md_table,
    plural,
    top_k_size,
    write_report,
)
from nas.reproduce.analysis import (
    COSTS,
    REWARD_WORDS,
    Retrained,
    best_after,
    best_by_trial,
    compare,
    cost_of,
    summarise_retrain,
    uniform_sample,
)
from nas.reproduce.claims import TARGETS, Claim, Target
from nas.reproduce.request import REQUEST_FILE, is_reproduction
from nas.reproduce.retrain import pick_candidates, read_retrain, retrain_settings
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
    random_run = RunDir(folder / "random")
    baseline = None
    if random_run.exists():
        write_report(random_run, top_k=top_k, full_counts=False)
        baseline = load_run(random_run)
    settings = retrain_settings(settings_from_run(search_run), asked.get("retrain_epochs"))
    seeds = [settings.seed + i for i in range(int(asked.get("seeds", 1)))]
    candidates = pick_candidates(search, int(asked.get("top", 3)), int(asked.get("rank_extra", 0)), seeds)
    ref_string = search.reference.to_string() if search.reference else None
    retrained = summarise_retrain(read_retrain(folder), candidates, search.objective(), ref_string,
                                  settings.proxy.epochs)
    k = top_k or top_k_size(len(search.complete))
    text = _render(folder, asked, target, search, baseline, retrained, settings, k)
    atomic_write(folder / "report.md", text)
    return folder / "report.md"


def _render(folder: Path, asked: dict[str, Any], target: Target, search: RunData, baseline: RunData | None,
            retrained: list[Retrained], settings: SearchSettings, k: int) -> str:
    objective = search.objective()
    out = [f"# Reproducing {target.paper} at small scale: `{folder.name}`\n\n"]
    out.append(f"Made with `{asked.get('command', 'nas reproduce ' + target.name)}`.\n\n")
    finished = search.finished()
    out.append(
        f"Search: {asked.get('space')} space, dataset {asked.get('dataset')}, objective {target.objective}, "
        f"**{finished} of {asked.get('budget')} trials** (TPE); "
        + (f"random-search baseline {baseline.finished()} of {asked.get('baseline_budget')} trials; " if baseline
           else "no random-search baseline; ")
        + f"retraining: {plural(settings.proxy.epochs, 'epoch')} on the whole training split, "
        f"{plural(int(asked.get('seeds', 1)), 'seed')} for the {asked.get('top')} best found and the reference. "
        f"The paper sampled up to 1000 models trained ~10 "
        f"epochs at reduced size on ImageNet; this is a proxy of a proxy, so read the numbers as such.\n"
    )
    found = [r for r in retrained if r.role == "found"]
    ref = next((r for r in retrained if r.role == "reference"), None)
    findings = _findings(target, search, baseline, k)
    tau, tau_n = _tau(retrained)
    curves = _curves(search, baseline, objective)
    out.append("\n## Answers\n\n")
    out.append(_answers(target, found, ref, findings, curves, tau, tau_n, k))
    out.append(_retrain_section(folder, found, ref, retrained, search, target))
    out.append(_findings_section(target, findings, search, k))
    out.append(_random_section(folder, curves, search, baseline))
    out.append(_tau_section(folder, retrained, tau, tau_n))
    out.append(_search_section(search))
    return "".join(out)


def _answers(target: Target, found: list[Retrained], ref: Retrained | None,
             findings: list[tuple[Claim, dict[str, Any]]], curves: dict[str, Any], tau: Correlation, tau_n: int,
             k: int) -> str:
    lines = []
    if found and ref is not None:
        best = found[0]
        on_reward, front = compare(best, ref, target.cost)
        lines.append(
            f"- **Found vs reference (retrained)**: the best found (trial {best.trial}) {on_reward} the reference on "
            f"reward ({_pm(best.reward, 4, best.seeds)} vs {_pm(ref.reward, 4, ref.seeds)}) and {front}: accuracy "
            f"{_pm(best.accuracy, 4, best.seeds)} vs {_pm(ref.accuracy, 4, ref.seeds)}, step time "
            f"{_pm(best.step_ms, 1, best.seeds)} vs {_pm(ref.step_ms, 1, ref.seeds)} ms, MACs "
            f"{fmt_count(best.macs)} vs {fmt_count(ref.macs)} (mean ± std over {plural(best.seeds, 'seed')} "
            f"and {plural(ref.seeds, 'seed')})."
        )
    else:
        lines.append("- **Found vs reference**: not retrained yet.")
    held = [c.text for c, m in findings if m["holds"] and m["luck"] < 0.05]
    weak = [c.text for c, m in findings if m["holds"] and not m["luck"] < 0.05]
    lines.append(f"- **Paper's design findings** (top {k} trials): {len(held)} of {len(findings)} reappear beyond "
                 f"chance" + (f" ({'; '.join(held)})" if held else "")
                 + (f"; {len(weak)} more only as often as random architectures show it ({'; '.join(weak)})"
                    if weak else "") + ".")
    if curves.get("random") and curves["common"] > 0:
        n = curves["common"]
        lines.append(f"- **TPE vs random search** after {n} trials: best reward {fmt(curves['tpe_at'])} vs "
                     f"{fmt(curves['random_at'])} (both scored against the same reference measurement).")
    elif "random" in curves:
        lines.append("- **TPE vs random search**: the random baseline has no finished trials yet.")
    else:
        lines.append("- **TPE vs random search**: no baseline run.")
    if tau_n < 5:
        caveat = " (too few to say much)"
    elif not tau.significant(0.05):  # NaN included: never read as agreement
        caveat = " (not distinguishable from an unrelated order at p < 0.05)"
    else:
        caveat = ""
    lines.append(f"- **Proxy vs longer training**: {tau_text(tau)} between proxy accuracy and retrained "
                 f"accuracy over {tau_n} architectures{caveat}.")
    return "\n".join(lines) + "\n"


def _pm(pair: tuple[float, float], digits: int = 4, seeds: int = 2) -> str:
    """mean ± std; one seed has no spread to show."""
    return fmt(pair[0], digits) if seeds < 2 else f"{fmt(pair[0], digits)} ± {fmt(pair[1], digits)}"


def _retrain_section(folder: Path, found: list[Retrained], ref: Retrained | None, retrained: list[Retrained],
                     search: RunData, target: Target) -> str:
    out = ["\n## Found vs reference after longer training\n\n"]
    if not retrained:
        return out[0] + "No retraining finished yet.\n"
    out.append("Reward re-scored with the reference's step time measured in the same (warm) process as the others; "
               "the search normalised by its first measurement of the process"
               + (f" ({fmt(search.normalisers.step_ms, 1)} ms vs {fmt(ref.step_ms[0], 1)} ms now)"
                  if ref is not None and search.normalisers is not None else "") + ".\n\n")
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

    xlabel = "training step time at the proxy (ms)" if target.cost == "step_ms" else "MACs at the proxy"
    plots.scatter_front(folder / "retrained.png", [], xlabel=xlabel, title="retrained: mean ± std over seeds",
                        reference=point(ref, "reference") if ref is not None else None,
                        highlights=[point(r, f"trial {r.trial}") for r in found])
    out.append(f"\n![retrained accuracy vs {COSTS[target.cost]}](retrained.png)\n")
    if found:
        out.append(f"\nBest found (trial {found[0].trial}), full-size layout:\n\n")
        out.append(arch_table(Arch.from_string(found[0].arch)))
    if search.reference is not None:
        out.append(f"\nReference ({target.paper.split(' (')[0]}), full-size layout:\n\n")
        out.append(arch_table(search.reference))
    return "".join(out)


def _findings(target: Target, search: RunData, baseline: RunData | None, k: int) -> list[tuple[Claim, dict[str, Any]]]:
    top = [Arch.from_string(r["arch"]) for r in search.top(k)]
    rand = [Arch.from_string(r["arch"]) for r in baseline.top(k)] if baseline is not None else []
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
        out.append((claim, {"top": top_text, "holds": bool(holds), "random": rand_text, "uniform": uni_text,
                            "luck": luck(claim, uniform, len(top)), "paper": ref_text}))
    return out


def luck(claim: Claim, uniform: Sequence[Arch], k: int, draws: int = 500, seed: int = 1) -> float:
    """How often `k` architectures drawn at random show the finding: a small top-k can show a
    pattern by chance, and this says how likely that is."""
    if not uniform or k < 1:
        return math.nan
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        subset = rng.sample(list(uniform), min(k, len(uniform)))
        value = claim.value(subset)
        hits += (not math.isnan(value)) and bool(claim.holds(subset, value))
    return hits / draws


def _findings_section(target: Target, findings: list[tuple[Claim, dict[str, Any]]], search: RunData, k: int) -> str:
    out = [f"\n## Do the paper's design findings reappear? (top {k} of {len(search.complete)} complete trials)\n\n"]
    out.append("Measured on the top trials by reward of the TPE search; \"random top\" is the same measure on the "
               "random baseline's top trials, \"uniform\" on 2,000 architectures drawn uniformly from the space "
               f"(what chance gives), \"paper\" on the published architecture. \"by luck\" is how often {k} "
               f"architectures drawn at random show the finding too: a finding counts as reappearing only when "
               f"that is below 5%.\n\n")
    rows = []
    for claim, m in findings:
        if not m["holds"]:
            verdict = "no"
        elif m["luck"] < 0.05:
            verdict = "yes"
        else:
            verdict = "only as often as by luck"
        rows.append([claim.text, m["paper"], m["top"], m["random"], m["uniform"], f"{m['luck']:.0%}", verdict])
    out.append(md_table(["finding", "paper", f"TPE top {k}", "random top", "uniform", "by luck", "reappears?"],
                        rows))
    out.append(_stage_agreement(search, k))
    out.append("\n![choices per stage](search/choices.png)\n")
    return "".join(out)


def _stage_agreement(search: RunData, k: int) -> str:
    top = [Arch.from_string(r["arch"]) for r in search.top(k)]
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


def _random_section(folder: Path, curves: dict[str, Any], search: RunData, baseline: RunData | None) -> str:
    out = ["\n## TPE vs random search\n\n"]
    named = {"TPE": curves["tpe"]}
    if "random" in curves:
        named["random"] = curves["random"]
    ref = search.reference_row
    plots.progress(folder / "search_vs_random.png", named, title="best reward so far (same reward scale)",
                   reference=ref["reward"] if ref else None, xlabel="trials finished")
    out.append("![search vs random](search_vs_random.png)\n")
    if "random" not in curves:
        return "".join(out) + "\nNo random baseline in this reproduction.\n"
    last = max(search.finished(), baseline.finished() if baseline else 0)
    marks = sorted(n for n in {10, 20, 50, 100, 200, 500, 1000, curves["common"], last} if 0 < n <= last)
    rows = []
    for n in marks:
        # a run that has not reached n trials has no "best after n"
        t = best_after(*curves["tpe"], n) if n <= search.finished() else None
        r = best_after(*curves["random"], n) if baseline is not None and n <= baseline.finished() else None
        rows.append([n, fmt(t), fmt(r), fmt(t - r) if t is not None and r is not None else "–"])
    out.append("\nBest reward among the first N trials. Each run's trial 0 is the reference, and TPE's first 10 "
               "trials are random draws from the same seeds as the baseline's, so the two start alike:\n\n")
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


def _search_section(search: RunData) -> str:
    return ("\n## The search itself\n\n"
            "Full report of the search run: [search/report.md](search/report.md) (best architecture, Pareto front, "
            "failures, settings and versions); the baseline's: [random/report.md](random/report.md).\n\n"
            "![accuracy vs step time](search/accuracy_vs_step_time.png)\n")

