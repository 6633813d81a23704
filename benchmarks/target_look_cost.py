"""What one evaluation toward a target costs (labpgt.evaluation): held-out samples measured, simulated.

For a held-out split of ``--split`` samples whose accuracy is p, draw the samples in a random order and apply the
policy's own stopping rule (``eval_chunk`` samples a look, the exact hypergeometric bound at the Bonferroni-shared
confidence): the mean number of samples measured, and for p at or above the target how often it was wrongly
ruled out. Prints one row per confidence. No ring, no query: ``python benchmarks/target_look_cost.py``.
"""

import argparse

import numpy as np

from labpgt.evaluation import Evaluation, TargetLook


def samples_measured(outcome: np.ndarray, policy: Evaluation, target: float) -> int:
    """Samples one evaluation toward ``target`` measures (the policy's :class:`TargetLook`), ``outcome`` being
    whether each sample, in the order drawn, is answered right."""
    look = TargetLook(policy, target, len(outcome))
    while count := look.ask():
        look.tell(outcome[look.measured : look.measured + count])
    return look.measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=int, default=270, help="held-out samples (digits' validation split: 270)")
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    accuracies = (0.70, 0.80, 0.82, 0.84, 0.86, 0.88)
    print(f"samples measured by one evaluation toward {args.target} on a split of {args.split} (mean of {args.draws})")
    print("confidence  " + "  ".join(f"acc {p:.2f}" for p in accuracies) + "  wrongly ruled out (acc >= target)")
    for confidence in (0.95, 0.9, 0.8, 0.7):
        policy = Evaluation(eval_target=args.target, eval_confidence=confidence)
        means, misses = [], []
        for p in accuracies:
            right = int(round(p * args.split))
            split = np.r_[np.ones(right), np.zeros(args.split - right)]
            costs = [samples_measured(rng.permutation(split), policy, args.target) for _ in range(args.draws)]
            means.append(f"{np.mean(costs):8.0f}")
            if p >= args.target:
                misses.append(f"{np.mean(np.array(costs) < args.split):.2f}")
        print(f"{confidence:10.2f}  " + "  ".join(means) + "  " + " ".join(misses))


if __name__ == "__main__":
    main()
