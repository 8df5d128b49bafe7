"""Where drop decisions go: beside a data folder, never inside it; every drop of a recipe run under RUN/decisions."""

from __future__ import annotations

from nano2.contracts.shards import RUN_STATE_DIR, decisions_dir, run_data_folder, shard_name, subset_dir


def test_decisions_of_a_run_mirror_data_and_chat_below_run_decisions(tmp_path):
    run = tmp_path / "run"
    (run / RUN_STATE_DIR).mkdir(parents=True)
    assert decisions_dir(run / "data" / "curated" / "web") == run / "decisions" / "curated" / "web"
    assert decisions_dir(run / "chat" / "synthetic" / "reasoning") == run / "decisions/chat/synthetic/reasoning"
    assert run_data_folder(run / "data" / "curated" / "web") == run / "data"


def test_outside_a_run_decisions_are_a_sibling_folder_even_under_a_folder_named_data(tmp_path):
    """A user's own `/data/...` is not a run: without the runner's marker nothing is rewritten above the output."""
    assert decisions_dir(tmp_path / "data" / "web") == tmp_path / "data" / "web.decisions"
    assert decisions_dir(tmp_path / "out" / "chat" / "x") == tmp_path / "out" / "chat" / "x.decisions"
    assert run_data_folder(tmp_path / "data" / "web") is None


def test_one_shard_naming():
    assert shard_name(0) == "00000.parquet" and shard_name(12) == "00012.parquet"
    assert subset_dir("web", "high").as_posix() == "web/subset=high"
