#!/usr/bin/env bash
# The oracle pipeline behind results/textgan/oracle/: MLE pre-training (120 epochs, with the
# temperature frontier), then one GAN run per line below, each from the MLE checkpoint.
# Run from the repository root with the oracle at ../shared/data/ (or pass --oracle PATH).
# One thread per run; about 75 CPU-minutes in all on the 2-core machine (see results/textgan/README.md).
set -euo pipefail
OUT=${OUT:-runs/textgan/oracle}
G=(python -m gumbelkit.apps.cli train textgan --no-progress --threads 1)
[ -f "$OUT/mle/results.json" ] || "${G[@]}" --stage mle --out-dir "$OUT/mle"
while read -r est beta extra; do
    [ -f "$OUT/gan-$est-b$beta/results.json" ] && continue
    # shellcheck disable=SC2086
    "${G[@]}" --stage gan --init "$OUT/mle" --estimator "$est" --beta-max "$beta" $extra --out-dir "$OUT/gan-$est-b$beta"
done <<'RUNS'
st_gs 100
gs 100
reinmax 1
st_gs 10
st_gs 1
gumbel_rao 100 --gumbel-rao-k 3 --max-steps 500
RUNS
