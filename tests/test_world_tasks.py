"""The world tasks' item makers: answers are the knowledge base's facts, distractors are
wrong and (where the knowledge base has one) plausible, wording follows pretraining, items
are deterministic; and, on the committed model, every task measures (slow)."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from calib.world.sources import kb
from calib.world.tasks import CHANCE, TASKS, make_items

N = 500


@pytest.fixture(scope="module")
def items():
    return {t: make_items(t, N) for t in TASKS}


def test_items_are_deterministic_across_calls_and_processes(items):
    digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
    assert {t: make_items(t, N) for t in TASKS} == items
    code = ("import hashlib, json; from calib.world.tasks import TASKS, make_items; "
            f"print(hashlib.sha256(json.dumps({{t: make_items(t, {N}) for t in TASKS}}, sort_keys=True)"
            ".encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "77", "PATH": ""}).stdout
    assert out.strip() == digest


def test_answer_is_among_distinct_choices(items):
    for t in TASKS:
        for it in items[t]:
            if t == "world_winogrande":
                assert it["option1"] != it["option2"] and it["label"] in (0, 1)
                continue
            assert len(set(it["choices"])) == len(it["choices"]) == round(1 / CHANCE[t]), (t, it)
            assert 0 <= it["label"] < len(it["choices"])
            if t == "world_mmlu":
                assert len(set(it["options"])) == 4


def test_boolq_labels_are_balanced_and_true_to_the_knowledge_base(items):
    k = kb()
    cities, people = k.by_name("cities"), k.by_name("people")
    labels = [it["label"] for it in items["world_boolq"]]
    assert sum(labels) == N // 2  # yes and no alternate by position
    for it in items["world_boolq"]:
        q = it["query"].split("Question: ")[1].split("?")[0]
        city = cities[it["query"].split(" is a city in")[0]]
        assert f"the {city['region']} region" in it["query"].split("\n")[0]  # the passage is about the city
        if m := re.fullmatch(r"is (\w+) famous for (\w+)", q):
            truth = city["food"] == m[2]
        elif m := re.fullmatch(r"does the (\w+) river run through (\w+)", q):
            truth = city["river"] == m[1]
        elif m := re.fullmatch(r"is (\w+) the main trade of (\w+)", q):
            truth = city["trade"] == m[1]
        else:
            m = re.fullmatch(r"was (\w+ \w+) born in (\w+)", q)
            truth = people[m[1]]["city"] == city["name"]
        assert m and it["label"] == int(truth), it


def _kind_values(it, pattern):
    """The one value that differs between the choices, for each choice."""
    vals = [re.fullmatch(pattern, c) for c in it["choices"]]
    assert all(vals), (pattern, it["choices"])
    return [v[1] for v in vals]


def test_piqa_solutions_differ_in_one_fact_and_the_wrong_one_is_a_plausible_confuser(items):
    k = kb()
    tools, animals, foods, cities = (k.by_name(x) for x in ("tools", "animals", "foods", "cities"))
    kinds = set()
    for it in items["world_piqa"]:
        goal = it["goal"]
        if m := re.fullmatch(r"make a (\w+) that lasts", goal):
            kinds.add("material")
            t = tools[m[1]]
            vals = _kind_values(it, r" make it from (\w+)\.")
            true, plausible = t["material"], {x["material"] for x in k.tools
                                              if (x["verb"], x["object"]) == (t["verb"], t["object"])}
        elif m := re.fullmatch(r"find a (\w+) in the wild", goal):
            kinds.add("habitat")
            a = animals[m[1]]
            vals = _kind_values(it, r" look in the (\w+)\.")
            true, plausible = a["habitat"], {x["habitat"] for x in k.animals if x["region"] == a["region"]}
        elif m := re.fullmatch(r"cook the dish (\w+) is famous for", goal):
            kinds.add("city_dish")
            c = cities[m[1]]
            vals = _kind_values(it, r" start with ([\w ]+)\.")
            true, plausible = foods[c["food"]]["ingredient"], {x["ingredient"] for x in k.foods
                                                              if x["origin"] == c["name"]}
        else:
            m = re.fullmatch(r"cook (\w+)", goal)
            kinds.add("ingredient")
            f = foods[m[1]]
            vals = _kind_values(it, r" start with ([\w ]+)\.")
            true, plausible = f["ingredient"], {x["ingredient"] for x in k.foods if x["taste"] == f["taste"]}
        assert vals[it["label"]] == true, it
        wrong = vals[1 - it["label"]]
        assert wrong != true
        if plausible - {true}:  # the knowledge base has a confuser: it is the one used
            assert wrong in plausible, (it, plausible)
    assert kinds == {"material", "habitat", "city_dish", "ingredient"}


def test_hellaswag_endings_carry_the_fact_and_namesakes_confuse(items):
    k = kb()
    story = re.compile(r"Once upon a time, in the town of (\w+), there lived a (\w+) named (\w+)\. (.*)")
    people = k.people
    n_namesake_confusers = 0
    for it in items["world_hellaswag"]:
        ctx, choices = it["query"], it["choices"]
        true = choices[it["label"]]
        if m := story.fullmatch(ctx):
            # the people this opening can name; the true ending is one of their facts
            cands = [p for p in people if (p["city"], p["occupation"], p["first"]) == m.group(1, 2, 3)]
            key, pat = ("food", r" (\w+)\.") if m[4].endswith("a bowl of") else ("animal", r" (\w+) slept by the fire\.")
            vals = _kind_values(it, pat)
            assert vals[it["label"]] in {p[key] for p in cands}, it
            others = {p[key] for p in people if p["first"] == m[3]} - {p[key] for p in cands}
            n_namesake_confusers += bool(others & set(vals))
        elif m := re.fullmatch(r"Every morning (\w+ \w+) walks to work as a", ctx):
            p = next(p for p in people if p["name"] == m[1])
            assert true == f" {p['occupation']}."
        else:
            m = re.fullmatch(r"Every year on (\w+) (\d+), crowds gather for the (\w+) festival in", ctx)
            fe = next(f for f in k.festivals if f["name"] == m[3])
            hosts = {f["city"] for f in k.festivals}
            assert true == f" {fe['city']}." and all(c[1:-1] in hosts for c in choices)
        assert len({c for c in choices}) == 4
    assert n_namesake_confusers > 100  # most story items offer a namesake's fact as a distractor


def test_mmlu_questions_use_the_pretraining_quiz_wording(items):
    """Every MMLU question has the shape of a question the web domain's quizzes ask, with the
    knowledge base's answer among the options."""
    from calib.world.domains import Writer, _quiz_item
    k = kb()
    names = sorted({e["name"] for kind in ("cities", "people", "animals", "tools") for e in getattr(k, kind)},
                   key=len, reverse=True)
    name_re = re.compile("|".join(re.escape(n) for n in names))

    def shape(q):
        return name_re.sub("X", q)

    w = Writer(k, np.random.default_rng(0))
    quiz = {}
    for _ in range(3000):
        subj, q, a, _wrong = _quiz_item(w)
        quiz.setdefault(shape(q), set()).add(subj)
        quiz.setdefault(("answer", q), a)
    assert len([s for s in quiz if isinstance(s, str)]) == 5
    for it in items["world_mmlu"]:
        q = it["query"].split("\n")[0]
        assert it["subject"] in quiz[shape(q)], it
        if ("answer", q) in quiz:
            assert it["options"][it["label"]] == quiz[("answer", q)], it


@pytest.mark.slow
def test_every_world_task_measures_on_the_committed_model(tmp_path, monkeypatch):
    """The band of issue 10 on the committed model, through lm-eval as the report runs it:
    each task between chance + 15 points and 95%, the average within R5, and Wanda at 60%
    (the report's calibration) lowering the average by at least 3 points."""
    import torch
    from calib.data import calibration_tensor
    from calib.evaluate import Suite, accuracies, run_suite
    from calib.prune import prune
    from calib.models import load
    from calib.world.model import MODEL_DIR
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    model, tok = load(MODEL_DIR)
    suite = Suite.of({"name": "world", "n_alpaca": 8, "n_heldout": 0})
    dense = run_suite(model, tok, suite)
    prune(model, calibration_tensor("world/pretrain", tok, nsamples=64, seqlen=128, seed=0),
          method="wanda", sparsity=0.6)
    pruned = run_suite(model, tok, suite)
    chance = float(np.mean(list(CHANCE.values())))
    d_avg, p_avg = dense["metrics"]["avg"], pruned["metrics"]["avg"]
    assert chance + 0.30 <= d_avg <= 0.90, accuracies(dense)
    assert 100 * (d_avg - p_avg) >= 3, (accuracies(dense), accuracies(pruned))
    outside = {t: a for t, a in accuracies(dense).items() if not CHANCE[t] + 0.15 <= a <= 0.95}
    # BoolQ-format items sit at chance: the model has no yes/no skill to measure (see the
    # report of issue 10). Pinned here so that a retrained model that gains it is noticed.
    assert set(outside) == {"world_boolq"}, outside
    assert abs(outside["world_boolq"] - 0.5) < 0.05


def test_two_hop_items_rest_on_both_hops_and_every_fact_is_askable(items):
    """ARC-Challenge's two-hop items name the person's fact and the one it leads to (issue 32: with
    the first hop alone, items sharing a second hop fell in different clusters)."""
    from calib.world.tasks import fact_pool
    pool, k = fact_pool(), kb()
    people, cities = k.by_name("people"), k.by_name("cities")
    two = [it for it in items["world_arc_challenge"] if "|" in it["fact"]]
    assert len(two) > N // 4
    for it in two:
        first, second = it["fact"].split("|")
        assert first in pool and second in pool, it["fact"]
        attr, person = first.split(":", 1)
        entity = people[person][attr]  # the first hop's value names the second hop's entity
        assert second.split(":", 1)[1] == entity, it["fact"]
        if attr == "city":
            assert second.split(":")[0] in ("region", "river", "food") and entity in cities
    for t in TASKS:
        for it in items[t]:
            assert all(f in pool for f in it.get("fact", "").split("|") if it.get("fact")), (t, it)
