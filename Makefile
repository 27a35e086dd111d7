# One command per check, the same locally and in CI. Every target that runs Python depends on
# `install`, which builds .venv once and again only when setup.cfg or setup.py change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keep TensorFlow's C++ start-up chatter out of the logs.
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The real sample data (Wikipedia dumps, books, Google's records): read from here, never copied
# into the project. One setting for make, the demo, the benchmarks and the tests. A fresh clone
# without ../shared/data fetches the demo's part of it into data/sample (`make sample-data`).
ifneq ($(wildcard ../shared/data/wikipedia),)
export BERT_STACK_DATA ?= $(abspath ../shared/data)
else
export BERT_STACK_DATA ?= $(abspath data/sample)
endif
DATA := $(BERT_STACK_DATA)

.PHONY: install test test-fast lint format bench clean demo

install: $(STAMP)

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

# Everything except the tests marked slow.
test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	# Google's reference create_pretraining_data.py; --no-deps: it pins tensorflow~=2.20.0.
	$(PY) -m pip install --quiet --no-deps tf-models-official
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

# Text shards (pipeline.extract_text; docs/extract_text.md). Defaults: the samples in $(DATA).
# `make wiki-shards WIKI_INPUT=gs://…/enwiki-…-multistream.xml.bz2 WIKI_SHARDS_DIR=gs://…`;
# Beam options go in EXTRA_FLAGS, e.g. EXTRA_FLAGS="--direct_num_workers=2".
WIKI_INPUT ?= $(DATA)/wikipedia/enwiki-articles1-shortened-multistream.xml.bz2
WIKI_SHARDS_DIR ?= data/wiki-shards
WIKI_NUM_SHARDS ?= 4
# 10% of the sample's ~100 articles for eval; the command's default (0.005) suits full dumps.
WIKI_EVAL_FRACTION ?= 0.1
BOOKS_INPUT ?= $(DATA)/books/*.txt
BOOKS_SHARDS_DIR ?= data/books-shards
BOOKS_NUM_SHARDS ?= 2
EXTRA_FLAGS ?=
.PHONY: sample-data wiki-shards books-shards

# The sample, fetched (pinned sources, sha256-checked; launch/sample_data.py) only when $(DATA)
# lacks it.
sample-data: install
	@test -f '$(DATA)/wikipedia/enwiki-articles1-shortened-multistream.xml.bz2' || \
		$(PY) -m launch.sample_data '$(DATA)'

wiki-shards: install sample-data
	$(PY) -m pipeline.extract_text --source=wikipedia --input='$(WIKI_INPUT)' \
		--output_dir='$(WIKI_SHARDS_DIR)' --num_shards=$(WIKI_NUM_SHARDS) \
		--eval_fraction=$(WIKI_EVAL_FRACTION) $(EXTRA_FLAGS)

books-shards: install sample-data
	$(PY) -m pipeline.extract_text --source=books --input='$(BOOKS_INPUT)' \
		--output_dir='$(BOOKS_SHARDS_DIR)' --num_shards=$(BOOKS_NUM_SHARDS) $(EXTRA_FLAGS)

# WordPiece vocab (pipeline.build_vocab; docs/tokenizer.md) from the text shards. VOCAB_SIZE is
# small by default because the bundled sample is; BERT's is 30522. Beam options in EXTRA_FLAGS.
VOCAB_INPUT ?= $(WIKI_SHARDS_DIR)/train-*.txt,$(BOOKS_SHARDS_DIR)/train-*.txt
VOCAB_FILE ?= data/vocab.txt
VOCAB_SIZE ?= 8000
VOCAB_FLAGS ?= --do_lower_case --algorithm=wordpiece
.PHONY: vocab

vocab: install wiki-shards books-shards
	$(PY) -m pipeline.build_vocab --input='$(VOCAB_INPUT)' --output='$(VOCAB_FILE)' \
		--vocab_size=$(VOCAB_SIZE) $(VOCAB_FLAGS) $(EXTRA_FLAGS)

# Masked-LM + next-sentence TFRecords (pipeline.create_pretraining_data;
# docs/create_pretraining_data.md): train records from the train shards, eval records from the
# eval shards, with the vocab above. Google's flags in RECORDS_FLAGS; Beam options in EXTRA_FLAGS.
RECORDS_DIR ?= data/records
RECORDS_TRAIN_INPUT ?= $(WIKI_SHARDS_DIR)/train-*.txt,$(BOOKS_SHARDS_DIR)/train-*.txt
RECORDS_EVAL_INPUT ?= $(WIKI_SHARDS_DIR)/eval-*.txt
RECORDS_FLAGS ?= --do_lower_case --max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=3
.PHONY: pretraining-data

pretraining-data: install vocab
	$(PY) -m pipeline.create_pretraining_data --input_file='$(RECORDS_TRAIN_INPUT)' \
		--output_dir='$(RECORDS_DIR)/train' --vocab_file='$(VOCAB_FILE)' --num_shards=4 \
		$(RECORDS_FLAGS) $(EXTRA_FLAGS)
	$(PY) -m pipeline.create_pretraining_data --input_file='$(RECORDS_EVAL_INPUT)' \
		--output_dir='$(RECORDS_DIR)/eval' --vocab_file='$(VOCAB_FILE)' --num_shards=1 \
		--output_prefix=eval $(RECORDS_FLAGS) --dupe_factor=1 $(EXTRA_FLAGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache data/
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The whole chain on the bundled sample: shards -> vocab -> records -> BERT-tiny -> eval,
# a summary and data/demo/curves.png (launch/demo.py; ~10 min on 2 CPU cores).
DEMO_DIR ?= data/demo
demo: install
	$(PY) -m launch.demo --output_dir='$(DEMO_DIR)'

# BERT pretraining (trainer.run_pretraining; docs/trainer.md). Defaults: BERT-tiny for a few
# hundred steps on CPU on the records `make pretraining-data` writes; the vocab size and record
# shapes come from the records' metadata.json. More flags in TRAIN_FLAGS, e.g.
# TRAIN_FLAGS="--mixed_precision=bf16 --tpu=my-tpu".
TRAIN_INPUT ?= data/records/train/*.tfrecord
TRAIN_EVAL_INPUT ?= data/records/eval/*.tfrecord
MODEL_DIR ?= data/model
MODEL_SIZE ?= tiny
TRAIN_BATCH_SIZE ?= 32
TRAIN_STEPS ?= 300
TRAIN_WARMUP_STEPS ?= 30
TRAIN_LEARNING_RATE ?= 1e-3
TRAIN_FLAGS ?=
.PHONY: train tensorboard

train: install pretraining-data
	$(PY) -m trainer.run_pretraining --input_file='$(TRAIN_INPUT)' \
		--eval_input_file='$(TRAIN_EVAL_INPUT)' --output_dir='$(MODEL_DIR)' \
		--model_size=$(MODEL_SIZE) --train_batch_size=$(TRAIN_BATCH_SIZE) \
		--num_train_steps=$(TRAIN_STEPS) --num_warmup_steps=$(TRAIN_WARMUP_STEPS) \
		--learning_rate=$(TRAIN_LEARNING_RATE) --steps_per_loop=50 --save_checkpoints_steps=100 \
		--eval_batch_size=32 --max_eval_steps=50 --do_train --do_eval $(TRAIN_FLAGS)

tensorboard: install
	$(VENV)/bin/tensorboard --logdir='$(MODEL_DIR)'
