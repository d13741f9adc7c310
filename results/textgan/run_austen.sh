#!/usr/bin/env bash
# The Jane Austen runs behind results/textgan/austen/ (Debian r-cran-janeaustenr must be installed):
# MLE pre-training with its temperature frontier, then the ST-GS GAN from it.
set -euo pipefail
OUT=${OUT:-runs/textgan/austen}
G=(python -m gumbelkit.apps.cli train textgan --corpus austen --no-progress --threads 1 --eval-samples 2000)
[ -f "$OUT/mle/results.json" ] || "${G[@]}" --stage mle --epochs 20 --out-dir "$OUT/mle"
[ -f "$OUT/gan-st_gs-b100/results.json" ] || "${G[@]}" --stage gan --init "$OUT/mle" --estimator st_gs \
    --beta-max 100 --max-steps 500 --out-dir "$OUT/gan-st_gs-b100"
