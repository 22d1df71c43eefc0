#!/usr/bin/env bash
# Execute notebooks in place, so that they are committed with the outputs of a real run of the committed code:
#   bash tools/execute_notebooks.sh nbs/01_patch_embedding.ipynb ...   (default: every notebook)
# CIFAR-10 is read from $VIT_DATA_DIR (else downloaded into nbs/data). `#| slow` cells run too; IN_TEST is unset,
# and so is MPLBACKEND (a non-interactive backend such as Agg would leave the figures out of the outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
notebooks=("$@"); [[ ${#notebooks[@]} -gt 0 ]] || notebooks=(nbs/*.ipynb)
for nb in "${notebooks[@]}"; do
  start=$SECONDS
  (cd "$(dirname "$nb")" && env -u IN_TEST -u MPLBACKEND jupyter nbconvert --to notebook --execute --inplace \
     --ExecutePreprocessor.timeout=3600 --log-level=WARN "$(basename "$nb")")
  python tools/strip_progress.py "$nb" >/dev/null
  nbdev_clean --fname "$nb"
  echo "executed $nb in $((SECONDS - start)) s"
done
