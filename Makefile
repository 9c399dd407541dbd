# omnitalker: `make curate` and `make test` each set themselves up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIN    := -c requirements/constraints.txt
STAMP  := $(VENV)/.installed
IN     ?= ../shared/data/media
OUT    ?= out
CONFIG ?= configs/curate.yaml
PYTEST_ARGS ?=

.PHONY: setup curate test lint bench clean chromium sync-model

# The stamp depends on everything that changes what is installed, so a second
# `make setup` is a no-op that takes well under a second.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU wheel: nothing later may pull a CUDA build.
	$(PIP) install -q $(PIN) torch==2.13.0
	$(PIP) install -q $(PIN) -e '.[dev]'
	# Two packages without one requirement each (their other requirements are in pyproject.toml):
	# pyannote-audio without torchcodec (CUDA-linked; only decodes files, we pass waveforms) and
	# openai-whisper without triton (CUDA kernels only). docs/diarization.md explains.
	$(PIP) install -q $(PIN) --no-deps pyannote-audio==4.0.7 openai-whisper==20250625
	# resemblyzer only for its GE2E voice-encoder weights (pretrained.pt, loaded into stages/voice.py's
	# own module): its requirements webrtcvad (an sdist that needs pkg_resources) and typing are not used.
	$(PIP) install -q $(PIN) --no-deps resemblyzer==0.1.4
	$(PY) -c "import torch, ray, av, pyarrow, mediapipe; assert not torch.version.cuda, 'CUDA torch installed'"
	$(PY) -c "import importlib.util as u; assert not [m for m in ('torchcodec', 'triton') if u.find_spec(m)], 'torchcodec/triton installed'"
	$(PY) -c "from stages.diarize import import_pyannote; import_pyannote(); import whisper, faster_whisper"
	touch $(STAMP)

setup: $(STAMP)

curate: setup
	$(PY) -m pipeline.run --input "$(IN)" --output "$(OUT)" --config $(CONFIG)

# The shipped lip-sync model (docs/sync.md): curate the genuine-sync talking clips listed in
# configs/sync_corpus.txt with relaxed filters (every genuine segment counts; the sync stage is what
# is being trained, so it is off), train on all but the held-out speakers of configs/sync.yaml, and
# make the best held-out step the default (model/sync/assets, sha256 pinned). The corpus is coded with
# visual's own VIDEO-mode landmark pass, as the shipped model was: models trained on those smoother codes
# read the job's one-pass codes better than models trained on them (docs/sync.md).
SYNC_CORPUS ?= out/sync_corpus
SYNC_RUN    ?= runs/sync
SYNC_CURATE_SET := --set segment.min_clip_s=1.0 --set segment.min_chars_per_s=0 --set segment.max_chars_per_s=1000 \
	--set segment.allowed_languages=[] --set segment.min_language_prob=0 --set dnsmos.min_dnsmos_ovrl=0 \
	--set asd.min_asd_score=0 --set framing.min_face_area_frac=0 --set framing.max_abs_yaw_deg=90 --set sync.enabled=false \
	--set visual.reuse_face_landmarks=false

sync-model: setup
	$(PY) -m pipeline.run --input configs/sync_corpus.txt --output $(SYNC_CORPUS) --config configs/curate.yaml \
		$(SYNC_CURATE_SET) --no-progress
	$(PY) -m launchers.train_sync --shards $(SYNC_CORPUS) --config configs/sync.yaml --out $(SYNC_RUN)
	$(PY) -m launchers.export_sync $(SYNC_RUN)/sync.safetensors

# Debian's chromium for the dashboard screenshot test (tests/dashboards/test_screenshot.py).
# Without apt (or without root) the test skips with its reason instead of failing.
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium not installed (apt-get unavailable): the dashboard screenshot test will skip"

test: setup chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	# the layers contract in pyproject.toml (docs/architecture.md): imports only go down
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/curate.py --input "$(IN)"

clean:
	rm -rf $(OUT) .pytest_cache test-artifacts
