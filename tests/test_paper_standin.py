"""The paper profile end to end on a stand-in of the outside world (tests/standin.py): a
LLaMA-3-style model and a Qwen2.5-style second model (random init, bf16, locally trained
tokenizers), local copies of C4, Wikipedia, SlimPajama, DCLM and Alpaca in their hub schemas,
and lm-eval tasks under the paper's names, formats, splits and shot counts (MMLU 5-shot over
four subjects). ``python -m calib.book --profile paper`` runs every chapter with overrides
pointing at these, on Ray, offload on. A wiring test, not a test of numbers.

The world chapter is left out: it describes the embedded world whatever the profile (it reads
no profile setting but smoke's reduced sizes), and with a cold cache it measures the world's
realism report again (5 min here); `make book PROFILE=smoke` executes it in CI.

Also here: ``--plan`` for the paper profile from config-only model folders, and the real
path's bad input (a hub source without network, a hub model id, a task a folder lacks).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import standin
from calib.book import runner
from calib.errors import CalibError

ROOT = Path(__file__).resolve().parents[1]
# the paper's chapters: the real-model chapter runs SmolLM2 on real text in every profile (test_real_chapter)
PAPER_CHAPTERS = [c for c in runner.CHAPTERS if c != "real_model"]
PAPER_TASKS = ["boolq", "winogrande", "piqa", "hellaswag", "arc_easy", "arc_challenge", "mmlu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The stand-in: model folders, source copies, a task folder and the book's settings."""
    d = tmp_path_factory.mktemp("standin")
    llama = standin.llama3_model(d / "llama3", standin.llama3_tokenizer())
    qwen = standin.qwen25_model(d / "qwen25", standin.qwen25_tokenizer())
    sources = standin.write_sources(d / "data")
    tasks = standin.write_tasks(d / "tasks", n=8)
    settings = {  # the paper profile, with a grid small enough for CI; everything else is the profile's
        "model": llama, "second_model": qwen, "store": str(d / "book.db"), "seeds": 2, "headline_seeds": 2,
        "nsamples": 4, "seqlen": 64, "suite": {"include_path": tasks, "limit": 4, "n_alpaca": 8},
        "sparsities": [0.5, 0.6], "patterns": ["2:4"], "amounts": [2, 4], "table3_settings": [0.5, "2:4"],
        "synthetic": {"n_docs": 8, "max_new_tokens": 32, "batch_size": 8}, "prefix_lens": [0, 2],
        "filter_rates": [0, 20], "stat_docs": 8}
    (d / "settings.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "CALIB_SOURCES": standin.sources_env(sources), "CALIB_CACHE": str(d / "cache"),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return {"dir": d, "settings": settings, "file": d / "settings.yaml", "env": env, "sources": sources}


def _book(world, *args, timeout=1500):
    return subprocess.run([sys.executable, "-m", "calib.book", "--profile", "paper", "--settings",
                           str(world["file"]), *args], env=world["env"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_paper_profile_runs_every_chapter_on_the_stand_in(world):
    import nbformat

    from calib.experiments import Store
    out = world["dir"] / "book"
    chapters = [c for c in PAPER_CHAPTERS if c != "world"]
    r = _book(world, "--book-dir", str(out), *[a for c in chapters for a in ("--chapter", c)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "0 failed" in r.stdout
    for name in chapters:  # every chapter executed, under the paper profile with these settings
        meta = nbformat.read(out / f"{name}.ipynb", as_version=4).metadata["calib"]
        assert meta["profile"] == "paper" and meta["settings"]["model"] == world["settings"]["model"], name
    with Store(world["settings"]["store"]) as store:
        assert store.count() == {"done": store.count().get("done", 0)} and store.count()["done"] > 50
        rows = store.rows()
    models = {world["settings"]["model"], world["settings"]["second_model"]}
    for row in rows:
        p, m = row["params"], row["metrics"]
        assert p["model"] in models and p["dtype"] == "bfloat16" and p["suite"]["name"] == "paper"
        assert p["suite"]["shots"]["mmlu"] == 5 and p["suite"]["include_path"] == world["settings"]["suite"][
            "include_path"]
        assert all(f"{t}/acc" in m for t in PAPER_TASKS), sorted(m)
        assert {"avg", "alpaca_ppl"} <= set(m) and all(f"{t}/acc" in row["dense"] for t in PAPER_TASKS)
        assert row["info"]["execution"]["offload"] is True
        assert set(row["info"]["items"]) == set(PAPER_TASKS) and all(row["info"]["items"].values())
        assert any(k.startswith("mmlu_") for k in row["versions"]["task_versions"])
    assert {r["params"]["calibration"]["source"] for r in rows} == {"c4", "wikipedia", "slimpajama", "dclm"}
    assert {r["params"]["method"] for r in rows} == {"magnitude", "sparsegpt", "wanda", "dsnot", "owl"}
    assert {r["params"]["synthetic"]["generator"] for r in rows if r["params"]["synthetic"]} == {"dense", "pruned"}

    # the plan of the same settings counts the same jobs, now all in the store, and runs nothing
    r = _book(world, "--plan", *[a for c in PAPER_CHAPTERS for a in ("--chapter", c)], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    total = [line for line in r.stdout.splitlines() if line.startswith("book (distinct)")][0].split()
    assert int(total[2]) == int(total[3]) == len(rows) and total[4] == "0", total
    assert "not yet in the store or cache: 0" in r.stdout


def _config_only(folder: Path, config: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config.read_text())
    return str(folder)


def test_plan_of_the_paper_profile_from_config_only_folders(tmp_path, capsys, monkeypatch):
    from calib.experiments import plan as P
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    over = {"model": _config_only(tmp_path / "dclm", ROOT / "examples/plan-configs/DCLM-7B/config.json"),
            "second_model": _config_only(tmp_path / "qwen", ROOT / "examples/plan-configs/Qwen2.5-7B/config.json"),
            "store": str(tmp_path / "none.db")}
    total = runner.print_plan("paper", PAPER_CHAPTERS, over=over, cost=P.parse_cost("1e-6"))
    text = capsys.readouterr().out
    assert not (tmp_path / "none.db").exists(), "planning creates no store"
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line and line.split()[0] in runner.CHAPTERS}
    assert set(lines) == set(PAPER_CHAPTERS) - {"world"}
    assert total["jobs"] == int(text.split("book (distinct)")[1].split()[0]) > 2000
    assert total["done"] == 0 and total["estimated"] and "partly estimated" in text
    # Fig. 3's amounts reach 2048 x 2048 tokens; 20 seeds; one dense evaluation per model
    assert total["dense_evaluations"] == 2 and total["tokens"]["prune"] > 1e9 and total["tokens"]["generate"] > 0
    e_one, _ = P.evaluation_tokens(next(iter(runner.chapter_jobs(
        runner.settings("paper", **over), ["table1_similarity"])["table1_similarity"])))
    assert e_one == P.ALPACA_TOKENS * 1000 + sum(n * fast for n, _, fast in P.PAPER_EVAL.values())  # the fast scorer's
    assert total["tokens"]["evaluate"] == e_one * (total["jobs"] + total["dense_evaluations"])
    e_hflm = P.ALPACA_TOKENS * 1000 + sum(n * hflm for n, hflm, _ in P.PAPER_EVAL.values())
    assert total["by_scorer"] == {"fast": total["tokens"]["evaluate"],
                                  "hflm": e_hflm * (total["jobs"] + total["dense_evaluations"])}
    assert "evaluation tokens by scorer" in text
    hours = sum(total["tokens"].values()) * 1e-6 / 3600
    assert f"all {hours:.3g} h" in text and "6.89B parameters" in text


def test_plan_of_the_paper_olmo2_profile(tmp_path, capsys, monkeypatch):
    """OLMo-2-1124-7B with its own mix's DCLM and Wikipedia parts in those roles: the paper's grid,
    planned from config-only folders, with hours from a token cost."""
    from calib.book.profiles import by_role, label
    from calib.experiments import plan as P
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    over = {"model": _config_only(tmp_path / "olmo2", ROOT / "examples/plan-configs/OLMo-2-1124-7B/config.json"),
            "second_model": _config_only(tmp_path / "qwen", ROOT / "examples/plan-configs/Qwen2.5-7B/config.json"),
            "store": str(tmp_path / "none.db")}
    s = runner.settings("paper-olmo2", **over)
    assert (by_role(s, "dclm"), by_role(s, "wikipedia")) == ("olmo-mix-dclm", "olmo-mix-wiki")
    assert label("olmo-mix-dclm") == "OLMo-mix dclm (DCLM)"
    jobs = runner.chapter_jobs(s, ["fig1_methods"])["fig1_methods"]
    assert {j.calibration["source"] for j in jobs} == {"c4", "olmo-mix-wiki", "slimpajama", "olmo-mix-dclm"}
    total = runner.print_plan("paper-olmo2", PAPER_CHAPTERS, over=over, cost=P.parse_cost("1e-6"))
    text = capsys.readouterr().out
    assert "cannot be pruned" not in text and "7.3B parameters" in text
    lines = {line.split()[0] for line in text.splitlines() if line and line.split()[0] in runner.CHAPTERS}
    assert lines == set(PAPER_CHAPTERS) - {"world"}
    assert total["jobs"] == int(text.split("book (distinct)")[1].split()[0]) > 2000
    hours = sum(total["tokens"].values()) * 1e-6 / 3600
    assert f"all {hours:.3g} h" in text


def test_plan_without_a_model_says_what_to_pass(capsys):
    assert runner.main(["--profile", "paper", "--plan"]) == 2
    err = capsys.readouterr().err
    assert "/models/DCLM-7B is not here" in err and "--set model=FOLDER" in err and "config.json" in err
    assert len(err.strip().splitlines()) == 1


def test_overrides_reach_settings_and_bad_ones_are_one_line(tmp_path, monkeypatch, capsys):
    from calib.book import overrides
    from calib.book.profiles import settings
    f = tmp_path / "s.yaml"
    f.write_text("seeds: 3\nsuite: {limit: 7}\n")
    over = overrides.collect([f], ["suite.n_alpaca=9", "sources=[c4, dclm]"])
    assert over == {"seeds": 3, "suite": {"limit": 7, "n_alpaca": 9}, "sources": ["c4", "dclm"]}
    s = settings("paper", over, seeds=None)
    assert s["seeds"] == 3 and s["suite"] == {"name": "paper", "shots": {"mmlu": 5}, "n_alpaca": 9, "limit": 7}
    assert settings("paper", over, seeds=5)["seeds"] == 5, "a single setting wins"
    assert runner.main(["--profile", "paper", "--set", "sede=1", "--plan"]) == 2
    assert "unknown setting 'sede' (from --settings/--set)" in capsys.readouterr().err
    with pytest.raises(CalibError, match="expected KEY=VALUE"):
        overrides.parse_set("seeds")


# ------------------------------------------------------------------------- bad input
def test_hub_source_without_network_is_one_line_at_once(tmp_path, monkeypatch):
    import time

    from calib import data
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "ENDPOINT", "http://127.0.0.1:9")
    t = time.perf_counter()
    with pytest.raises(CalibError) as e:
        data.load_texts("c4", pool=2)
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    assert "source 'c4'" in msg and "allenai/c4" in msg and "CALIB_SOURCES='c4=" in msg and "\n" not in msg
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # offline mode: datasets' own error, as one line
    with pytest.raises(CalibError, match="source 'wikipedia'.*wikimedia/wikipedia.*offline mode.*CALIB_SOURCES"):
        data.load_texts("wikipedia", pool=2)


def test_local_copies_in_the_hub_schemas_are_read(tmp_path, monkeypatch):
    from calib import data
    paths = standin.write_sources(tmp_path, n=6)
    monkeypatch.setenv("CALIB_SOURCES", standin.sources_env(paths))
    for name in ("c4", "wikipedia", "slimpajama", "dclm", "alpaca", "olmo-mix-dclm", "olmo-mix-wiki"):
        texts = data.load_texts(name, pool=4)
        assert len(texts) == 4 and all(isinstance(t, str) and t for t in texts), name
    assert data.load_texts("alpaca", pool=1)[0].startswith("Below is an instruction")
    monkeypatch.setenv("CALIB_SOURCES", "c4=/nowhere")
    with pytest.raises(CalibError, match="local copy of 'c4' at /nowhere does not exist"):
        data.load_texts("c4", pool=1)
    monkeypatch.setenv("CALIB_SOURCES", f"c5={paths['c4']}")
    with pytest.raises(CalibError, match="unknown source 'c5'.*c4, wikipedia"):
        data.load_texts("c4", pool=1)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "mixed" / "b.parquet").write_bytes(b"")
    monkeypatch.setenv("CALIB_SOURCES", f"dclm={tmp_path / 'mixed'}")
    with pytest.raises(CalibError, match="files of several kinds"):
        data.load_texts("dclm", pool=1)
    yml = tmp_path / "sources.yaml"
    yml.write_text(yaml.safe_dump({"wikipedia": paths["wikipedia"]}))
    monkeypatch.setenv("CALIB_SOURCES", str(yml))
    assert len(data.load_texts("wikipedia", pool=3)) == 3


def test_hub_model_id_and_unknown_task_are_one_line(tmp_path):
    from calib import evaluate
    from calib.experiments import Job
    with pytest.raises(CalibError) as e:
        Job(model="meta-llama/Meta-Llama-3-8B")
    msg = str(e.value)
    assert msg.startswith("hub model 'meta-llama/Meta-Llama-3-8B' cannot be read")  # offline: the tests' conftest
    assert "`hf download meta-llama/Meta-Llama-3-8B`" in msg
    assert "gated" in msg and "\n" not in msg
    tasks = standin.write_tasks(tmp_path / "tasks", n=2, tasks=["boolq", "piqa"])
    with pytest.raises(CalibError, match="suite.include_path: expected a folder"):
        Job(suite={"name": "paper", "include_path": str(tmp_path / "nope")})
    with pytest.raises(CalibError, match="only the paper suite"):
        Job(suite={"name": "world", "include_path": tasks})
    with pytest.raises(CalibError, match=r"unknown task 'winogrande'.* in .*tasks; valid choices: boolq, piqa"):
        evaluate.check_tasks(["boolq", "winogrande"], tasks)
    with pytest.raises(CalibError, match=r"unknown task 'boolqq'.*\(close: boolq\)"):
        evaluate.check_tasks(["boolqq"], tasks)


def test_sweep_preflight_fails_before_any_job(tmp_path, monkeypatch):
    """A folder without the suite's tasks, or an unprunable architecture, stops the sweep in one line."""
    from calib.experiments import Job, Store, run_sweep
    tasks = standin.write_tasks(tmp_path / "tasks", n=2, tasks=["boolq"])
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CALIB_SOURCES", standin.sources_env(standin.write_sources(tmp_path / "data", n=4)))
    job = Job(method="magnitude", suite={"name": "paper", "include_path": tasks, "limit": 1})
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(CalibError, match="unknown task 'arc_challenge', .*'winogrande' in .*valid choices: boolq"):
            run_sweep([job], store, progress=False)
        assert store.count() == {}
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    with pytest.raises(CalibError, match="model .*gpt2: unsupported architecture 'gpt2'"):
        run_sweep([Job(model=str(gpt2), method="magnitude")], tmp_path / "t.db", progress=False)
