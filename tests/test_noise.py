"""No noise: generation does not warn about transformers' deprecated cache argument,
and an evaluation outside a git checkout does not print git's "fatal: not a git
repository" (lm-eval's git-hash lookup). Both are silenced where they arise, not by
a filter: these tests let every warning and every byte of stderr through."""
from __future__ import annotations

import warnings

from factory import tiny_world_model


def test_generation_does_not_warn(tiny_tokenizer, tmp_path):
    from calib import synth
    model = tiny_world_model(600, 128)
    texts = ["the river runs north of the old town", "a short note about the harvest"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = synth.generate(model, tiny_tokenizer, texts, tmp_path / "g.jsonl", max_new_tokens=6, progress=False)
    assert len(rows) == 2
    noisy = [str(w.message) for w in caught if "past_key_values" in str(w.message) or
             issubclass(w.category, FutureWarning)]
    assert not noisy, noisy


def test_evaluation_outside_git_is_quiet(tiny_tokenizer, tmp_path, monkeypatch, capfd, cache_env):
    from calib.evaluate import lm_eval_tasks
    from calib.world.tasks import task_dir
    monkeypatch.chdir(tmp_path)  # not a git checkout
    model = tiny_world_model(600, 256)
    res = lm_eval_tasks(model, tiny_tokenizer, ["world_boolq"], include_path=str(task_dir()), limit=2,
                        batch_size=4)
    assert "acc" in res["tasks"]["world_boolq"]
    err = capfd.readouterr().err
    assert "not a git repository" not in err and "fatal:" not in err, err[-2000:]
