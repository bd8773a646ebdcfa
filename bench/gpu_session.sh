#!/usr/bin/env bash
# The GPU measurements behind docs/performance.md and docs/evidence.md, in one script for a lent
# GPU machine whose python3 already has torch, torchvision, scikit-learn, numpy, pyyaml, pandas,
# matplotlib, seaborn and tqdm.
#   bash bench/gpu_session.sh bench   # bench/train_throughput.py at the paper's size
#   bash bench/gpu_session.sh train   # bench/gpu_check.yaml: real training + GPU K-means check
#   bash bench/gpu_session.sh more    # batch 128 compiled, STL-10/ImageNet-10 input sizes,
#                                     # train.py with compile=all, determinism
#   bash bench/gpu_session.sh final   # the defaults (compiled augmentation) in one process each:
#                                     # CIFAR-size input + K-means, ImageNet-10 input with blur
#   bash bench/gpu_session.sh quick   # issue 20, one command of at most 9 minutes: whether 2, 3
#                                     # or 6 trainings at once raise the total pairs/s, then the
#                                     # quick profile's six runs on the 50,000 CIFAR-10 training
#                                     # images of data/cifar10-train.tar.gz for as many epochs as
#                                     # fit BUDGET_S (default 510 s from this script's start), at
#                                     # the best packing factor; evaluated, methods table, curves,
#                                     # what bounds the step (plan: bench/quick_session.py).
#                                     # Device tool: carry ["data/cifar10-train.tar.gz", ".whl"],
#                                     # timeout_s 540. DEVICE=cpu and QUICK_ARGS: the CPU test.
#   bash bench/gpu_session.sh pack    # issue 23, one command of at most 9 minutes: every method's
#                                     # pairs/s alone and 2, 3, 4 processes at once, at the quick
#                                     # and the paper's size (bench/packing_session.py), within
#                                     # PACK_S (default 480 s). Device tool: timeout_s 540, carry
#                                     # [".whl"]. DEVICE=cpu and PACK_ARGS: the CPU test.
# Missing pure-Python dependencies (jsonschema and its needs) come as wheels in .whl/ when
# present. Everything lands in $OUT (default results/gpu_session), packed as one tarball.
set -uo pipefail
STARTED=$(date +%s.%N)  # the quick budget counts from here
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_session}
mkdir -p "$OUT/files"
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import jsonschema" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 CDREPRO_TRACKING=off
B="python3 bench/train_throughput.py --device cuda --backbone resnet34 --image-size 224"
F=$OUT/files
section() { echo; echo "=== $* ($(date +%T))"; }

case "${1:-bench}" in
bench)
  section machine
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__, 'cuda', torch.version.cuda)"
  nproc
  section CUDA tests
  python3 -m pytest -q -p no:cacheprovider tests/test_augment.py tests/test_kmeans.py -k cuda 2>&1 | tail -5
  section "batch 256, eager"
  timeout 240 $B --batch-size 256 --steps 20 --warmup 3 --workers 4 --json $F/b256-eager.json 2>&1 | grep -v Warning
  section "batch 256, compiled augmentation"
  timeout 200 $B --batch-size 256 --steps 20 --warmup 3 --compile augment --paths ours,model_only,augment_only --no-kmeans --json $F/b256-compile-augment.json 2>&1 | tail -7
  section "batch 128, eager"
  timeout 120 $B --batch-size 128 --steps 30 --warmup 3 --workers 4 --no-kmeans --json $F/b128-eager.json 2>&1 | tail -7
  ;;
train)
  section "batch 256, compiled augmentation and model"
  timeout 240 $B --batch-size 256 --steps 20 --warmup 3 --compile all --paths ours,model_only,augment_only --no-kmeans --json $F/b256-compile-all.json 2>&1 | tail -7
  section "real training: bench/gpu_check.yaml"
  P="--params bench/gpu_check.yaml"
  python3 -m cdrepro prepare $P --dataset cifar10s && python3 -m cdrepro baseline $P --dataset cifar10s
  for run in cifar10s-bs128-cd-s42 cifar10s-bs256-cd-s42; do
    timeout 150 python3 -m cdrepro train $P --run $run 2>&1 | tail -3
    python3 -m cdrepro evaluate $P --run $run 2>&1 | tail -3
  done
  section "GPU K-means against scikit-learn on the trained model's features"
  timeout 120 python3 bench/kmeans_on_features.py bench/gpu_check.yaml cifar10s-bs256-cd-s42 --json $F/kmeans-real.json
  cp -r results/gpu_check "$F/" 2>/dev/null
  find "$F/gpu_check" -name '*.pt' -delete
  ;;
more)
  section "batch 128, compiled augmentation / augmentation and model"
  timeout 150 $B --batch-size 128 --steps 30 --warmup 3 --compile augment --paths ours,model_only,augment_only --no-kmeans --json $F/b128-compile-augment.json 2>&1 | tail -6
  section "STL-10 input: 96 px images, s=1.0, batch 256, compiled augmentation"
  timeout 150 $B --batch-size 256 --steps 20 --warmup 3 --store-size 96 --color-strength 1.0 --workers 4 --compile augment --no-kmeans --json $F/b256-stl-compile-augment.json 2>&1 | tail -7
  section "ImageNet-10 input: 256 px images, s=1.0, blur, batch 256, compiled augmentation"
  timeout 170 $B --batch-size 256 --steps 20 --warmup 3 --store-size 256 --n-images 1024 --color-strength 1.0 --blur --workers 4 --compile augment --no-kmeans --json $F/b256-imagenet-compile-augment.json 2>&1 | tail -7
  section "cdrepro train with compile: all (5 epochs) and determinism"
  P="--params bench/gpu_check.yaml"
  python3 -m cdrepro prepare $P --dataset cifar10s >/dev/null
  sed -e 's/epochs: 60/epochs: 5/; s/compile: augment/compile: all/; s/profile: gpu_check/profile: gpu_compile/' bench/gpu_check.yaml > /tmp/compile.yaml
  python3 -m cdrepro prepare --params /tmp/compile.yaml --dataset cifar10s >/dev/null
  timeout 200 python3 -m cdrepro train --params /tmp/compile.yaml --run cifar10s-bs256-cd-s42 2>&1 | grep -E "epoch|trained|Error"
  timeout 150 python3 bench/determinism_check.py bench/gpu_check.yaml cifar10s-bs256-cd-s42 --epochs 2 --json $F/determinism.json 2>&1 | grep -v Warn
  cp results/gpu_compile/runs/cifar10s-bs256-cd-s42/{curves.csv,train.json} $F/ 2>/dev/null
  ;;
final)
  section "batch 256, defaults (compiled augmentation), all paths, K-means"
  timeout 200 $B --batch-size 256 --steps 20 --warmup 3 --workers 4 --json $F/b256-final.json 2>&1 | tail -8
  section "ImageNet-10 input: 256 px images, s=1.0, blur, batch 256, defaults"
  timeout 200 $B --batch-size 256 --steps 10 --warmup 2 --store-size 256 --n-images 1024 --color-strength 1.0 --blur --workers 4 --no-kmeans --json $F/b256-imagenet-final.json 2>&1 | tail -7
  ;;
quick)
  section machine
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__, 'cuda', torch.version.cuda)"
  nproc
  # GPU load and memory every half second, beside the session's own measurements.
  { nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 > "$F/nvidia-smi.csv" 2>/dev/null & } 2>/dev/null
  SMI=$!
  # Up to 6 processes compile at once: a few Inductor workers each, not one per core each.
  export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}
  section "quick session: budget ${BUDGET_S:=510} s from the start"
  # shellcheck disable=SC2086  # QUICK_ARGS: extra options, word-split on purpose (CPU test)
  python3 bench/quick_session.py --out "$F" --started-at "$STARTED" --budget "$BUDGET_S" \
    --device "${DEVICE:-cuda}" --archive "${ARCHIVE:-data/cifar10-train.tar.gz}" \
    --data-dir "${DATA_DIR:-data}" --work "${WORK:-results}" ${QUICK_ARGS:-} 2>&1 | tee "$F/session.log"
  STATUS=$?
  kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null
  find "$F" -name '*.pt' -delete
  ;;
pack)
  section machine
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}
  section "packing session: ${PACK_S:=480} s"
  # shellcheck disable=SC2086  # PACK_ARGS: extra options, word-split on purpose (CPU test)
  python3 bench/packing_session.py --out "$F" --device "${DEVICE:-cuda}" --max-s "$PACK_S" \
    ${PACK_ARGS:-} 2>&1 | tee "$F/session.log"
  STATUS=$?
  ;;
esac
tar -czf "$OUT/session-${1:-bench}.tar.gz" -C "$OUT" files && rm -rf "$F" || exit 1
exit "${STATUS:-0}"
