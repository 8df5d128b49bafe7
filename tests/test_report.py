"""The run report: built from a real (small) recipe run, rendered in headless Chromium, screenshot taken."""

from __future__ import annotations

import html as html_lib
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from nano2.app.recipe import Runner, load_recipe
from nano2.app.report import (
    build_report,
    eval_comparison,
    funnel_rows,
    loss_caveats,
    mixture_series,
    percent,
    readable_step,
    score_caveat,
    sort_levels,
    split_languages,
    typed_cell,
)
from nano2.manifest import write_manifest
from tests.conftest import small_spec

# step names and counts as the web pipeline records them (runs/micro, curation/web): emoji, datatrove's cut type names
WEB_STEPS = [
    {"step": "📖 - READER: 🕷 WARC (counted)", "stats": {"records": 522, "documents": 520, "dropped": 2}},
    {"step": "🔻 - FILTER: 😈 Url-filter", "stats": {"total": 520, "forwarded": 510, "dropped": 10}},
    {"step": "🛢 - EXTRAC: ⚡ Fast extract", "stats": {"total": 510, "forwarded": 509, "dropped": 1}},
    {"step": "🔻 - FILTER: 🌍 Language ID", "stats": {"total": 509, "forwarded": 496, "dropped": 13}},
    {"step": "🔻 - FILTER: 🧹 Heuristic filters", "stats": {"total": 496, "forwarded": 368, "dropped": 128}},
    {"step": "🫂 - DEDUPS: 💥 exact-deduplication stage 3", "stats": {"total": 368, "forwarded": 368}},
    {"step": "🫂 - DEDUP: #️⃣ Exact-dedup filter", "stats": {"total": 368, "forwarded": 368}},
    {"step": "💽 - WRITER: 🧭 Route + write", "stats": {"written_web": 74, "written_multilingual": 294}},
]
LEVELS = {"low": "0-4", "medium-low": "5-9", "medium": "10-13", "medium-high": "14-17", "high": "18-19"}
# tokens per level in an order that differs from low -> high when sorted by size
LEVEL_TOKENS = {"medium-high": 22306, "medium-low": 17772, "low": 17624, "medium": 11744, "high": 8305}


def _curated_manifests(run: Path) -> None:
    """Manifests of a web pipeline run (web, multilingual, empty math) and a code run, as curation writes them."""
    extra = {"steps": WEB_STEPS, "quality_thresholds": {"levels": {"n_buckets": 20, "levels": LEVELS}}}
    web_by = {
        "level": {k: {"documents": 10, "tokens": v} for k, v in LEVEL_TOKENS.items()},
        "language": {"en": {"documents": 74, "tokens": sum(LEVEL_TOKENS.values())}},
    }
    outputs = {
        "web": ("t-web", web_by, 74),
        "multilingual": ("t-multilingual", {"language": {"de": {"documents": 250, "tokens": 450000},
                                                         "es": {"documents": 44, "tokens": 32000}}}, 294),
        "math": ("t-math", {}, 0),
    }  # fmt: skip
    for folder, (name, by, documents) in outputs.items():
        write_manifest(
            run / "data" / "curated" / folder, kind="documents", name=name, command="test",
            stats={"documents": documents, "by": by}, extra=extra,
        )  # fmt: skip
    code_by = {
        "code_language": {"Python": {"documents": 39, "tokens": 177793}, "Markdown": {"documents": 1, "tokens": 316}},
        "language": {"Python": {"documents": 39, "tokens": 177793}},  # how an older code run recorded it
        "license_spdx": {"MIT": {"documents": 40, "tokens": 178109}},
    }
    code_steps = [{"step": "🔻 - FILTER: 🚧 input issues", "stats": {"total": 127, "forwarded": 77, "dropped": 50}}]
    write_manifest(
        run / "data" / "curated" / "code", kind="documents", name="t-code", command="test",
        stats={"documents": 40, "by": code_by}, extra={"steps": code_steps},
    )  # fmt: skip


def _compress_and_eval_outputs(run: Path) -> None:
    """A NAS table, parent/child eval summaries (one tiny benchmark, one large) and a DPO log stuck at ln 2."""
    search = run / "compress" / "search"
    search.mkdir(parents=True)
    (search / "candidates.csv").write_text(
        "depth,hidden,params,memory_gib,fits,proxy_loss,proxy_kl,rank,notes,feasible\n"
        "19,128,2861830,0.005960475653409958,True,6.828123092651367,0.003597184317186475,1,,True\n"
        "23,128,3582152,0.00759221613407135,False,6.823606491088867,5.0057580665452406e-05,,,False\n"
    )
    for role, model, tiny_score, big_score in (("parent", "final", 0.5, 0.61), ("child", "child", 0.0, 0.58)):
        benchmarks = [
            {"name": "gsm8k", "n": 2, "metric": "accuracy", "score": tiny_score, "ci_low": 0.0, "ci_high": 0.9},
            {"name": "mmlu_stem", "n": 400, "metric": "accuracy", "score": big_score, "ci_low": big_score - 0.048,
             "ci_high": big_score + 0.047},
        ]  # fmt: skip
        (run / "evals" / role).mkdir(parents=True)
        (run / "evals" / role / "summary.json").write_text(json.dumps({"model": model, "benchmarks": benchmarks}))
    (run / "parent" / "dpo").mkdir(parents=True)
    (run / "parent" / "dpo" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": math.log(2) + 1e-7 * s}) + "\n" for s in (1, 2, 3))
    )


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed on CI (`make test` installs it through `make browser`)")
    pytest.skip("chromium not installed; `make browser` installs Debian's package (root)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A two-stage recipe run: a compiled plan and its plot, with metrics a trainer would write."""
    tmp = tmp_path_factory.mktemp("report")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(small_spec()))
    stages = [
        {"name": "plan", "help": "compile the mixture", "config": str(spec), "outputs": ["{run_dir}/plan"],
         "run": ["mix", "plan", "{config}", "-o", "{run_dir}/plan/plan.json", "--quiet"]},
        {"name": "plot", "after": ["plan"], "outputs": ["{run_dir}/plot"],
         "run": ["mix", "plot", "{run_dir}/.recipe/configs/plan.yaml", "-o", "{run_dir}/plot/mixture.png"]},
    ]  # fmt: skip
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "report-test", "run_dir": str(tmp / "run"), "stages": stages}))
    Runner(load_recipe(recipe), recipe).run()
    train = tmp / "run" / "parent"
    train.mkdir()
    with (train / "metrics.jsonl").open("w") as f:
        for step in range(1, 41):
            f.write(json.dumps({"step": step, "loss": 8.0 / step**0.3, "phase": "p1" if step <= 24 else "p2"}) + "\n")
    _curated_manifests(tmp / "run")
    _compress_and_eval_outputs(tmp / "run")
    return tmp / "run"


def test_report_has_every_section_and_real_numbers(run_dir):
    html_path, md_path = build_report(run_dir)
    md = md_path.read_text()
    for title in ("Stages and wall time", "Data funnel", "Mixture per phase", "Training curves", "Lineage"):
        assert f"## {title}" in md
    assert re.search(r"\| plan \| done \| [\d.]+ \| compile the mixture \|", md)
    assert "| parent | 40 | 40 |" in md
    assert (md_path.parent / "figures" / "stage_times.png").stat().st_size > 2000
    assert (md_path.parent / "figures" / "loss_curves.png").stat().st_size > 2000
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 2
    assert "src='figures/" not in page  # self-contained: every image is embedded


def test_report_loads_in_headless_chromium(run_dir, tmp_path):
    chromium = _chromium()
    html_path, _ = build_report(run_dir)
    shot = tmp_path / "report.png"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    common.append(f"--user-data-dir={tmp_path / 'profile'}")
    proc = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1800", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000  # a blank page is a few KB
    dom = subprocess.run([*common, "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0
    assert "<h1>nano2 recipe report: run</h1>" in dom.stdout
    assert dom.stdout.count("<section") == 10
    assert "ERR_FILE_NOT_FOUND" not in dom.stderr
    # every table fits the page: measured by the browser's own layout at a narrow window, written into the DOM
    measured = tmp_path / "measured.html"
    measured.write_text(html_path.read_text().replace("</body>", f"{FIT_SCRIPT}</body>"))
    narrow_dom = [*common, "--window-size=900,1200", "--dump-dom", measured.as_uri()]
    narrow = subprocess.run(narrow_dom, capture_output=True, text=True, timeout=120)
    fit = re.search(r'data-tables="(\d+)" data-overflowing="(\d+)" data-figures-overflowing="(\d+)"', narrow.stdout)
    assert fit, narrow.stdout[-2000:]
    assert int(fit.group(1)) >= 8 and fit.group(2) == "0" and fit.group(3) == "0", fit.group(0)


# counts tables wider than their wrapper (the page column) and images wider than their figure
FIT_SCRIPT = """<script>
const tables = [...document.querySelectorAll('table')];
const over = tables.filter(t => t.getBoundingClientRect().width > t.parentElement.clientWidth + 1).length;
const figs = [...document.querySelectorAll('figure img')]
  .filter(i => i.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1).length;
document.body.setAttribute('data-tables', tables.length);
document.body.setAttribute('data-overflowing', over);
document.body.setAttribute('data-figures-overflowing', figs);
</script>"""


def _md_table_after(md: str, caption: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table whose caption line contains `caption`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("*") and caption in line)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows[2:] if rows and rows[1][0].startswith("---") else rows


def test_report_funnel_levels_languages_and_caveats(run_dir):
    _, md_path = build_report(run_dir)
    md = md_path.read_text()
    # one funnel for the web pipeline, named by every artifact it wrote; steps readable, in pipeline order
    funnel = _md_table_after(md, "t-multilingual, t-web, t-math:")
    assert [r[2] for r in funnel] == [
        "Url-filter", "Fast extract", "Language ID", "Heuristic filters", "Exact-deduplication stage 3",
        "Exact-dedup filter", "to t-multilingual", "to t-web", "to t-math",
    ]  # fmt: skip
    assert funnel[1][:6] == ["3", "extract", "Fast extract", "510", "509", "1"]
    assert [r[4] for r in funnel[-3:]] == ["294", "74", "0"]
    assert "EXTRAC" not in md and "DEDUPS" not in md
    # quality levels low -> high although their sizes are in another order
    levels = _md_table_after(md, "quality levels, low -> high")
    assert [r[0] for r in levels] == ["low", "medium-low", "medium", "medium-high", "high"]
    assert [r[1] for r in levels] == list(LEVELS.values())
    # natural languages (English included) apart from programming languages
    natural = _md_table_after(md, "natural languages")
    assert [r[0] for r in natural] == ["de", "en", "es"]
    programming = _md_table_after(md, "programming languages")
    assert [r[0] for r in programming] == ["Python", "Markdown"]
    # parent and child side by side; the 2-item benchmark carries a caveat, the 400-item one none
    evals = _md_table_after(md, "models side by side")
    header = md.splitlines()[md.splitlines().index("*score per benchmark, models side by side (95% intervals)*") + 2]
    assert header.startswith(
        "| benchmark | metric | n | parent | parent 95% CI | child | child 95% CI | child - parent"
    )
    by_name = {r[0]: r for r in evals}
    assert by_name["gsm8k"][3:8] == ["0.5", "0.00-0.90", "0", "0.00-0.90", "-0.5"]
    assert "n=2 < 30" in by_name["gsm8k"][-1] and by_name["mmlu_stem"][-1] == ""
    assert "> **Caveat:** 1 of 2 benchmark scores rest on fewer than 30 items" in md
    assert "parent/dpo: the loss is ln 2 = 0.6931 at every logged step" in md
    assert "last val" not in md  # nothing in this run records a validation loss, and the section says so
    assert "no stage of this run recorded a validation loss" in md


def test_report_tables_round_numbers(run_dir):
    html_path, _ = build_report(run_dir)
    page = html_path.read_text()
    numbers = [html_lib.unescape(v) for v in re.findall(r"<td class='num'>([^<]*)</td>", page)]
    assert "0.00596" in numbers and "5.006e-05" in numbers  # the NAS table's 16-digit floats, rounded
    for number in numbers:
        mantissa = number.replace(",", "").split("e")[0]
        if "." in mantissa:  # significant digits of a decimal: no more than 4
            assert len(mantissa.replace("-", "").replace(".", "").lstrip("0")) <= 4, number
    assert "notes" not in re.findall(r"<th>([^<]*)</th>", page)  # an all-empty CSV column is left out


def test_readable_step_names():
    assert readable_step("🛢 - EXTRAC: ⚡ Fast extract") == ("extract", "Fast extract")
    assert readable_step("🫂 - DEDUPS: 💥 exact-deduplication stage 3") == ("dedup", "Exact-deduplication stage 3")
    assert readable_step("🫂 - DEDUP: #️⃣ Exact-dedup filter") == ("dedup", "Exact-dedup filter")
    assert readable_step("🔻 - FILTER: 🌍 Language ID") == ("filter", "Language ID")
    assert readable_step("plain name") == ("", "Plain name")


def test_funnel_routes_to_the_artifacts_by_folder():
    artifacts = [
        SimpleNamespace(path=Path("/r/data/curated/web"), manifest=SimpleNamespace(name="w")),
        SimpleNamespace(path=Path("/r/data/curated/multilingual"), manifest=SimpleNamespace(name="m")),
    ]
    rows = funnel_rows(artifacts, WEB_STEPS)
    assert rows[0] == (2, "filter", "Url-filter", 520, 510, 10, 98.1)  # the reader (no in/out counts) is skipped
    assert rows[-2:] == [(8, "route", "to m", 368, 294, None, 79.9), (8, "route", "to w", 368, 74, None, 20.1)]


def test_level_and_language_ordering():
    assert sort_levels(["high", "unscored", "low", "medium-high", "medium", "medium-low"], list(LEVELS)) == [
        "low", "medium-low", "medium", "medium-high", "high", "unscored",
    ]  # fmt: skip
    rows = [
        ("code", "language", "Python", 3, 900),
        ("code", "license_spdx", "MIT", 3, 900),
        ("web", "language", "en", 5, 500),
        ("multi", "language", "de", 9, 700),
        ("other-code", "code_language", "Rust", 1, 10),
    ]
    natural, programming = split_languages(rows)
    assert [r[2] for r in natural] == ["de", "en"]
    assert [r[2] for r in programming] == ["Python", "Rust"]


def test_mixture_chart_plots_tokens_not_sequences():
    cols = ["run", "phase", "source", "planned_sequences", "realised_sequences", "planned_tokens", "realised_tokens"]
    rows = [
        ("pre", "phase1", "code", 31, 31, 7936, 7936),
        ("pre", "phase1", "web", 54, 53, 13824, 13568),
        ("pre", "phase2", "code", 15, 15, 3840, 3840),
    ]
    unit, phases, sources, series = mixture_series(cols, rows)
    assert (unit, phases, sources) == ("tokens", ["phase1", "phase2"], ["code", "web"])
    assert series["planned"] == {"code": [7936, 3840], "web": [13824, 0]}
    assert series["realised"] == {"code": [7936, 3840], "web": [13568, 0]}
    unit, *_ = mixture_series(cols[:5], [r[:5] for r in rows])
    assert unit == "sequences"  # a view without token columns is drawn, and labelled, in sequences


def test_caveats_for_small_samples_and_flat_dpo_loss():
    assert score_caveat(2, 0.0, 0.66) == "n=2 < 30; CI 66 pts wide"
    assert score_caveat(400, 0.55, 0.65) == ""
    assert score_caveat(1000, 0.2, 0.6) == "CI 40 pts wide"
    columns, rows = eval_comparison(
        [
            ("child", {"benchmarks": [{"name": "b", "metric": "acc", "n": 500, "score": 0.4}]}),
            ("parent", {"benchmarks": [{"name": "b", "metric": "acc", "n": 500, "score": 0.5}]}),
        ]
    )
    assert columns[3] == "parent" and columns[5] == "child"
    assert rows == [("b", "acc", 500, 0.5, "", 0.4, "", -0.1, "")]
    flat = [{"step": s, "loss": math.log(2)} for s in range(5)]
    falling = [{"step": s, "loss": 0.69 - 0.05 * s} for s in range(5)]
    caveats = loss_caveats([("parent/dpo", flat), ("parent/other", falling)])
    assert len(caveats) == 1 and caveats[0].startswith("parent/dpo: the loss is ln 2")


def test_typed_cells():
    assert [typed_cell(c) for c in ("19", "0.0059604", "True", "False", "", "width")] == [
        19, 0.0059604, True, False, None, "width",
    ]  # fmt: skip


def test_percent_never_rounds_a_share_to_zero():
    assert percent(275, 599_000) == 0.046  # nl in the micro run: 0.0459%
    assert (percent(509, 510), percent(0, 10), percent(1, 0)) == (99.8, 0.0, None)
