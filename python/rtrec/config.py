"""Configuration: embedded defaults, a TOML file, environment variables and flags.

Precedence, highest first: command-line flag, environment variable (``RTREC_HOME``,
``RTREC_CONFIG``, ``RTREC_TOKEN``), TOML file, embedded defaults. A config is validated
once into a frozen :class:`Config`; unknown keys and wrongly typed values are errors.

>>> cfg = load_config(overrides={"learner": {"batch_size": 256}})
>>> cfg.learner.batch_size
256
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rtrec.errors import ConfigError

EVENT_TYPES = ("impression", "click", "favorite", "add_to_cart", "purchase", "rating", "dismiss", "skip")


@dataclass(frozen=True)
class FeaturesConfig:
    """Hashed features fed to the CTR model (see ``rtrec.features``)."""

    bits: int = 20
    seed: int = 0
    # Namespaces hashed for every training row. ``user`` and ``item`` come from the event,
    # ``category`` and ``tags`` from the catalog, ``hour`` and ``weekday`` from the event
    # time, anything else from the event's ``context`` object.
    namespaces: tuple[str, ...] = ("user", "item", "category", "tags", "hour", "weekday", "device")
    crosses: tuple[tuple[str, str], ...] = (("user", "category"), ("user", "tags"))


@dataclass(frozen=True)
class EventsConfig:
    """What the event log accepts (see ``rtrec.events.validate``)."""

    # An event may be at most this far in the future of the receiving clock, in seconds.
    max_future_s: float = 86_400.0
    # ... and no older than this (ISO 8601; without an offset, UTC).
    oldest: str = "1970-01-01T00:00:00+00:00"
    # Identifiers (event, user, item, request) have at most this many characters.
    max_id_chars: int = 512
    # ``context`` and item ``attrs``: nesting levels, and characters of their JSON text.
    max_depth: int = 16
    max_json_chars: int = 65_536
    # DuckDB's memory limit for the event log (its cache otherwise grows towards 80% of RAM).
    duckdb_memory_limit: str = "1GB"


@dataclass(frozen=True)
class LabelsConfig:
    """How feedback events become training labels (see ``rtrec.events.labels``)."""

    positive: dict[str, float] = field(
        default_factory=lambda: {"click": 1.0, "favorite": 2.0, "add_to_cart": 2.0, "purchase": 4.0}
    )
    negative: dict[str, float] = field(default_factory=lambda: {"dismiss": 1.0, "skip": 0.5})
    rating_threshold: float = 4.0
    rating_weight: float = 1.0
    # How long an impression waits for feedback before it is learned as a negative, and how
    # much longer its features are kept for a late positive (bench/delayed_feedback.py).
    impression_window_s: float = 300.0
    late_window_s: float = 1500.0
    # At most this many impressions are held with their features (about 400 bytes each):
    # past it the oldest kept one is dropped, or the oldest pending one learned as a negative early.
    max_snapshots: int = 2_000_000
    # The event-time watermark never runs more than this ahead of the learner's clock.
    watermark_lead_s: float = 10.0


@dataclass(frozen=True)
class LearnerConfig:
    """The online CTR learner (see ``rtrec.learn``)."""

    batch_size: int = 1024
    # Adagrad step sizes: dense layers, and the hashed embedding tables (sparse rows).
    lr: float = 0.02
    sparse_lr: float = 0.1
    # Step size of the per-example logistic regression whose logit feeds the CTR model.
    wide_lr: float = 0.5
    # Served logit = (1 - wide_blend) * CTR model + wide_blend * per-example model.
    wide_blend: float = 0.5
    embedding_dim: int = 16
    mlp_hidden: tuple[int, ...] = (32,)
    weight_decay: float = 0.0
    replay_capacity: int = 100_000
    # Replay rows mixed into each update, as a multiple of the fresh rows. Off by default: on
    # MovieLens and the simulator every steady-state mix cost AUC (see bench/RESULTS.md);
    # after a drift alarm ``drift_replay_ratio`` applies instead.
    replay_ratio: float = 0.0
    replay_strategy: str = "recency"
    replay_half_life_events: float = 20_000.0
    # Half-life of the per-user and per-item popularity and CTR counters, in seconds of event time.
    counter_half_life_s: float = 7 * 24 * 3600.0
    # Half-life of the per-user "recent CTR" counter (the current session's mood), in seconds.
    recent_half_life_s: float = 3600.0
    # Page-Hinkley on each batch's normalised entropy (log loss / entropy of the click rate).
    drift_delta: float = 0.01
    drift_threshold: float = 0.3
    drift_alpha: float = 0.95
    drift_boost: float = 1.0
    drift_boost_events: int = 5_000
    # Replay rows per fresh row while a drift alarm's adaptation lasts (newest rows first).
    drift_replay_ratio: float = 0.5
    # On an alarm, Adagrad's squared-gradient history is multiplied by this (0, 1]: steps grow again.
    drift_forget: float = 1.0
    # torch intra-op threads for learning (process-wide). Small sparse updates run fastest
    # on one thread; more only contend with the HTTP server and the encoder. 0 = torch's default.
    threads: int = 1
    seed: int = 0


@dataclass(frozen=True)
class TextConfig:
    """Language-model item text features (see ``rtrec.text``)."""

    enabled: bool = True
    # A model name (``all-MiniLM-L6-v2``, ``gpt2``) or a local folder with transformers weights.
    model: str = "all-MiniLM-L6-v2"
    template: str = "{title}. {category}. {tags}. {description}"
    max_length: int = 64
    batch_size: int = 64
    pooling: str = "mean"
    device: str = "auto"
    # ``auto``: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU.
    dtype: str = "auto"
    threads: int = 0
    dim: int = 32
    item_features: bool = True
    user_vector: bool = True
    # Off by default: on MovieLens and the simulator it cost AUC (bench/RESULTS.md).
    distill: bool = False
    user_half_life_events: float = 50.0
    distill_weight: float = 1.0
    distill_decay_events: float = 5.0


@dataclass(frozen=True)
class ServeConfig:
    """The daemon and its HTTP API (see ``rtrec.serve``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    exploration: str = "epsilon"
    epsilon: float = 0.05
    temperature: float = 0.1
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch: int = 10_000
    checkpoint_every_s: float = 30.0
    inbox_poll_s: float = 1.0
    # A connection must deliver a whole request within this many seconds of opening (or of
    # its previous answer), or it is closed; past max_connections new ones are closed at once.
    request_timeout_s: float = 30.0
    max_connections: int = 512
    # Backpressure: new events get HTTP 429 while the oldest unlearned one is older than this
    # many seconds, or more than max_lag_events wait to be learned.
    max_lag_s: float = 0.5
    max_lag_events: int = 100_000


@dataclass(frozen=True)
class ReplayConfig:
    """``rtrec replay`` evaluation (see ``rtrec.replay``)."""

    # Fraction of positive events on which full-catalog HR@10 / NDCG@10 are measured.
    ranking_sample: float = 0.01
    windows: int = 20
    static_fraction: float = 0.2
    cold_threshold: int = 5


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. Build one with :func:`load_config`."""

    home: Path = field(default_factory=lambda: Path.home() / ".rtrec")
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    @property
    def db_path(self) -> Path:
        return self.home / "rtrec.duckdb"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["home"] = str(self.home)
        return out


def default_home() -> Path:
    env = os.environ.get("RTREC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".rtrec"


def load_config(
    path: str | Path | None = None,
    *,
    home: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and overrides.

    ``path`` falls back to ``$RTREC_CONFIG``, then to ``<home>/config.toml`` when it exists.
    ``overrides`` (a nested mapping, as flags produce) wins over everything else.
    """
    data: dict[str, Any] = {}
    home_path = Path(home).expanduser() if home is not None else default_home()
    cfg_path = Path(path) if path is not None else None
    if cfg_path is None and os.environ.get("RTREC_CONFIG"):
        cfg_path = Path(os.environ["RTREC_CONFIG"])
    if cfg_path is None and (home_path / "config.toml").is_file():
        cfg_path = home_path / "config.toml"
    if cfg_path is not None:
        data = read_toml(cfg_path)
    if "home" in data and home is None and not os.environ.get("RTREC_HOME"):
        home_path = Path(str(data["home"])).expanduser()
    data.pop("home", None)
    if os.environ.get("RTREC_TOKEN"):
        _merge(data, {"serve": {"token": os.environ["RTREC_TOKEN"]}})
    if overrides:
        _merge(data, overrides)
    sections = _build(Config, data, "")
    cfg = dataclasses.replace(sections, home=home_path)
    validate(cfg)
    return cfg


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="pass --config with an existing TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _build(cls: Any, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section [{where}] must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        section = f"[{where}]" if where else "the top level"
        raise ConfigError(
            f"unknown config key {unknown[0]!r} in {section}", hint=f"known keys: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        else:
            kwargs[name] = _coerce(tp, value, key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key} must be a list, got {value!r}")
        item_tp = args[0]
        return tuple(_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a table, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    return value


def validate(cfg: Config) -> None:
    """Check cross-field rules that types alone cannot express."""
    f = cfg.features
    if not 1 <= f.bits <= 32:
        raise ConfigError(f"config key features.bits must be between 1 and 32, got {f.bits}")
    for a, b in f.crosses:
        for ns in (a, b):
            if ns not in f.namespaces:
                raise ConfigError(f"config key features.crosses names {ns!r}, which is not in features.namespaces")
    for key in (*cfg.labels.positive, *cfg.labels.negative):
        if key not in EVENT_TYPES:
            raise ConfigError(
                f"config key labels names unknown event type {key!r}", hint=f"known: {', '.join(EVENT_TYPES)}"
            )
    overlap = set(cfg.labels.positive) & set(cfg.labels.negative)
    if overlap:
        raise ConfigError(f"event type {sorted(overlap)[0]!r} is both positive and negative in [labels]")
    if not cfg.labels.impression_window_s >= 0.0 or not cfg.labels.late_window_s >= 0.0:
        raise ConfigError("config keys labels.impression_window_s and labels.late_window_s must be 0 or more seconds")
    ev = cfg.events
    if not ev.max_future_s >= 0.0:
        raise ConfigError(f"config key events.max_future_s must be 0 or more seconds, got {ev.max_future_s}")
    try:
        datetime.fromisoformat(ev.oldest)
    except ValueError:
        raise ConfigError(
            f"config key events.oldest must be an ISO 8601 time, got {ev.oldest!r}", hint="e.g. 2000-01-01T00:00:00Z"
        ) from None
    for key in ("max_id_chars", "max_depth", "max_json_chars"):
        if getattr(ev, key) < 1:
            raise ConfigError(f"config key events.{key} must be at least 1")
    if cfg.labels.max_snapshots < 1:
        raise ConfigError("config key labels.max_snapshots must be at least 1")
    if cfg.learner.batch_size < 1:
        raise ConfigError("config key learner.batch_size must be at least 1")
    if cfg.learner.replay_strategy not in ("uniform", "recency", "balanced"):
        got = cfg.learner.replay_strategy
        raise ConfigError(f"config key learner.replay_strategy must be uniform, recency or balanced, got {got!r}")
    if cfg.text.pooling not in ("mean", "last"):
        raise ConfigError(f"config key text.pooling must be mean or last, got {cfg.text.pooling!r}")
    if cfg.serve.exploration not in ("none", "epsilon", "softmax"):
        raise ConfigError(
            f"config key serve.exploration must be none, epsilon or softmax, got {cfg.serve.exploration!r}"
        )
    if not 0.0 <= cfg.learner.wide_blend <= 1.0:
        raise ConfigError(f"config key learner.wide_blend must be in [0, 1], got {cfg.learner.wide_blend}")
    if not 0.0 < cfg.learner.drift_forget <= 1.0:
        raise ConfigError(f"config key learner.drift_forget must be in (0, 1], got {cfg.learner.drift_forget}")
    if not cfg.serve.request_timeout_s > 0 or cfg.serve.max_connections < 1:
        raise ConfigError("config keys serve.request_timeout_s and serve.max_connections must be positive")
    if not 0.0 <= cfg.serve.epsilon <= 1.0:
        raise ConfigError(f"config key serve.epsilon must be in [0, 1], got {cfg.serve.epsilon}")
    if not 0.0 < cfg.replay.static_fraction < 1.0:
        raise ConfigError("config key replay.static_fraction must be in (0, 1)")
