#!/usr/bin/env bash
# The GPU measurements behind docs/performance.md, in one script for a lent GPU machine whose
# python3 already has torch, torchvision, scikit-learn, numpy, pyyaml, pandas and tqdm.
#   bash bench/gpu_session.sh bench   # bench/train_throughput.py at the paper's size
#   bash bench/gpu_session.sh train   # bench/gpu_check.yaml: real training + GPU K-means check
#   bash bench/gpu_session.sh more    # batch 128 compiled, STL-10/ImageNet-10 input sizes,
#                                     # train.py with compile=all, determinism
#   bash bench/gpu_session.sh final   # the defaults (compiled augmentation) in one process each:
#                                     # CIFAR-size input + K-means, ImageNet-10 input with blur
#   bash bench/gpu_session.sh quick   # the quick profile (docs/evidence.md): every method's step
#                                     # throughput at its size, then every run of it shortened to
#                                     # QUICK_EPOCHS (default 5) epochs on the 50,000 CIFAR-10
#                                     # training images of data/cifar10-train.tar.gz (copy the
#                                     # shared archive there and carry it: ../shared does not travel)
# Missing pure-Python dependencies (jsonschema and its needs) come as wheels in .whl/ when
# present. Everything lands in $OUT (default results/gpu_session), packed as one tarball.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_session}
mkdir -p "$OUT/files"
if compgen -G ".whl/*.whl" >/dev/null; then
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
  nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  DEVICE=${DEVICE:-cuda}
  section "step throughput at the quick profile's size: ResNet-18, CIFAR stem, 32 px, batch 256"
  for method in cd simclr cc cld cdc; do
    timeout 120 python3 bench/train_throughput.py --device "$DEVICE" --method $method --backbone resnet18 \
      --stem cifar --image-size 32 --store-size 32 --batch-size 256 --steps ${QUICK_STEPS:-30} --warmup ${QUICK_WARMUP:-3} \
      --paths ours --no-kmeans --json $F/quick-$method.json 2>&1 | grep "pairs/s"
  done
  section "the quick profile, ${QUICK_EPOCHS:=5} epochs, on the unpacked archive"
  mkdir -p data && tar xzf data/cifar10-train.tar.gz -C data/ || exit 1
  sed -e "s/^profile: quick/profile: quick-gpu/; s/^  epochs: [0-9]* /  epochs: $QUICK_EPOCHS /" \
      -e "s|^    source: cifar10 .*|    source: folder\n    path: data/cifar10-train\n    images_per_class: ${QUICK_IMAGES_PER_CLASS:-5000}|" \
      -e "s/device: auto/device: $DEVICE/" workflow/configs/quick.yaml > $F/quick-gpu.yaml
  P="--params $F/quick-gpu.yaml"
  python3 -m cdrepro prepare $P --dataset cifar10 && python3 -m cdrepro baseline $P --dataset cifar10
  for run in $(python3 -m cdrepro runs $P); do
    /usr/bin/time -f "$run wall %e s" timeout 150 python3 -m cdrepro train $P --run $run 2>&1 | grep -E "epoch|wall|rror"
    python3 -m cdrepro evaluate $P --run $run 2>&1 | tail -2
  done
  python3 -m cdrepro methods-table $P 2>&1 | tail -2
  cp -r results/quick-gpu "$F/" 2>/dev/null
  find "$F/quick-gpu" \( -name '*.pt' -o -name '*.npz' -o -name 'mlflow.db*' \) -delete
  ;;
esac
tar -czf "$OUT/session-${1:-bench}.tar.gz" -C "$OUT" files && rm -rf "$F"
