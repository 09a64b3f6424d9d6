"""The config schema: defaults, strict validation with messages naming key and file, sparse
shipped configs that resolve to the values they held as full dumps, one seed."""

import copy
import json
from pathlib import Path

import pydantic
import pytest
import yaml

from pinsage_model.config import (
    OUTPUT_NEUTRAL,
    SEED_OFFSETS,
    ConfigError,
    PipelineConfig,
    config_diff,
    config_from_dict,
    config_to_dict,
    flatten,
    load_config,
    round_floats,
    save_resolved,
)

SNAPSHOTS = Path("tests/assets/configs")  # the resolved configs of commit 09b8721, as full dumps
SHIPPED = ("demo", "ml-latest-small", "tiny", "bench")


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_demo_config_loads_and_is_frozen():
    cfg = load_config("configs/demo.yaml")
    assert cfg.data.preset == "demo"
    assert cfg.sampler.top_t == 20
    assert cfg.pairs.fractions == (0.7, 0.1, 0.2)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_every_config_file_in_repo_validates():
    files = sorted(Path("configs").glob("*.yaml"))
    assert files, "configs/ holds no YAML"
    for f in files:
        assert isinstance(load_config(f), PipelineConfig)


@pytest.mark.parametrize("name", ["demo", "ml-latest-small"])
def test_shipped_configs_are_short_overrides(name):
    text = Path(f"configs/{name}.yaml").read_text()
    assert len(text.splitlines()) <= 40
    # every key written differs from the default, names the data it runs on, or is the kind of a
    # loss or index whose parameters it sets
    written = flatten(yaml.safe_load(text))
    chosen = flatten(config_diff(load_config(f"configs/{name}.yaml")))
    assert {k for k in set(written) - set(chosen) if not k.endswith(".kind")} <= {"data.preset"}


def migrate(old: dict) -> dict:
    """A resolved config of 09b8721 in today's layout: the seven section seeds gone (one seed),
    the loss's parameters under ``train.loss``, the approximate index's under ``index.ann``, the
    hard-negative band as fractions of the item count (bench's ranks 2000-5000 of 1M items)."""
    new = copy.deepcopy(old)
    for section in ("data", "pairs", "graph", "sampler", "train", "user_head", "evaluation"):
        assert new[section].pop("seed") == 0
    t = new["train"]
    # removed: no config, search or ablation changed them; the code keeps what they held
    assert (t.pop("lr_decay"), t.pop("reverse_pairs")) == (0.9, False)
    kind, margin, reduction = t.pop("loss"), t.pop("margin"), t.pop("margin_reduction")
    xent = {"temperature": t.pop("xent_temperature")}
    xent |= {k: t.pop(k) for k in ("in_batch_negatives", "logq_correction")}
    t["loss"] = {"kind": kind} | ({"margin": margin, "reduction": reduction} if kind == "max_margin" else xent)
    i = new["index"]
    kind, m, ef, nlist, nprobe = (i.pop(k) for k in ("kind", "hnsw_m", "ef_search", "ivf_nlist", "ivf_nprobe"))
    i["ann"] = {"kind": "hnsw", "m": m, "ef_search": ef} if kind == "hnsw" else {"kind": "ivf", "nlist": nlist}
    # knobs nothing shipped, tuned or ablated changes: under each section's ``experimental``
    f, u = new["features"], new["user_head"]
    f["experimental"] = {
        k: f.pop(k) for k in ("text_hash_buckets", "categorical_vocab_top_k", "categorical_oov_buckets")
    }
    u["experimental"] = {k: u.pop(k) for k in ("min_input_fraction", "negatives")}
    new["sampler"]["hard_negative_band"] = [
        b / 1_000_000 if b >= 1 else b for b in new["sampler"]["hard_negative_band"]
    ]
    # added since: how long an attempt waits for a lock
    new["orchestration"]["lock_timeout_s"] = 21600
    # and what one request to the registered model may ask
    new["index"] |= {"max_ids_per_row": 500, "max_rows_per_request": 1000}
    # producer threads default to half the cores (0) since two measured slower than one on 2 cores
    assert t["producer_threads"] == 2
    t["producer_threads"] = 0
    # the user->item term of training (issue #25), on by default since it was chosen on validation
    t["user_loss_weight"] = 1.0
    t["experimental"] = {"user_neighbours": 50, "user_recency_half_life": 10.0}
    return new


def comparable(resolved: dict) -> dict:
    """What a config chooses: the user head's settings do nothing while it is off, and tuned
    floats count to the 3 significant digits the shipped files keep."""
    out = copy.deepcopy(resolved)
    if not out["user_head"]["enabled"]:
        out["user_head"] = {"enabled": False}
    return round_floats(out)


@pytest.mark.parametrize("name", SHIPPED)
def test_sparse_shipped_configs_resolve_to_the_snapshot(name):
    old = json.loads((SNAPSHOTS / f"{name}.resolved.json").read_text())
    new = config_to_dict(load_config(f"configs/{name}.yaml"))
    want = migrate(old)
    if name == "demo":  # the demo keeps the user term off (configs/demo.yaml says why)
        want["train"]["user_loss_weight"] = 0.0
    assert comparable(new) == comparable(want)


def test_schema_defaults_are_ml_latest_small_without_its_data():
    cfg = config_from_dict(
        {"name": "ml-latest-small", "data": config_to_dict(load_config("configs/ml-latest-small.yaml").data)}
    )
    assert cfg == load_config("configs/ml-latest-small.yaml")
    d = PipelineConfig()
    assert (d.train.loss.kind, d.train.base_lr, d.user_head.enabled) == ("xent", 0.003, True)
    assert d.train.loss.in_batch_negatives and d.train.loss.logq_correction


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.epochz" in str(e.value) and str(p) in str(e.value)
    assert "epochs" in str(e.value) and "seed" not in str(e.value)  # lists the allowed keys


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(write(tmp_path, "modle: {}\n"))


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("train:\n  epochs: three\n", "train.epochs", "an integer"),
        ("train:\n  epochs: 2.5\n", "train.epochs", "an integer"),
        ("train:\n  batch_size: '64'\n", "train.batch_size", "an integer"),
        ("train:\n  deterministic: 1\n", "train.deterministic", "a boolean"),
        ("model:\n  pooling: sum\n", "model.pooling", "one of 'importance', 'mean', 'max'"),
        ("pairs:\n  fractions: [0.7, 0.3]\n", "pairs.fractions", "a list of 3 items"),
        ("pairs:\n  split: random\n", "pairs.split", "one of 'temporal', 'hash'"),
        ("sampler: 5\n", "sampler", "a mapping"),
        ("train:\n  strategy: parameter_server\n", "train.strategy", "one of 'mirrored', 'multi_worker'"),
        ("train:\n  loss: hinge\n", "train.loss", "one of 'max_margin', 'xent'"),
        ("evaluation:\n  ks: [10, ten]\n", "evaluation.ks[1]", "an integer"),
    ],
)
def test_wrong_types(tmp_path, text, key, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"'{key}'" in str(e.value) and expected in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("train:\n  batch_size: -64\n", "train.batch_size", "must be greater than 0, got -64"),
        ("model:\n  hidden_dim: 0\n", "model.hidden_dim", "must be greater than 0"),
        ("model:\n  num_layers: 0\n", "model.num_layers", "must be greater than 0"),
        ("train:\n  epochs: 0\n", "train.epochs", "must be greater than 0"),
        ("index:\n  recall_floor: 1.5\n", "index.recall_floor", "must be less than or equal to 1"),
        ("sampler:\n  restart_prob: 1.0\n", "sampler.restart_prob", "must be less than 1"),
        ("pairs:\n  train_window: 0\n", "pairs.train_window", "must be greater than or equal to 1"),
        ("pairs:\n  fractions: [0.5, 0.1, 0.1]\n", "pairs.fractions", "summing to 1"),
        ("train:\n  num_devices: 0\n", "train.num_devices", "must be greater than 0"),
        ("orchestration:\n  tfjob_workers: -1\n", "orchestration.tfjob_workers", "greater than or equal to 0"),
        ("features:\n  batch_rows: 0\n", "features.batch_rows", "must be greater than 0"),
    ],
)
def test_value_ranges(tmp_path, text, key, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"'{key}'" in str(e.value) and expected in str(e.value) and str(p) in str(e.value)


def test_hard_negative_band_is_an_ordered_pair_of_fractions(tmp_path):
    with pytest.raises(ConfigError, match=r"'sampler.hard_negative_band' must be \(lo, hi\) with lo < hi"):
        load_config(write(tmp_path, "sampler:\n  hard_negative_band: [0.06, 0.02]\n"))
    with pytest.raises(ConfigError, match=r"'sampler.hard_negative_band\[1\]' must be less than or equal to 1"):
        load_config(write(tmp_path, "sampler:\n  hard_negative_band: [0.02, 5000]\n"))  # ranks are not fractions


def test_the_loss_and_the_index_hold_their_own_parameters(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  loss: {kind: max_margin, margin: 0.2}\n"))
    assert (cfg.train.loss.kind, cfg.train.loss.margin, cfg.train.loss.reduction) == ("max_margin", 0.2, "mean")
    with pytest.raises(ConfigError, match="unknown key 'train.loss.margin'; allowed here: kind, temperature"):
        load_config(write(tmp_path, "train:\n  loss: {kind: xent, margin: 0.2}\n"))
    with pytest.raises(ConfigError, match="'train.loss.temperature' must be greater than 0"):
        load_config(write(tmp_path, "train:\n  loss: {kind: xent, temperature: 0}\n"))
    with pytest.raises(ConfigError, match="'train.loss' needs a 'kind'"):
        load_config(write(tmp_path, "train:\n  loss: {temperature: 0.2}\n"))
    cfg = load_config(write(tmp_path, "index:\n  ann: {kind: ivf, nprobe: 4}\n"))
    assert (cfg.index.ann.kind, cfg.index.ann.nlist, cfg.index.ann.nprobe) == ("ivf", 1024, 4)
    with pytest.raises(ConfigError, match="unknown key 'index.ann.ef_search'"):
        load_config(write(tmp_path, "index:\n  ann: {kind: ivf, ef_search: 4}\n"))


def test_a_tfjob_needs_the_multi_worker_strategy(tmp_path):
    with pytest.raises(
        ConfigError, match="tfjob_workers' = 4 launches a multi-worker TFJob, which needs train.strategy"
    ):
        load_config(write(tmp_path, "orchestration:\n  tfjob_workers: 4\n"))
    cfg = load_config(write(tmp_path, "orchestration:\n  tfjob_workers: 4\ntrain:\n  strategy: multi_worker\n"))
    assert cfg.orchestration.tfjob_workers == 4 and cfg.train.strategy == "multi_worker"


def test_features_runner_settings(tmp_path):
    cfg = load_config(write(tmp_path, "features:\n  direct_running_mode: multi_processing\n  direct_num_workers: 0\n"))
    assert (cfg.features.direct_running_mode, cfg.features.direct_num_workers) == ("multi_processing", 0)
    # in_memory is one worker in this process: more workers would silently not happen
    with pytest.raises(ConfigError, match="features.direct_num_workers' must be 1"):
        load_config(write(tmp_path, "features:\n  direct_num_workers: 2\n"))
    with pytest.raises(ConfigError, match="features.direct_running_mode"):
        load_config(write(tmp_path, "features:\n  direct_running_mode: threads\n"))


def test_int_accepted_for_float_and_optional(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  base_lr: 1\npairs:\n  min_rating: 4\n"))
    assert cfg.train.base_lr == 1.0 and isinstance(cfg.train.base_lr, float)
    assert cfg.pairs.min_rating == 4.0


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("configs/demo.yaml", overrides={"train": {"epochs": 2}, "seed": 4})
    save_resolved(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg and again.train.epochs == 2 and again.train.seed == cfg.seed_for("train")
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text()) == config_to_dict(cfg)
    assert flatten(cfg)["train.epochs"] == 2 and flatten(cfg)["train.loss.kind"] == "xent"


def test_one_seed_from_which_each_stage_derives_its_own(tmp_path):
    cfg = config_from_dict({"seed": 7})
    seeds = {stage: cfg.seed_for(stage) for stage in SEED_OFFSETS}
    streams = {s: v for s, v in seeds.items() if s != "pairs"}  # the split's hash or tie-break: no stream
    assert len(set(streams.values())) == len(streams)  # distinct per stage drawing from a stream
    assert seeds == {stage: config_from_dict({"seed": 7}).seed_for(stage) for stage in SEED_OFFSETS}  # deterministic
    assert seeds["data"] == seeds["pairs"] == 7  # data and split as before the one seed (byte-identical)
    sections = ("data", "pairs", "graph", "sampler", "train", "user_head", "evaluation")
    assert all(getattr(cfg, s).seed == seeds[s] for s in sections)  # what the library reads
    assert all("seed" not in config_to_dict(cfg)[s] for s in sections)  # files hold one seed
    with pytest.raises(ConfigError, match="'train.seed' is derived from the top-level seed"):
        load_config(write(tmp_path, "train:\n  seed: 3\n"))


def test_output_neutral_keys_exist_and_leave_fingerprints_alone():
    from components.orchestration.execution import fingerprint
    from components.stages import get_stage

    keys = flatten(PipelineConfig())
    assert OUTPUT_NEUTRAL <= set(keys)
    base = config_from_dict({})
    stage = get_stage("model")
    assert fingerprint(stage, config_from_dict({"train": {"producer_threads": 5, "queue_size": 2}}), {}) == (
        fingerprint(stage, base, {})
    )
    assert fingerprint(stage, config_from_dict({"train": {"epochs": 3}}), {}) != fingerprint(stage, base, {})
    assert fingerprint(stage, config_from_dict({"seed": 1}), {}) != fingerprint(stage, base, {})
    seeded = base.model_copy(update={"train": base.train.replace(seed=99)})  # a section seed set in code
    assert fingerprint(stage, seeded, {}) != fingerprint(stage, base, {})


def test_config_diff_keeps_only_changes_and_the_kind_of_a_switched_union():
    cfg = config_from_dict({"train": {"loss": {"kind": "max_margin", "margin": 0.2}, "epochs": 3}})
    assert config_diff(cfg) == {"train": {"epochs": 3, "loss": {"kind": "max_margin", "margin": 0.2}}}
    assert config_diff(PipelineConfig()) == {}
    assert config_from_dict(config_diff(cfg)) == cfg
    assert round_floats({"a": [0.0020554062603827007, 1000.0], "b": 3}) == {"a": [0.00206, 1000.0], "b": 3}
