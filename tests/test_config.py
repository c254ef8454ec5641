"""RunConfig is the one definition of a run's settings: every field is a DAG Param and a
CLI flag, with the same defaults, bounds and choices; bad values and combinations are refused."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from nightrecs.tasks.cli import _parser
from nightrecs.tasks.layout import RunConfig, add_flags, param_schemas


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p)
    return p


def test_every_field_is_a_param_and_a_flag_with_the_same_default():
    schemas = param_schemas()
    args = _parser().parse_args(["run", "--root", "R", "--date", "2026-03-10"])
    names = [f.name for f in fields(RunConfig)]
    assert len(schemas) == len(names)
    for f in fields(RunConfig):
        assert hasattr(args, f.name), f.name  # a `nightrecs run` flag
        param = schemas[f.metadata["param"] or f.name]
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        assert param["default"] == (default or None if isinstance(f.default, tuple) else default), f.name
        if f.name not in ("root", "date"):
            assert getattr(args, f.name) == default, f.name
    # a config built from the flags equals one built from the Params' defaults
    from_flags = RunConfig(**{n: getattr(args, n) for n in names})
    from_params = RunConfig.from_params({**{k: v["default"] for k, v in schemas.items()}, "root": "R"}, "2026-03-10")
    assert from_flags == from_params


def test_flags_reach_every_kind_of_field():
    args = run_parser().parse_args(["--root", "s3://b/p", "--date", "2026-03-10", "--top-n", "7",
                                    "--segment-columns", "country,age_band", "--full-retrain",
                                    "--gate-tolerance", "0.2", "--train-mode", "full",
                                    "--bot-max-events-per-day", "500"])
    cfg = RunConfig(**{f.name: getattr(args, f.name) for f in fields(RunConfig)})
    assert (cfg.top_n, cfg.segment_columns, cfg.full_retrain, cfg.gate_tolerance, cfg.train_mode,
            cfg.bot_max_events_per_day) == (7, ("country", "age_band"), True, 0.2, "full", 500)
    with pytest.raises(SystemExit):
        run_parser().parse_args(["--root", "R", "--date", "2026-03-10", "--train-mode", "fast"])


def test_run_help_shows_every_setting_as_written():
    text = run_parser().format_help()  # argparse %-formats help: a bare % broke `nightrecs run --help`
    assert "--co-neighbours" in text and "paired 95% interval" in " ".join(text.split())


@pytest.mark.parametrize("bad, message", [
    ({"skip_training": True, "full_retrain": True}, "cannot both be set"),
    ({"top_n": 0}, r"top_n must be in \[1, 1000\]"),
    ({"gate_tolerance": 1.5}, "gate_tolerance must be in"),
    ({"gate_metric": "auc"}, "gate_metric must be one of"),
    ({"date": "10/03/2026"}, "run date must be YYYY-MM-DD"),
])
def test_invalid_settings_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**{"root": "R", "date": "2026-03-10", **bad})


def test_params_carry_bounds_choices_and_nullable_empties():
    schemas = param_schemas()
    assert schemas["top_n"]["minimum"] == 1 and schemas["top_n"]["maximum"] == 1000
    assert schemas["train_mode"]["enum"] == ["light", "full"]
    assert schemas["segment_columns"] == {**schemas["segment_columns"], "type": ["null", "string"], "default": None}
    assert schemas["run_date"]["type"] == ["null", "string"]
