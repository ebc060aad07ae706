#!/usr/bin/env bash
# Mutation testing of the Python layer with mutmut (issue 21). Not part of CI: run it by hand
# after changing a module or its tests, then kill (new test) or justify (bench/RESULTS.md)
# every surviving mutant.
#
#   pip install mutmut==3.8.1
#   bash scripts/mutation_test.sh                 # the modules below, against their fast tests
#   MODULES="dspark_ext/decoding/warp.py" TESTS="tests/test_truncated_law.py" \
#       bash scripts/mutation_test.sh             # one module
#
# It works in a scratch copy ($MUT_DIR, default /tmp/dspark_mutation): the package (with
# the built _C extension: build it first), the tests and a generated setup.cfg; the work tree
# is never touched. Results: `cd $MUT_DIR && mutmut results` (survivors), `mutmut show NAME`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MUT_DIR="${MUT_DIR:-/tmp/dspark_mutation}"
MODULES="${MODULES:-dspark_ext/decoding/warp.py dspark_ext/drafters/ngram.py dspark_ext/calibration/metrics.py dspark_ext/calibration/sts.py}"
TESTS="${TESTS:-tests/test_truncated_law.py tests/test_drafter_proposals.py tests/test_calibration_bins.py tests/test_calibration.py}"
# Fork-per-mutant isolation and torch's thread pools do not mix: one thread.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

ls "$ROOT"/dspark_ext/_C*.so >/dev/null 2>&1 || { echo "build dspark_ext first (_C missing)"; exit 1; }
rm -rf "$MUT_DIR"
mkdir -p "$MUT_DIR"
cp -r "$ROOT/dspark_ext" "$ROOT/tests" "$ROOT/pyproject.toml" "$MUT_DIR/"
find "$MUT_DIR" -name __pycache__ -prune -exec rm -rf {} +
{
  echo "[mutmut]"
  echo "source_paths = dspark_ext"
  echo "only_mutate ="
  for m in $MODULES; do echo "    $m"; done
  echo "pytest_add_cli_args_test_selection ="
  for t in $TESTS; do echo "    $t"; done
  echo "also_copy ="
  echo "    tests"
  for so in "$ROOT"/dspark_ext/_C*.so; do echo "    dspark_ext/$(basename "$so")"; done
  # One argument per line: a one-line value reaches pytest as a single argument.
  # MUT_SKIP_SLOW=1 leaves out the tests marked slow (statistical ones).
  echo "pytest_add_cli_args ="
  for a in -p no:cacheprovider -q; do echo "    $a"; done
  if [ "${MUT_SKIP_SLOW:-0}" = 1 ]; then echo "    -m"; echo "    not slow"; fi
} > "$MUT_DIR/setup.cfg"
cd "$MUT_DIR"
mutmut run --max-children "${MUT_JOBS:-2}" || true
mutmut results --all true > results.txt || true
python3 - <<'PY'
import collections, re
counts = collections.defaultdict(collections.Counter)  # module -> status -> mutants
for line in open("results.txt"):
    m = re.match(r"\s*(\S+?)\.x\S*__mutmut_\d+: (.+)$", line)
    if m:
        counts[m.group(1)][m.group(2).strip()] += 1
for module, c in sorted(counts.items()):
    print(f"{module}: {sum(c.values())} mutants, {dict(c)}")
PY
echo "survivors and their diffs: cd $MUT_DIR && mutmut results && mutmut show <name>"
