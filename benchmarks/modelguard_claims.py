"""Check the ModelGuard paper's claims (Tang et al. 2024) against a run of the ModelGuard grid.

Reads the result store of ``modelsteal run configs/modelguard_<data>.toml`` (and, for claim (e),
of ``configs/modelguard_mqpi_<data>.toml``) and says, with the numbers, whether each claim holds:

(a) partial Bayes brings extraction accuracy back near the undefended level against Reverse
    Sigmoid, MAD and ModelGuard-W ("near": within ``--near`` accuracy points of the naive attack
    on the undefended target, same query strategy);
(b) ModelGuard-S has the lowest maximum extraction accuracy (over all attacks) among the defenses
    whose measured maximum ℓ1 distortion is ≤ 1;
(c) ModelGuard-W gives the naive attack the lowest extraction accuracy of all defenses;
(d) the Top-1 attack scores the same against every defense that kept the top-1 label of every
    test row (argmax kept = 1);
(e) 2-QPI changes answers (leaks) under non-ordered quantization (in at least one setting) and
    never under ordered quantization.

Writes ``benchmarks/results/modelguard_claims_<name>.{json,md}``.

    python benchmarks/modelguard_claims.py results/modelguard_mnist [--mqpi results/modelguard_mqpi_mnist]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from modelsteal.experiments import ResultStore
from modelsteal.experiments.report import current_rows

HERE = Path(__file__).resolve().parent


def load(folder: Path) -> tuple[dict, dict]:
    """(attack accuracy by (defense, strategy, attack), utility by defense) from a run folder."""
    attacks: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    utility: dict[str, dict] = {}
    for row in current_rows(ResultStore(folder / "results.sqlite"))[0]:
        labels = row["labels"]
        if row["kind"] == "utility":
            utility[labels["defense"]] = row["result"]
        else:
            attacks[(labels["defense"], labels["strategy"], labels["attack"])].append(row["result"])
    acc = {k: sum(r["accuracy"] for r in v) / len(v) for k, v in attacks.items()}
    extra = {k: v for k, v in attacks.items()}
    return {"accuracy": acc, "cells": extra}, utility


def claims(folder: Path, mqpi: Path | None, near: float) -> dict:
    data, utility = load(folder)
    acc = data["accuracy"]
    strategies = sorted({s for _, s, _ in acc})
    defenses = sorted({d for d, _, _ in acc})
    out: dict = {"run": str(folder), "near": near, "claims": {}}

    rows = []
    for s in strategies:
        base = acc.get(("None", s, "Naive"))
        for d in ("Reverse Sigmoid", "MAD", "ModelGuard-W"):
            pb, naive = acc.get((d, s, "Partial Bayes")), acc.get((d, s, "Naive"))
            if None in (pb, naive, base):
                continue
            rows.append(
                {
                    "strategy": s,
                    "defense": d,
                    "undefended_naive": base,
                    "naive": naive,
                    "pbayes": pb,
                    "gap": base - pb,
                    "holds": base - pb <= near,
                }
            )
    out["claims"]["a"] = {"rows": rows, "holds": bool(rows) and all(r["holds"] for r in rows)}

    within = [
        d for d in defenses if d != "None" and d in utility and utility[d]["max_l1"] <= 1.0 + 1e-6
    ]
    best = {d: max(v for (dd, _, _), v in acc.items() if dd == d) for d in within}
    lowest = min(best, key=best.get) if best else None
    out["claims"]["b"] = {
        "max_accuracy": best,
        "lowest": lowest,
        "holds": lowest is not None and lowest.startswith("ModelGuard-S"),
    }

    rows_c = []
    for s in strategies:
        naive = {
            d: acc[(d, s, "Naive")] for d in defenses if (d, s, "Naive") in acc and d != "None"
        }
        if naive:
            low = min(naive, key=naive.get)
            rows_c.append(
                {"strategy": s, "naive": naive, "lowest": low, "holds": low == "ModelGuard-W"}
            )
    out["claims"]["c"] = {"rows": rows_c, "holds": bool(rows_c) and all(r["holds"] for r in rows_c)}

    keep = [d for d in defenses if d in utility and utility[d].get("argmax_kept") == 1.0]
    rows_d = []
    for s in strategies:
        values = {d: acc[(d, s, "Top-1")] for d in keep if (d, s, "Top-1") in acc}
        if values:
            spread = max(values.values()) - min(values.values())
            rows_d.append(
                {"strategy": s, "top1_attack": values, "spread": spread, "holds": spread == 0.0}
            )
    out["claims"]["d"] = {
        "argmax_kept_defenses": keep,
        "rows": rows_d,
        "holds": bool(rows_d) and all(r["holds"] for r in rows_d),
    }

    if mqpi is not None and (mqpi / "results.sqlite").is_file():
        mdata, _ = load(mqpi)
        rows_e = []
        for (d, _s, a), cells in sorted(mdata["cells"].items()):
            r = cells[0]
            rows_e.append(
                {
                    "defense": d,
                    "attack": a,
                    "accuracy": r["accuracy"],
                    "changed": r.get("mqpi_changed"),
                    "recovery_l2": r.get("recovery_l2"),
                    "queries": r["queries"],
                }
            )
        ordered = [
            r for r in rows_e if "non-ordered" not in r["defense"] and r["changed"] is not None
        ]
        loose = [r for r in rows_e if "non-ordered" in r["defense"] and r["changed"] is not None]
        out["claims"]["e"] = {
            "rows": rows_e,
            "holds": bool(ordered and loose)
            and all(r["changed"] == 0 for r in ordered)
            and any(r["changed"] > 0 for r in loose),
        }
    return out


def markdown(result: dict) -> str:
    c = result["claims"]
    yes = {True: "**holds**", False: "**does not hold**"}
    lines = [f"Run: `{result['run']}`.", ""]
    lines += [
        f"(a) Partial Bayes near the undefended level (within {result['near']:.2f}): "
        f"{yes[c['a']['holds']]}",
        "",
        "| strategy | defense | undefended naive | naive | partial Bayes | gap | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in c["a"]["rows"]:
        lines.append(
            f"| {r['strategy']} | {r['defense']} | {r['undefended_naive']:.4f} | "
            f"{r['naive']:.4f} | {r['pbayes']:.4f} | {r['gap']:+.4f} | {r['holds']} |"
        )
    lines += [
        "",
        f"(b) ModelGuard-S lowest max extraction accuracy among defenses with max ℓ1 ≤ 1: "
        f"{yes[c['b']['holds']]} (lowest: {c['b']['lowest']})",
        "",
        "| defense | max accuracy over attacks |",
        "|---|---|",
    ]
    for d, v in sorted(c["b"]["max_accuracy"].items(), key=lambda kv: kv[1]):
        lines.append(f"| {d} | {v:.4f} |")
    lines += ["", f"(c) ModelGuard-W lowest against the naive attack: {yes[c['c']['holds']]}", ""]
    for r in c["c"]["rows"]:
        ranked = sorted(r["naive"].items(), key=lambda kv: kv[1])
        lines.append(f"- {r['strategy']}: " + ", ".join(f"{d} {v:.4f}" for d, v in ranked))
    lines += [
        "",
        f"(d) Top-1 attack equal against every top-1-preserving defense "
        f"({', '.join(c['d']['argmax_kept_defenses'])}): {yes[c['d']['holds']]}",
        "",
    ]
    for r in c["d"]["rows"]:
        lines.append(
            f"- {r['strategy']}: spread {r['spread']:.4f} — "
            + ", ".join(f"{d} {v:.4f}" for d, v in r["top1_attack"].items())
        )
    if "e" in c:
        lines += [
            "",
            f"(e) 2-QPI leaks under non-ordered, not under ordered quantization: "
            f"{yes[c['e']['holds']]}",
            "",
            "| defense | attack | inputs with changed answers | recovery ‖ỹ−y‖₂ | accuracy |",
            "|---|---|---|---|---|",
        ]
        for r in c["e"]["rows"]:
            changed = "—" if r["changed"] is None else r["changed"]
            rec = "—" if r["recovery_l2"] is None else f"{r['recovery_l2']:.4f}"
            lines.append(
                f"| {r['defense']} | {r['attack']} | {changed} | {rec} | {r['accuracy']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder of the ModelGuard matrix")
    parser.add_argument("--mqpi", type=Path, default=None, help="run folder of the m-QPI grid")
    parser.add_argument("--near", type=float, default=0.02)
    args = parser.parse_args()
    result = claims(args.run, args.mqpi, args.near)
    name = args.run.name
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"modelguard_claims_{name}.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (out / f"modelguard_claims_{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
