"""A provider's audit in a few lines: how cheaply can my model be copied, with or without a
defense in front of it?

Runs in under a minute on two cores with scikit-learn's bundled digits:

    python examples/audit_digits.py
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from modelsteal.attacks import build_recipe, extract
from modelsteal.data import load_splits
from modelsteal.defenses import build_defense, defended, evaluate_defense
from modelsteal.targets import SklearnTarget

splits = load_splits("digits", seed=0, pool_fraction=0.7)
model = LogisticRegression(max_iter=1000).fit(splits.target_train.X, splits.target_train.y)
target = SklearnTarget(model)
clean_labels = target.query(splits.target_test.X)  # the evaluator's reference for fidelity

print(
    f"{'defense':14s} {'max l1':>7s} {'acc':>6s} | attack            fidelity at 100 / 500 queries"
)
for name, params in [("none", {}), ("reverse_sigmoid", {}), ("modelguard_s", {"epsilon": 1.0})]:
    utility = evaluate_defense(
        target,
        build_defense(name, **params),
        test_x=splits.target_test.X,
        test_y=splits.target_test.y,
    )
    for attack, recipe_params in [
        ("knockoff", {}),
        ("pbayes", {"defense": name, "defense_params": params}),
    ]:
        shielded = defended(target, name, **params)  # a fresh defense (and state) per attack
        result = extract(
            shielded,
            build_recipe(attack, **recipe_params),
            pool=splits.attacker_pool.X,
            budget=500,
            schedule=[100, 500],
            seed=0,
            eval_x=splits.target_test.X,
            eval_y=splits.target_test.y,
            eval_target=clean_labels,
        )
        fid = " / ".join(f"{h['fidelity']:.3f}" for h in result.history)
        print(
            f"{name:14s} {utility['max_l1']:7.3f} {utility['protected_accuracy']:6.3f} | "
            f"{attack:16s}  {fid}"
        )
