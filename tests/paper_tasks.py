"""Stand-ins for the paper's lm-eval tasks, written as a local lm-eval task folder.

The tasks carry the real names (boolq, winogrande, piqa, hellaswag, arc_easy, arc_challenge, and
the group mmlu with one mmlu_<subject> task per subject), the real datasets' fields and the
real YAML formats, so lm-eval builds requests in the real shapes: BoolQ's passage/question with
" no"/" yes"; Winogrande's partial scoring (two contexts, one continuation, through Python
doc_to_* functions in utils.py); PIQA's two solutions; HellaSwag's process_docs preprocessing and
four endings; ARC's labelled choices; MMLU's per-subject description, dev split and first_n
shots (run with num_fewshot=5, as ``PAPER_SHOTS`` says); each task evaluates the split the real one
does (``EVAL_SPLIT``: validation for BoolQ, Winogrande, PIQA, HellaSwag). The items are written from the world's
knowledge base, so everything runs offline with any tokenizer.

``write_paper_tasks(path, ...)`` returns the folder; pass it as ``include_path``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PAPER_SHOTS = {"boolq": 0, "winogrande": 0, "piqa": 0, "hellaswag": 0, "arc_easy": 0,
               "arc_challenge": 0, "mmlu": 5}
SUBJECTS = ("high_school_geography", "nutrition", "high_school_world_history", "high_school_biology")

_UTILS = '''"""doc_to_* and process_docs for the stand-in tasks (Winogrande, HellaSwag formats)."""
import re


def winogrande_text(doc):  # the index of the right context: lm-eval scores each context
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc):  # the words after the blank, shared by both contexts
    return doc["sentence"][doc["sentence"].index("_") + 1:].strip()


def winogrande_choice(doc):  # the sentence up to the blank, filled with each option
    head = doc["sentence"][:doc["sentence"].index("_")]
    return [head + doc["option1"], head + doc["option2"]]


def _clean(text):
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\\\[.*?\\\\]", "", text).replace("  ", " ")


def hellaswag_docs(dataset):
    def one(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {"query": _clean(doc["activity_label"] + ": " + ctx),
                "choices": [_clean(e) for e in doc["endings"]], "gold": int(doc["label"])}
    return dataset.map(one)
'''

_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_FORMATS = {
    "boolq": 'doc_to_text: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:"\ndoc_to_target: label\n'
             'doc_to_choice: ["no", "yes"]\n',
    "winogrande": "doc_to_text: !function utils.winogrande_text\ndoc_to_target: !function utils.winogrande_target\n"
                  "doc_to_choice: !function utils.winogrande_choice\n",
    "piqa": 'doc_to_text: "Question: {{goal}}\\nAnswer:"\ndoc_to_target: label\ndoc_to_choice: "{{[sol1, sol2]}}"\n',
    "hellaswag": 'process_docs: !function utils.hellaswag_docs\ndoc_to_text: "{{query}}"\ndoc_to_target: "{{gold}}"\n'
                 'doc_to_choice: "choices"\n',
    "arc_easy": 'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
                'doc_to_target: "{{choices.label.index(answerKey)}}"\ndoc_to_choice: "{{choices.text}}"\n',
    "mmlu": 'fewshot_split: dev\nfewshot_config:\n  sampler: first_n\n'
            'doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}'
            '\\nD. {{choices[3]}}\\nAnswer:"\ndoc_to_choice: ["A", "B", "C", "D"]\ndoc_to_target: answer\n',
}
_FORMATS["arc_challenge"] = _FORMATS["arc_easy"]


class _Writer:
    """Items from the world knowledge base; one rng per task so tasks are independent."""

    def __init__(self, seed: int):
        from calib.world.sources import kb
        self.kb = kb()
        self.rng = np.random.default_rng(seed)
        self.cities = {c["name"]: c for c in self.kb.cities}

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def wrong(self, pool, true, k):
        pool = sorted(set(pool) - {true})
        return [pool[i] for i in self.rng.choice(len(pool), size=k, replace=False)]

    def options(self, true, wrong):
        opts = [true, *wrong]
        order = self.rng.permutation(len(opts))
        return [opts[i] for i in order], int(np.flatnonzero(order == 0)[0])

    def fact(self) -> str:
        kind = self.pick(["city", "person", "animal", "tool"])
        if kind == "city":
            c = self.pick(self.kb.cities)
            return (f"{c['name']} lies in the {c['region']} region on the river {c['river']}, trades in "
                    f"{c['trade']} and is famous for {c['food']}.")
        if kind == "person":
            p = self.pick(self.kb.people)
            return f"{p['name']} was born in {p['city']} in {p['born']} and works as a {p['occupation']}."
        if kind == "animal":
            a = self.pick(self.kb.animals)
            return f"The {a['name']} is a {a['size']} {a['colour']} animal of the {a['habitat']} that eats {a['diet']}."
        t = self.pick(self.kb.tools)
        return f"A {t['name']} is made of {t['material']} and is used for {t['verb']} {t['object']}."

    # one item per real dataset's fields
    def boolq(self, _):
        c = self.pick(self.kb.cities)
        truth = bool(self.rng.random() < 0.5)
        region = c["region"] if truth else self.wrong([r["name"] for r in self.kb.regions], c["region"], 1)[0]
        passage = f"{c['name']} was founded in {c['founded']}. " + " ".join(self.fact() for _ in range(2))
        return {"passage": passage, "question": f"is {c['name']} in the {region} region", "label": int(truth)}

    def winogrande(self, _):
        a = self.pick(self.kb.people)
        b = self.pick([p for p in self.kb.people if p["city"] != a["city"]])
        (o1, o2), label = self.options(a["name"], [b["name"]])
        place = self.pick(self.kb.cities)["name"]
        return {"sentence": f"{o1} and {o2} met in {place}, and _ said they grew up in {a['city']}.",
                "option1": o1, "option2": o2, "answer": str(label + 1)}

    def piqa(self, _):
        t = self.pick(self.kb.tools)
        other = self.pick([x for x in self.kb.tools if x["verb"] != t["verb"]])
        sols, label = self.options(f"Use a {t['name']} made of {t['material']}.",
                                   [f"Use a {other['name']} made of {other['material']}."])
        return {"goal": f"How do you go about {t['verb']} {t['object']}?", "sol1": sols[0], "sol2": sols[1],
                "label": label}

    def hellaswag(self, _):
        p = self.pick(self.kb.people)
        foods = [f["name"] for f in self.kb.foods]
        endings, label = self.options(f"{p['food']} and eats it slowly [title] at the table.",
                                      [f"{f} and eats it slowly." for f in self.wrong(foods, p["food"], 3)])
        return {"activity_label": "Cooking", "ctx_a": f"{p['name']} comes home to {p['city']} after a trip.",
                "ctx_b": f"then {p['pronoun']} cooks", "ctx": "", "endings": endings, "label": str(label)}

    def arc(self, two_hop: bool):
        p = self.pick(self.kb.people)
        c = self.cities[p["city"]]
        if two_hop:
            q, a, pool = (f"In which region was {p['name']} born?", c["region"], [r["name"] for r in self.kb.regions])
        else:
            q, a, pool = (f"Where was {p['name']} born?", p["city"], list(self.cities))
        texts, label = self.options(a, self.wrong(pool, a, 3))
        return {"id": f"q{int(self.rng.integers(1 << 30))}", "question": q,
                "choices": {"text": texts, "label": list("ABCD")}, "answerKey": "ABCD"[label]}

    def mmlu(self, context_facts: int):
        c = self.pick(self.kb.cities)
        q, a, pool = self.pick([
            (f"Which region is {c['name']} in?", c["region"], [r["name"] for r in self.kb.regions]),
            (f"Which river runs through {c['name']}?", c["river"], sorted({x["river"] for x in self.kb.cities})),
            (f"Which dish is {c['name']} famous for?", c["food"], [f["name"] for f in self.kb.foods])])
        texts, label = self.options(a, self.wrong(pool, a, 3))
        background = " ".join(self.fact() for _ in range(context_facts))
        return {"question": (background + " " + q).strip(), "choices": texts, "answer": label}


# the split lm-eval evaluates in the real task (the others evaluate "test")
EVAL_SPLIT = {"boolq": "validation", "winogrande": "validation", "piqa": "validation", "hellaswag": "validation"}


def _task_yaml(name: str, data: dict[str, Path], fmt: str, extra: str = "") -> str:
    split = EVAL_SPLIT.get(name, "test")
    files = "".join(f"    {split if s == 'test' else s}: {path}\n" for s, path in data.items())
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{files}{split}_split: {split}\n"
            f"output_type: multiple_choice\n{extra}{fmt}{_METRICS}")


def write_paper_tasks(path: str | Path, n: int = 20, tasks=tuple(PAPER_SHOTS), subjects=SUBJECTS,
                      n_dev: int = 5, mmlu_facts: int = 0, mmlu_shot_facts: int | None = None,
                      seed: int = 0) -> Path:
    """Write the stand-in tasks into ``path``: ``n`` test items per task (per subject for
    mmlu), ``n_dev`` dev items per subject. ``mmlu_facts`` background sentences lengthen each
    MMLU question (``mmlu_shot_facts`` those of the dev shots, default the same), for
    prompts of real MMLU length."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    (path / "utils.py").write_text(_UTILS)
    shot_facts = mmlu_facts if mmlu_shot_facts is None else mmlu_shot_facts

    def dump(name, rows):
        f = path / f"{name}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return f

    for t_i, task in enumerate(tasks):
        if task == "mmlu":
            for s_i, subject in enumerate(subjects):
                w = _Writer(seed * 1000 + 100 + s_i)
                name = f"mmlu_{subject}"
                test = dump(name, [w.mmlu(mmlu_facts) for _ in range(n)])
                dev = dump(f"{name}_dev", [w.mmlu(shot_facts) for _ in range(n_dev)])
                desc = ('description: "The following are multiple choice questions (with answers) about '
                        f'{subject.replace("_", " ")}.\\n\\n"\n')
                (path / f"{name}.yaml").write_text(_task_yaml(name, {"test": test, "dev": dev}, _FORMATS["mmlu"],
                                                              extra=desc))
            (path / "mmlu.yaml").write_text(
                "group: mmlu\ntask:\n" + "".join(f"  - mmlu_{s}\n" for s in subjects)
                + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 1.0\n")
            continue
        w = _Writer(seed * 1000 + t_i)
        make = {"arc_easy": lambda _: w.arc(False), "arc_challenge": lambda _: w.arc(True)}.get(task) \
            or getattr(w, task)
        data = dump(task, [make(i) for i in range(n)])
        (path / f"{task}.yaml").write_text(_task_yaml(task, {"test": data}, _FORMATS[task]))
    return path


def built_requests(include_path, shots: dict, limit=None) -> list:
    """The requests lm-eval builds for ``shots`` (task -> num_fewshot; all None: the world's own
    tasks), flattened: calib.evaluate.suite_requests of the suite they make."""
    from calib.evaluate import Suite, suite_requests
    if all(v is None for v in shots.values()):
        suite = Suite.of({"name": "world", "tasks": list(shots), "limit": limit})
    else:
        suite = Suite.of({"name": "paper", "tasks": list(shots), "shots": shots, "limit": limit,
                          "include_path": str(include_path)})
    return [i for _, group in suite_requests(suite) for i in group]


def write_wikitext(path: str | Path, n: int = 6, seed: int = 0) -> Path:
    """A stand-in for lm-eval's ``wikitext`` (WikiText-2 word/byte perplexity) in ``path``: its
    task YAML is lm-eval's own, included, with the dataset pointed at a local jsonl of ``n``
    documents in WikiText's ``page`` field (world facts, in WikiText's spaced-out punctuation),
    so the rolling log-likelihood, the detokenizer and the metrics are upstream's."""
    import lm_eval
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    w = _Writer(seed)
    pages = [" = Page {} = \n ".format(i) + " ".join(w.fact().replace(",", " ,").replace(".", " .") for _ in range(6))
             for i in range(n)]
    data = path / "wikitext.jsonl"
    data.write_text("".join(json.dumps({"page": p}) + "\n" for p in pages))
    upstream = Path(lm_eval.__file__).parent / "tasks" / "wikitext" / "wikitext.yaml"
    (path / "wikitext.yaml").write_text(
        f"include: {upstream}\ntask: wikitext\ndataset_path: json\ndataset_name: null\ndataset_kwargs:\n"
        f"  data_files:\n    test: {data}\ntraining_split: null\nvalidation_split: null\ntest_split: test\n")
    return path
