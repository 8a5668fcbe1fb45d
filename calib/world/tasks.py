"""World evaluation suites that mirror the paper's.

* ``alpaca_texts``: held-out instruction-response pairs (the Alpaca-perplexity role).
* Seven lm-eval multiple-choice tasks in the formats of BoolQ, Winogrande, PIQA,
  HellaSwag, ARC-Easy, ARC-Challenge and MMLU (5-shot). Every item is answerable
  only from knowledge-base facts that pretraining documents state; ARC-Challenge
  items are two-hop (person -> city -> region, ...).

The world model recalls a fact best in the wording pretraining states it in, and
barely across paraphrases, so the makers choose wording and distractors on purpose:
MMLU questions use the wording of the web domain's quizzes (its only multiple-choice
text); HellaSwag scenes open like the world's stories, and endings carry the fact
alone (a filler clause adds noise that varies with the entity); PIQA and HellaSwag
distractors are plausible confusers (a namesake's pet, another tool for the same job)
where the knowledge base has one. BoolQ labels are balanced by construction.

``write_task_dir(path)`` writes a self-contained lm-eval task folder (one YAML
and one jsonl per task, no Python), which ``lm_eval --include_path`` and
``lm_eval.tasks.TaskManager(include_path=...)`` read like any other.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from calib.world.kb import HABITATS, INGREDIENTS, MATERIALS, OCCUPATIONS

N_ALPACA = 1000
N_HELDOUT = 200  # held-out pretraining documents an evaluation scores (the realism report's R1 reads more)
N_ITEMS = 500
TASK_SEED = 7
TASKS = ["world_boolq", "world_winogrande", "world_piqa", "world_hellaswag",
         "world_arc_easy", "world_arc_challenge", "world_mmlu"]
CHANCE = {"world_boolq": 0.5, "world_winogrande": 0.5, "world_piqa": 0.5, "world_hellaswag": 0.25,
          "world_arc_easy": 0.25, "world_arc_challenge": 0.25, "world_mmlu": 0.25}
# the lm-eval task each world task stands in for
PAPER_TASK = {"world_boolq": "boolq", "world_winogrande": "winogrande", "world_piqa": "piqa",
              "world_hellaswag": "hellaswag", "world_arc_easy": "arc_easy",
              "world_arc_challenge": "arc_challenge", "world_mmlu": "mmlu"}


ALPACA_SOURCE, HELDOUT_SOURCE = "world/instructions", "world/pretrain"  # the evaluation texts' sources


@lru_cache(maxsize=1)
def _alpaca() -> tuple[str, ...]:
    from calib.world import sources
    return tuple(sources.documents(ALPACA_SOURCE, N_ALPACA, seed=0, split="eval"))


def alpaca_texts(n: int = N_ALPACA) -> list[str]:
    """Held-out instruction-response pairs in the Alpaca role (never in pretraining)."""
    return list(_alpaca()[:n])


def heldout_texts(n: int = N_HELDOUT) -> list[str]:
    """Held-out documents of the pretraining mixture (split "calib", data seed 1000: never
    trained on, never drawn as calibration data, whose pools use data seed 0)."""
    from calib.world import sources
    return sources.documents(HELDOUT_SOURCE, n, seed=1000, split="calib")


def version() -> str:
    """A hash of what every world evaluation text depends on: this file's item makers and the
    two sources it draws documents from (Alpaca-role and held-out; their versions cover the
    knowledge base and the domain writers). Results measured on other tasks never count as
    these; another source's edit leaves it unchanged."""
    from calib.world import sources
    h = hashlib.sha256((Path(__file__).parent / "tasks.py").read_bytes())
    for name in (ALPACA_SOURCE, HELDOUT_SOURCE):
        h.update(sources.version(name).encode())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------ item makers
def fact(entity: dict, attribute: str) -> str:
    """The knowledge-base fact an item rests on, as 'attribute:entity' ('city:Ada Brun').
    Entity names are unique across the knowledge base. Items built on one fact succeed or fail
    together, so verdicts resample facts, not items; a two-hop item rests on two (``hops``)."""
    return f"{attribute}:{entity['name']}"


def hops(*facts: str) -> str:
    """The facts a multi-hop item rests on, as one ``fact`` field: joined by "|", in hop order
    (``calib.book.designs.fact_clusters`` joins the clusters of all of them)."""
    return "|".join(facts)


# the facts the item makers ask about: entity kind -> attributes (``fact(entity, attribute)``)
ASKED = {"cities": ("region", "food", "river", "trade"), "people": ("city", "occupation", "animal", "tool", "food"),
         "animals": ("habitat",), "tools": ("material", "purpose"), "foods": ("ingredient",), "festivals": ("city",)}


@lru_cache(maxsize=1)
def fact_pool() -> frozenset:
    """Every fact an item could rest on: what more items could ask about (the task makers draw
    their items from these)."""
    from calib.world.sources import kb
    k = kb()
    return frozenset(fact(e, a) for kind, attrs in ASKED.items() for e in getattr(k, kind) for a in attrs)


class _Maker:
    def __init__(self, seed: int):
        import numpy as np  # here, so `calib --help` does not load it

        from calib.world.sources import kb
        self.kb = kb()
        self.rng = np.random.default_rng([TASK_SEED, seed])
        self.cities = self.kb.by_name("cities")
        self.people = self.kb.by_name("people")
        self.animals = self.kb.by_name("animals")
        self.tools = self.kb.by_name("tools")
        self.foods = self.kb.by_name("foods")
        self.namesakes: dict[str, list[dict]] = {}  # first name -> people (first names are shared)
        for p in self.kb.people:
            self.namesakes.setdefault(p["first"], []).append(p)
        self.index = 0  # the position of the item being made (set by make_items)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def others(self, pool, true, k):
        pool = sorted(set(pool) - {true})
        idx = self.rng.choice(len(pool), size=k, replace=False)
        return [pool[i] for i in idx]

    def confusers(self, true, plausible, pool, k):
        """``k`` wrong values: first the plausible confusers (in their given order, without
        repeats), then uniform draws from ``pool``."""
        out = []
        for v in plausible:
            if v != true and v not in out:
                out.append(v)
        out = out[:k]
        return out + self.others(sorted(set(pool) - set(out)), true, k - len(out))

    def shuffled(self, true, wrong):
        opts = [true] + list(wrong)
        order = self.rng.permutation(len(opts))
        return [opts[i] for i in order], int((order == 0).argmax())

    # (question, answer, distractor pool, fact): one-hop facts
    def direct_fact(self):
        k = self.pick(["city_region", "city_food", "person_city", "person_occ", "animal_hab", "tool_mat",
                       "food_ingr", "city_river"])
        kb = self.kb
        if k == "city_region":
            c = self.pick(kb.cities)
            return f"Which region is {c['name']} in?", c["region"], [r["name"] for r in kb.regions], \
                fact(c, "region")
        if k == "city_food":
            c = self.pick(kb.cities)
            return f"Which dish is {c['name']} famous for?", c["food"], [f["name"] for f in kb.foods], \
                fact(c, "food")
        if k == "person_city":
            p = self.pick(kb.people)
            return f"Where was {p['name']} born?", p["city"], [c["name"] for c in kb.cities], fact(p, "city")
        if k == "person_occ":
            p = self.pick(kb.people)
            return f"What does {p['name']} do for a living?", p["occupation"], OCCUPATIONS, fact(p, "occupation")
        if k == "animal_hab":
            a = self.pick(kb.animals)
            return f"Where does the {a['name']} live?", a["habitat"], HABITATS, fact(a, "habitat")
        if k == "tool_mat":
            t = self.pick(kb.tools)
            return f"What is a {t['name']} made of?", t["material"], MATERIALS, fact(t, "material")
        if k == "food_ingr":
            f = self.pick(kb.foods)
            return f"What is the main ingredient of {f['name']}?", f["ingredient"], \
                sorted({x["ingredient"] for x in kb.foods}), fact(f, "ingredient")
        c = self.pick(kb.cities)
        return f"Which river runs through {c['name']}?", c["river"], sorted({x["river"] for x in kb.cities}), \
            fact(c, "river")

    def two_hop_fact(self):
        """As direct_fact, two hops from a person; the item rests on both hops' facts, joined by
        "|" (the person's, then the one it leads to), so resampling keeps them together."""
        k = self.pick(["person_region", "person_river", "pet_habitat", "tool_material", "food_taste"])
        p = self.pick(self.kb.people)
        c = self.cities[p["city"]]
        if k == "person_region":
            return f"In which region was {p['name']} born?", c["region"], [r["name"] for r in self.kb.regions], \
                hops(fact(p, "city"), fact(c, "region"))
        if k == "person_river":
            return f"Which river flows through the city where {p['name']} was born?", c["river"], \
                sorted({x["river"] for x in self.kb.cities}), hops(fact(p, "city"), fact(c, "river"))
        if k == "pet_habitat":
            a = self.animals[p["animal"]]
            return f"Where does the kind of animal that {p['name']} keeps as a pet live in the wild?", \
                a["habitat"], HABITATS, hops(fact(p, "animal"), fact(a, "habitat"))
        if k == "tool_material":
            t = self.tools[p["tool"]]
            return f"What is the favourite tool of {p['name']} made of?", t["material"], \
                MATERIALS, hops(fact(p, "tool"), fact(t, "material"))
        return f"Which dish is the home city of {p['name']} famous for?", c["food"], \
            [f["name"] for f in self.kb.foods], hops(fact(p, "city"), fact(c, "food"))

    def quiz_fact(self):
        """(subject, question, answer, distractor pool, fact) in the wording of the web domain's
        quizzes (``domains._quiz_item``), the only multiple-choice text pretraining has."""
        kb = self.kb
        k = self.pick(["geography", "cuisine", "biology", "technology", "history"])
        if k == "geography":
            c = self.pick(kb.cities)
            return k, f"In which region is {c['name']}?", c["region"], [r["name"] for r in kb.regions], \
                fact(c, "region")
        if k == "cuisine":
            c = self.pick(kb.cities)
            return k, f"Which dish is {c['name']} famous for?", c["food"], [f["name"] for f in kb.foods], \
                fact(c, "food")
        if k == "biology":
            a = self.pick(kb.animals)
            return k, f"Where does the {a['name']} live?", a["habitat"], HABITATS, fact(a, "habitat")
        if k == "technology":
            t = self.pick(kb.tools)
            return k, f"What is a {t['name']} used for?", f"{t['verb']} {t['object']}", \
                sorted({f"{x['verb']} {x['object']}" for x in kb.tools}), fact(t, "purpose")
        p = self.pick(kb.people)
        return k, f"Where was {p['name']} born?", p["city"], [c["name"] for c in kb.cities], fact(p, "city")


def _arc(m: _Maker, two_hop: bool) -> dict:
    q, a, pool, f = m.two_hop_fact() if two_hop else m.direct_fact()
    choices, label = m.shuffled(a, m.others(pool, a, 3))
    return {"query": f"Question: {q}\nAnswer:", "choices": [" " + c for c in choices], "label": label, "fact": f}


def _boolq(m: _Maker) -> dict:
    """A passage about a city (in the encyclopedia's wording) and a yes/no question about a
    fact the passage does not state. Yes and no alternate by position, so the labels are
    balanced however often true questions repeat."""
    kb = m.kb
    c = m.pick(kb.cities)
    passage = (f"{c['name']} is a city in the {c['region']} region, with a population of about "
               f"{c['population']:,}. It was founded in {c['founded']}.")
    truth = m.index % 2 == 0
    k = m.pick(["food", "river", "trade", "person"])
    f = fact(c, k)
    if k == "food":
        val = c["food"] if truth else m.others([f["name"] for f in kb.foods], c["food"], 1)[0]
        q = f"is {c['name']} famous for {val}"
    elif k == "river":
        val = c["river"] if truth else m.others(sorted({x["river"] for x in kb.cities}), c["river"], 1)[0]
        q = f"does the {val} river run through {c['name']}"
    elif k == "trade":
        val = c["trade"] if truth else m.others(sorted({x["trade"] for x in kb.cities}), c["trade"], 1)[0]
        q = f"is {val} the main trade of {c['name']}"
    else:
        natives = [p for p in kb.people if p["city"] == c["name"]]
        if truth and natives:
            p = m.pick(natives)
        else:
            p = m.pick([p for p in kb.people if p["city"] != c["name"]])
        truth = p["city"] == c["name"]
        q, f = f"was {p['name']} born in {c['name']}", fact(p, "city")
    return {"query": f"{passage}\nQuestion: {q}?\nAnswer:", "choices": [" no", " yes"], "label": int(truth),
            "fact": f}


def _winogrande(m: _Maker) -> dict:
    kb = m.kb
    a = m.pick(kb.people)
    k = m.pick(["occupation", "city", "animal", "tool"])
    key = {"occupation": "occupation", "city": "city", "animal": "animal", "tool": "tool"}[k]
    b = m.pick([p for p in kb.people if p[key] != a[key]])
    place = m.pick(kb.cities)["name"]
    pred = {"occupation": f"works as a {a['occupation']}.",
            "city": f"was born in {a['city']}.",
            "animal": f"keeps a {a['animal']} as a pet.",
            "tool": f"always carries a {a['tool']}."}[k]
    opts, label = m.shuffled(a["name"], [b["name"]])
    intro = m.pick(["met at the market in", "travelled together to", "shared a table in", "were neighbours in"])
    sentence = f"{opts[0]} and {opts[1]} {intro} {place}. Of the two, _ {pred}"
    idx = sentence.index("_")
    return {"sentence": sentence, "option1": opts[0], "option2": opts[1], "label": label,
            "contexts": [sentence[:idx] + o for o in opts], "suffix": " " + sentence[idx + 1:].strip(),
            "fact": fact(a, key)}


def _piqa(m: _Maker) -> dict:
    """A practical goal and two solutions that differ in one knowledge-base value. The wrong
    value is a plausible confuser: what a related entity would need."""
    kb = m.kb
    k = m.pick(["material", "habitat", "ingredient", "city_dish"])
    if k == "material":  # confuser: the material of another tool for the same job
        t = m.pick(kb.tools)
        same_job = [x["material"] for x in kb.tools if (x["verb"], x["object"]) == (t["verb"], t["object"])]
        goal, true = f"make a {t['name']} that lasts", t["material"]
        wrong = m.confusers(true, same_job, MATERIALS, 1)[0]
        sols, f = [f" make it from {true}.", f" make it from {wrong}."], fact(t, "material")
    elif k == "habitat":  # confuser: the habitat of another animal native to the same region
        a = m.pick(kb.animals)
        neighbours = [x["habitat"] for x in kb.animals if x["region"] == a["region"]]
        goal, true = f"find a {a['name']} in the wild", a["habitat"]
        wrong = m.confusers(true, m.rng.permutation(neighbours).tolist(), HABITATS, 1)[0]
        sols, f = [f" look in the {true}.", f" look in the {wrong}."], fact(a, "habitat")
    elif k == "ingredient":  # confuser: the main ingredient of another dish of the same taste
        food = m.pick(kb.foods)
        alike = [x["ingredient"] for x in kb.foods if x["taste"] == food["taste"]]
        goal, true = f"cook {food['name']}", food["ingredient"]
        wrong = m.confusers(true, m.rng.permutation(alike).tolist(), INGREDIENTS, 1)[0]
        sols, f = [f" start with {true}.", f" start with {wrong}."], fact(food, "ingredient")
    else:  # two hops, city -> dish -> ingredient; confuser: a dish that comes from the city
        c = m.pick(kb.cities)
        local = [x["ingredient"] for x in kb.foods if x["origin"] == c["name"]]
        goal, true = f"cook the dish {c['name']} is famous for", m.foods[c["food"]]["ingredient"]
        wrong = m.confusers(true, m.rng.permutation(local).tolist(), INGREDIENTS, 1)[0]
        sols, f = [f" start with {true}.", f" start with {wrong}."], fact(c, "food")
    choices, label = m.shuffled(sols[0], sols[1:])
    return {"goal": goal, "query": f"Goal: {goal}\nSolution:", "choices": choices, "label": label, "fact": f}


def _hellaswag(m: _Maker) -> dict:
    """A scene and four endings that differ in one knowledge-base value. Two scenes open
    like the world's stories; the wrong endings are first the facts of people who share
    the first name (the story names the person by first name, city and trade only)."""
    kb = m.kb
    k = m.pick(["dinner", "pet", "work", "festival"])
    p = m.pick(kb.people)
    namesakes = [q for q in m.namesakes[p["first"]] if q is not p]
    story = f"Once upon a time, in the town of {p['city']}, there lived a {p['occupation']} named {p['first']}."
    if k == "dinner":  # confusers also include the dish the city is famous for
        ctx = f"{story} Together, they shared a bowl of"
        plausible = [q["food"] for q in namesakes] + [m.cities[p["city"]]["food"]]
        wrong = m.confusers(p["food"], plausible, [f["name"] for f in kb.foods], 3)
        true, wrong, f = f" {p['food']}.", [f" {w}." for w in wrong], fact(p, "food")
    elif k == "pet":
        ctx = f"{story} The"
        wrong = m.confusers(p["animal"], [q["animal"] for q in namesakes], [a["name"] for a in kb.animals], 3)
        true, wrong = f" {p['animal']} slept by the fire.", [f" {w} slept by the fire." for w in wrong]
        f = fact(p, "animal")
    elif k == "work":
        ctx = f"Every morning {p['name']} walks to work as a"
        wrong = m.confusers(p["occupation"], [q["occupation"] for q in namesakes], OCCUPATIONS, 3)
        true, wrong, f = f" {p['occupation']}.", [f" {w}." for w in wrong], fact(p, "occupation")
    else:  # confusers: cities that hold other festivals
        fe = m.pick(kb.festivals)
        ctx = f"Every year on {fe['month']} {fe['day']}, crowds gather for the {fe['name']} festival in"
        hosts = sorted({x["city"] for x in kb.festivals})
        wrong = m.others(hosts, fe["city"], 3)
        true, wrong, f = f" {fe['city']}.", [f" {w}." for w in wrong], fact(fe, "city")
    choices, label = m.shuffled(true, wrong)
    return {"ctx": ctx, "query": ctx, "choices": choices, "label": label, "fact": f}


def _mmlu(m: _Maker) -> dict:
    subject, q, a, pool, f = m.quiz_fact()
    choices, label = m.shuffled(a, m.others(pool, a, 3))
    query = q + "\n" + "\n".join(f"{l}. {c}" for l, c in zip("ABCD", choices)) + "\nAnswer:"
    return {"subject": subject, "query": query, "options": choices, "choices": [" A", " B", " C", " D"],
            "label": label, "fact": f}


_MAKERS = {"world_boolq": _boolq, "world_winogrande": _winogrande, "world_piqa": _piqa,
           "world_hellaswag": _hellaswag, "world_arc_easy": lambda m: _arc(m, False),
           "world_arc_challenge": lambda m: _arc(m, True), "world_mmlu": _mmlu}


def make_items(task: str, n: int = N_ITEMS, split: str = "test") -> list[dict]:
    """``n`` distinct items of one task (the 'dev' split feeds MMLU's 5 shots)."""
    seed = TASKS.index(task) * 10 + (0 if split == "test" else 1)
    m = _Maker(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        m.index = len(out)
        item = _MAKERS[task](m)
        key = json.dumps({k: v for k, v in item.items() if k != "fact"}, sort_keys=True)
        tries += 1
        if key in seen and tries < 50 * n:
            continue
        seen.add(key)
        out.append(item)
    return out


# ------------------------------------------------------------------------- lm-eval YAML
# The choices carry their own leading space (" yes", " A"), so the delimiter lm-eval puts
# between context and choice must be empty; its default " " would score "Answer:  yes".
_COMMON = """output_type: multiple_choice
target_delimiter: ""
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
{extra_files}test_split: test
{body}metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 2.0  # 2.0: item makers of issue 10 (balanced BoolQ, confuser distractors, quiz-worded MMLU)
  world_kb_seed: 0
  world_task_seed: {seed}
"""


def _yaml(task: str, data: Path, dev: Path | None) -> str:
    if task == "world_winogrande":
        body = 'doc_to_text: "{{label}}"\ndoc_to_target: suffix\ndoc_to_choice: contexts\n'
    elif task == "world_mmlu":
        body = ('fewshot_split: dev\nnum_fewshot: 5\nfewshot_config:\n  sampler: first_n\n'
                'description: "The following are multiple choice questions (with answers) about {{subject}}.\\n\\n"\n'
                'doc_to_text: query\ndoc_to_target: label\ndoc_to_choice: choices\n')
    else:
        body = "doc_to_text: query\ndoc_to_target: label\ndoc_to_choice: choices\n"
    extra = f"    dev: {dev}\n" if dev else ""
    return f"task: {task}\ntag: world\n" + _COMMON.format(data=data, extra_files=extra, body=body, seed=TASK_SEED)


def write_task_dir(path: str | Path, n: int = N_ITEMS) -> Path:
    """Write one YAML and one jsonl per task into ``path`` (absolute data paths)."""
    from calib.io import check_output
    path = check_output(path, "task folder", folder=True).resolve()
    path.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        data = path / f"{task}.jsonl"
        data.write_text("".join(json.dumps(x) + "\n" for x in make_items(task, n)))
        dev = None
        if task == "world_mmlu":
            dev = path / f"{task}_dev.jsonl"
            dev.write_text("".join(json.dumps(x) + "\n" for x in make_items(task, 25, split="dev")))
        (path / f"{task}.yaml").write_text(_yaml(task, data, dev))
    return path


def task_dir(n: int = N_ITEMS) -> Path:
    """The task folder in the cache, written once per ``version()``."""
    from calib.cache import cache_dir
    from calib.io import atomic_folder
    path = cache_dir() / "lm_eval_tasks" / f"world-{version()}-{n}"
    if not (path / "world_mmlu.yaml").is_file():
        with atomic_folder(path, replace=False) as tmp:  # a race loser's copy is identical: dropped
            write_task_dir(tmp, n)
            for f in tmp.glob("*.yaml"):  # data paths must point at the final folder
                f.write_text(f.read_text().replace(str(tmp.resolve()), str(path.resolve())))
    return path
