"""The paper suite can add lm-eval's WikiText-2 perplexity (``wikitext``): run here on a stand-in
task that includes lm-eval's own YAML (its rolling log-likelihood, detokenizer and metrics) over a
local jsonl, with both scorers."""
from __future__ import annotations

import json
import math
import re

from calib.evaluate import PAPER_TASKS, Suite, run_suite
from paper_tasks import write_wikitext


def test_wikitext_is_optional_in_the_paper_suite():
    assert Suite.of("paper").tasks == tuple(PAPER_TASKS)
    s = Suite.of({"name": "paper", "tasks": ["boolq", "wikitext"]})
    assert s.tasks == ("boolq", "wikitext") and dict(s.shots)["wikitext"] == 0


def test_wikitext_perplexity_on_the_standin(tmp_path, tiny_llama, tiny_tokenizer):
    d = write_wikitext(tmp_path / "tasks", n=4)
    suite = {"name": "paper", "tasks": ["wikitext"], "n_alpaca": 0, "include_path": str(d)}
    fast = run_suite(tiny_llama, tiny_tokenizer, suite)
    hflm = run_suite(tiny_llama, tiny_tokenizer, suite, scorer="hflm")
    m = fast["metrics"]
    assert set(m) == {"wikitext/word_perplexity", "wikitext/byte_perplexity", "wikitext/bits_per_byte"}
    assert m == hflm["metrics"] and "avg" not in m  # a perplexity is no accuracy
    assert fast["meta"]["task_versions"]["wikitext"] == 2.0  # upstream's task, included
    pages = [json.loads(x)["page"] for x in (d / "wikitext.jsonl").read_text().splitlines()]
    words = sum(len(re.split(r"\s+", p)) for p in pages)
    nbytes = sum(len(p.encode()) for p in pages)
    # one total log-likelihood behind all three: per word, per byte, in bits per byte
    assert math.isclose(math.log(m["wikitext/word_perplexity"]) * words,
                        math.log(m["wikitext/byte_perplexity"]) * nbytes, rel_tol=1e-9)
    assert math.isclose(m["wikitext/bits_per_byte"], math.log2(m["wikitext/byte_perplexity"]), rel_tol=1e-9)
    assert 1 < m["wikitext/byte_perplexity"] < len(tiny_tokenizer)
