"""Train on one domain, evaluate on both (the paper's Table 3): SFT and GRPO on the marbles half or the money half
of the world, each evaluated on the whole test split with its per-domain breakdown, over seeds.

    python experiments/cross_domain.py --out runs/cross_domain [--seeds 0 1 2]
    python experiments/cross_domain.py --out runs/cross_domain-quick --quick
    python experiments/cross_domain.py --config configs/smollm2.yaml --domains marbles --out runs/cross-smollm2

Flags this script does not know go to every run (``--eval_limit 300``, also after ``--``).
"""

from __future__ import annotations

from _runs import parser, report, train

DOMAINS = ("marbles", "money")


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--data", default="world")
    cli.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS, help="the domains trained on")
    args, extra = cli.parse_known_args()
    if "--" in extra:  # the separator, if given
        extra.remove("--")
    seeds = args.seeds[:1] if args.quick else args.seeds
    data = "world:small" if args.quick else args.data
    runs = [
        train(
            args.out / f"{domain}-{seed}", ["--data", data, "--seed", str(seed), "--train_domain", domain, *extra], args
        )
        for domain in args.domains
        for seed in seeds
    ]
    report(runs, args.out / "report")


if __name__ == "__main__":
    main()
