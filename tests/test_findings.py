"""The book's findings page: every declared headline recomputed (calib.book.findings), the
intro notebook that shows them, and the README block the toy book's run copies them into."""
import nbformat
import pandas as pd
import pytest
import yaml

from calib.book import claims, findings, runner
from calib.book import statistics as st
from calib.errors import CalibError


def _verdict(acc, log="inconclusive"):
    parts = (st.Finding(acc, effect=1.0, ci=(0.2, 1.8), p=0.01 if acc != "inconclusive" else 0.4, metric="acc"),
             st.Finding(log, effect=9.0, ci=(3.0, 15.0), p=0.001, metric="logscore", unit="nats×100"))
    return st.Verdict(claim="c", parts=parts, outcomes={"acc": acc, "logscore": log})


def test_the_table_says_which_headlines_the_sensitivity_changes():
    md = findings.table({"fig1_methods": (_verdict("reproduced"), _verdict("inconclusive")),
                         "fig3_amount": (_verdict("inconclusive"), _verdict("inconclusive")),
                         "fig5_mink": (_verdict("inconclusive"), None)})
    assert md.splitlines()[0].startswith("| chapter | headline | primary metric |")
    assert md.endswith("Without world_mmlu (2 headlines have the variant), 1 outcomes change: fig1_methods on the "
                       "accuracy (reproduced -> inconclusive).")
    same = findings.table({"fig3_amount": (_verdict("inconclusive"), _verdict("inconclusive"))})
    assert same.endswith("no headline changes its outcome on its primary or secondary metric.")
    assert "3 headlines, 3 independent pieces of evidence" in md


def test_only_world_task_headlines_have_a_sensitivity_variant():
    assert findings.sensitive("fig1_methods") and findings.sensitive("beyond")
    assert not findings.sensitive("fig5_mink") and not findings.sensitive("real_model")
    assert findings.headline("real_model", {}, df=pd.DataFrame(), sensitivity=True) is None
    assert "none" in findings.sensitivity_text("fig5_mink", _verdict("reproduced"), None)
    text = findings.sensitivity_text("fig1_methods", _verdict("reproduced", "reproduced"), _verdict("inconclusive"))
    assert "without world_mmlu" in text and "inconclusive: +1.00 points" in text and "(with it: reproduced)" in text


def test_fig5_windows_are_the_self_generated_and_the_three_other_corpora():
    from calib.book import settings
    from calib.book.predict import SELF_GENERATED
    from calib.book.profiles import label, role
    s = settings("smoke")
    scores = pd.DataFrame({"data": [label(x) for x in s["sources"]] + [SELF_GENERATED], "Min-50%++": range(5)})
    w = findings.fig5_windows(scores, s)
    assert list(w.columns) == ["data", "score"] and len(w) == 4
    assert label(next(x for x in s["sources"] if role(x) == "dclm")) not in set(w.data)


def test_the_intro_is_a_page_the_runner_executes_last():
    assert runner.PAGES[-1] == runner.INTRO and runner.INTRO not in runner.CHAPTERS
    toc = yaml.safe_load((runner.ROOT / "_toc.yml").read_text())
    assert toc["root"] == f"book/{runner.INTRO}" and not (runner.ROOT / "book" / f"{runner.INTRO}.md").exists()
    nb = nbformat.read(runner.notebook(runner.INTRO), as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "profile = " in params[0].source
    assert [c for c in nb.cells if "findings-table" in c.metadata.get("tags", [])], "the README copies this cell"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it unexecuted"
    runner._check("toy", [runner.INTRO])  # --chapter intro is a page
    with pytest.raises(CalibError, match="chapter 'intr'.*intro"):
        runner._check("toy", ["intr"])


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display(...)", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": "| chapter |\n|---|\n| fig1 |"})])
    cell.metadata["tags"] = ["findings-table"]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    readme = tmp_path / "README.md"
    start, end = runner.FINDINGS
    readme.write_text(f"# calib\n\n## Findings\n\ntext\n\n{start}\nold table\n{end}\n\n## Docs\n")
    assert runner._readme_findings(nb, readme)
    assert readme.read_text() == f"# calib\n\n## Findings\n\ntext\n\n{start}\n| chapter |\n|---|\n| fig1 |\n{end}\n\n## Docs\n"
    readme.write_text("# no block\n")
    assert not runner._readme_findings(nb, readme) and readme.read_text() == "# no block\n"


def test_the_readme_has_the_block():
    text = runner.README.read_text()
    assert all(m in text for m in runner.FINDINGS) and text.index(runner.FINDINGS[0]) < text.index(runner.FINDINGS[1])


def test_every_claim_is_a_chapter_with_a_headline_function():
    from calib.book.chapters import CHAPTERS
    for name in claims.CLAIMS:
        assert name in CHAPTERS and CHAPTERS[name].verdict_function is not None, name


def test_the_table_and_the_plot_show_the_headlines_own_outcome_not_the_chapters():
    """A reproduced headline in a chapter whose other part is inconclusive reads 'reproduced' in
    the findings (the chapter's own page says 'partly')."""
    import matplotlib
    matplotlib.use("Agg")
    from calib.book import figures, verdicts
    parts = (st.Finding("reproduced", effect=1.0, ci=(0.2, 1.8), p=0.01, metric="acc"),
             st.Finding("inconclusive", effect=0.1, ci=(-0.5, 0.7), p=0.6, metric="acc"))
    v = st.Verdict(claim="c", parts=parts, outcomes={"acc": "partly"})
    row = next(line for line in verdicts.findings_table({"fig3_amount": (v, None)}).splitlines()
               if line.startswith("| fig3_amount"))
    assert "| reproduced: +1.00 points [+0.20, +1.80] |" in row and "partly" not in row
    fig = figures.findings_forest({"fig3_amount": (v, None)})
    assert fig.axes[0].get_yticklabels()[0].get_text() == "fig3_amount: reproduced"
