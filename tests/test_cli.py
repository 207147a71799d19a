"""The CLI: every command has help; outputs have the documented shape; errors exit non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from funnelrec.cli import app

runner = CliRunner()
COMMANDS = sorted(get_command(app).commands)


def test_expected_commands_exist() -> None:
    assert {"demo", "inspect", "evaluate", "ingest"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0
    assert get_command(app).commands[command].help, f"{command} lacks a docstring"


def test_evaluate_writes_documented_json(funnel_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(funnel_csv),
            "--models",
            "pop,repeat,markov",
            "--split",
            "loo",
            "--target",
            "purchase",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["split"] == "loo" and data["target"] == "purchase"
    assert set(data["models"]) == {"pop", "repeat", "markov"}
    for m in data["models"].values():
        assert 0 <= m["NDCG@10"] <= m["HR@10"] <= 1
        assert {"HR@5", "HR@20", "NDCG@5", "NDCG@20", "MRR", "coverage@10"} <= set(m)
    by_len = data["details"]["models"]["repeat"]["test"]["by_history_length"]
    assert set(by_len) <= {"1-3", "4-10", "11-50", "50+"}
    assert out.with_suffix(".html").exists()
    assert "repeat" in res.output


def test_evaluate_unknown_model_fails_clearly(funnel_csv: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["evaluate", str(funnel_csv), "--models", "pop,nope", "--out", str(tmp_path / "r.json")],
    )
    assert res.exit_code == 2
    assert "unknown model(s) nope" in res.output


def test_inspect_json(funnel_csv: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["inspect", str(funnel_csv), "--json", "--rejects", str(tmp_path / "rej.csv")]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ingest"]["layout"] == "canonical"
    f = data["funnel"]
    assert f["events"] == data["ingest"]["rows_used"]
    assert 0 < f["funnel_conversion"]["view_to_cart"] <= 1
    assert 0 < f["remove_after_cart_rate"] < 1
    assert set(f["history_length_buckets"]) == {"1-3", "4-10", "11-50", "50+"}


def test_inspect_table_output(funnel_csv: Path) -> None:
    res = runner.invoke(app, ["inspect", str(funnel_csv)])
    assert res.exit_code == 0
    assert "layout canonical (detected)" in res.output
    assert "carts later removed" in res.output


def test_map_and_action_options(tmp_path: Path) -> None:
    p = tmp_path / "shop.csv"
    p.write_text("who,when,what,sku\n1,1700000000,looked,a\n1,1700000100,paid,a\n")
    res = runner.invoke(
        app,
        [
            "inspect",
            str(p),
            "--json",
            "--map",
            "customer_id=who,timestamp=when",
            "--map",
            "action=what",
            "--map",
            "item_id=sku",
            "--action",
            "looked=view",
            "--action",
            "paid=purchase",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["funnel"]["actions"]["purchase"] == 1


def test_bad_file_exits_2_with_message(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("foo,bar\n1,2\n")
    res = runner.invoke(app, ["inspect", str(p)])
    assert res.exit_code == 2
    assert "unrecognised column layout" in res.output and "foo" in res.output


def test_ingest_writes_sequences(funnel_csv: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", str(funnel_csv), "--out", str(tmp_path / "seq")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "seq" / "sequences.safetensors").exists()
    assert (
        json.loads((tmp_path / "seq" / "ingest_report.json").read_text())["ingest"]["rows_used"] > 0
    )


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--customers", "300", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    for name in (
        "events.csv",
        "results.json",
        "results.html",
        "report.html",
        "model/traits.json",
        "model/segments.json",
        "inspect.json",
        "ground_truth_customers.json",
        "sequences/sequences.safetensors",
    ):
        assert (out / name).exists(), name
    assert "Outputs in" in res.output


def test_fit_profiles_recommend(funnel_csv: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    res = runner.invoke(
        app, ["fit", str(funnel_csv), "--out", str(model_dir), "--traits", "6", "--epochs", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "learned action weights" in res.output and "remove_cart" in res.output
    report = json.loads((model_dir / "fit_report.json").read_text())
    assert report["split"]["target"] == "purchase" and len(report["epochs"]) >= 1
    co = report["covisit"]
    assert co["valid_NDCG@10_by_weight"][f"{co['weight']:g}"] == max(
        co["valid_NDCG@10_by_weight"].values()
    )
    assert f"covisit weight {co['weight']:g}" in res.output
    prof = tmp_path / "profiles.csv"
    res = runner.invoke(app, ["profiles", str(model_dir), "--out", str(prof)])
    assert res.exit_code == 0, res.output
    import pandas as pd

    from funnelrec.profiles import BEHAVIOURS

    table = pd.read_csv(prof)
    assert table.columns[0] == "customer_id" and table.shape[1] == 1 + 6 + len(BEHAVIOURS)
    assert list(table.columns[7:]) == [f"behaviour_{b}" for b in BEHAVIOURS]
    assert table.iloc[:, 1:].apply(lambda c: c.between(0, 1).all()).all()
    cid = str(table["customer_id"].iloc[0])
    res = runner.invoke(app, ["recommend", str(model_dir), "--customer", cid, "-k", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["items"]) == 4
    res = runner.invoke(app, ["recommend", str(model_dir), "--customer", "nobody"])
    assert res.exit_code == 2 and "unknown customer" in res.output

    # More events: the ones that cannot be used are counted and written aside, not lost.
    item = str(pd.read_csv(funnel_csv)["item_id"].iloc[0])
    more = tmp_path / "more.csv"
    more.write_text(
        "customer_id,timestamp,action,item_id\n"
        f"{cid},2025-06-01T10:00:00Z,view,{item}\n"
        f"{cid},2025-06-01T10:01:00Z,view,NEVER-SEEN\n"
        f"{cid},not-a-time,view,{item}\n"
    )
    res = runner.invoke(
        app, ["profiles", str(model_dir), "--events", str(more), "--out", str(prof)]
    )
    assert res.exit_code == 0, res.output
    assert "rejected: unparseable timestamp: 1" in res.output
    assert "not used: unknown item: 1" in res.output and "events appended: 1" in res.output
    rejected = pd.read_csv(prof.with_name("profiles.rejects.csv"))
    assert rejected[["line", "reason"]].values.tolist() == [
        [3, "not usable by the model: unknown item"],
        [4, "unparseable timestamp"],
    ]
    # A customer the model has not seen: their journey from a file, else popular items.
    args = ["recommend", str(model_dir), "-k", "3", "--json", "--events", str(more)]
    res = runner.invoke(app, [*args, "--customer", cid])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fallback"] is None
    assert (tmp_path / "more.csv.rejects.csv").exists()
    res = runner.invoke(app, [*args, "--customer", cid, "--rejects", str(tmp_path / "r.csv")])
    assert res.exit_code == 0 and (tmp_path / "r.csv").exists(), res.output
    other = str(table["customer_id"].iloc[1])  # known, no rows in the file: stored history
    res = runner.invoke(app, [*args, "--customer", other])
    assert res.exit_code == 0 and json.loads(res.stdout)["fallback"] is None
    res = runner.invoke(app, [*args, "--customer", "ghost"])
    out = json.loads(res.stdout)
    assert out["fallback"] == "popularity" and len(out["items"]) == 3

    # Events from another shop system: its own column names, semicolons, action codes.
    other_layout = tmp_path / "other.csv"
    other_layout.write_text(f"visitor;when;what;sku\n{cid};2025-06-02T09:00:00Z;3;{item}\n")
    reading = ["--map", "customer_id=visitor,timestamp=when,action=what,item_id=sku"]
    reading += ["--action", "3=add_cart", "--delimiter", ";"]
    recommend_args = ["recommend", str(model_dir), "--customer", cid, "--json"]
    res = runner.invoke(
        app, ["recommend", str(model_dir), "--customer", cid, "--events", str(other_layout)]
    )
    assert res.exit_code == 2 and "--map" in res.output
    res = runner.invoke(
        app,
        [*recommend_args, "--events", str(other_layout), *reading],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["profiles", str(model_dir), "--events", str(other_layout), "--out", str(prof), *reading],
    )
    assert res.exit_code == 0 and "events appended: 1" in res.output, res.output


def test_traits_segments_explain_report(funnel_csv: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    res = runner.invoke(
        app, ["fit", str(funnel_csv), "--out", str(model_dir), "--traits", "4", "--epochs", "1"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["traits", str(model_dir), "--json"])
    assert res.exit_code == 0, res.output
    cards = json.loads(res.stdout)
    assert [c["trait"] for c in cards] == ["trait_01", "trait_02", "trait_03", "trait_04"]
    assert all(c["name"] and c["description"] and c["top_items"] for c in cards)
    res = runner.invoke(app, ["traits", str(model_dir)])
    assert res.exit_code == 0 and "trait_04" in res.output

    out = tmp_path / "seg" / "segments.csv"
    res = runner.invoke(app, ["segments", str(model_dir), "--n-segments", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import pandas as pd

    seg = pd.read_csv(out)
    assert list(seg.columns) == ["customer_id", "segment"] and set(seg.segment) == {0, 1, 2}
    cards = json.loads(out.with_suffix(".json").read_text())["segments"]
    assert sum(c["size"] for c in cards) == len(seg)

    cid = str(seg.customer_id.iloc[0])
    res = runner.invoke(
        app, ["recommend", str(model_dir), "--customer", cid, "-k", "3", "--explain", "--json"]
    )
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)["items"]
    assert len(items) == 3 and all(i["text"].startswith("Recommended: ") for i in items)
    res = runner.invoke(app, ["recommend", str(model_dir), "--customer", cid, "--explain"])
    assert res.exit_code == 0 and "why" in res.output

    html = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(model_dir), "--out", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert "<script src=" not in text  # self-contained: no CDN
    from funnelrec.report.html import SECTIONS

    assert len(SECTIONS) == 7
    for section in SECTIONS:
        assert f"id='{section}'" in text


def test_bad_options_and_paths_fail_before_work(funnel_csv: Path, tmp_path: Path) -> None:
    """Out-of-range options and unusable output paths: exit 2 with a message, no traceback."""
    model_dir = tmp_path / "model"
    res = runner.invoke(
        app, ["fit", str(funnel_csv), "--out", str(model_dir), "--traits", "2", "--epochs", "1"]
    )
    assert res.exit_code == 0, res.output
    cases = [
        (["fit", str(funnel_csv), "--out", str(funnel_csv)], "is a file"),
        (["fit", str(funnel_csv), "--out", str(tmp_path / "m2"), "--traits", "0"], "traits"),
        (["inspect", str(funnel_csv), "--session-gap", "-5"], "session gap"),
        (["inspect", str(funnel_csv), "--timestamp-unit", "%Q"], "strptime format"),
        (["profiles", str(model_dir), "--out", str(tmp_path)], "is a folder"),
        (
            ["segments", str(model_dir), "--out", str(tmp_path / "s.csv"), "--n-segments", "0"],
            "--n-segments",
        ),
        (
            ["segments", str(model_dir), "--out", str(tmp_path / "s.csv"), "--n-segments", "99999"],
            "customers",
        ),
        (["recommend", str(model_dir), "--customer", "c00001", "-k", "-2"], "-k"),
    ]
    for args, words in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), args
        assert words in res.output, (args, res.output)
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    res = runner.invoke(app, ["recommend", str(model_dir), "--customer", "c00001"])
    assert res.exit_code == 2 and "cannot load a model" in res.output


def test_fit_passes_any_constructor_argument(funnel_csv: Path, tmp_path: Path) -> None:
    """`--param NAME=VALUE` reaches FunnelModel typed; a bad name or value is a clear error."""
    out = tmp_path / "m"
    args = ["fit", str(funnel_csv), "--out", str(out), "--epochs", "1", "--traits", "4"]
    res = runner.invoke(app, [*args, "-p", "dropout=0.5", "--param", "item_init=random"])
    assert res.exit_code == 0, res.output
    params = json.loads((out / "fit_report.json").read_text())["params"]
    assert params["dropout"] == 0.5 and params["item_init"] == "random"
    assert params["n_traits"] == 4
    for bad, says in (
        ("dropuot=0.5", "unknown parameter 'dropuot'"),
        ("epochs=many", "expects int"),
        ("item_init=pca", "item_init must be one of"),
        ("dropout=1.5", "dropout must be in [0, 1)"),
    ):
        where = tmp_path / bad.split("=")[0]
        res = runner.invoke(app, ["fit", str(funnel_csv), "--out", str(where), "-p", bad])
        assert res.exit_code == 2 and says in res.output, res.output
        assert not where.exists()


def test_fit_without_test_cases_says_so(tmp_path: Path) -> None:
    """Every customer's events in one session: nothing to test the purchase target on."""
    rows = ["customer_id,timestamp,action,item_id"]
    for c in range(30):
        for k, (action, item) in enumerate([("view", c % 7), ("view", c % 5), ("purchase", c % 5)]):
            rows.append(f"c{c},2024-01-01T{c % 20:02d}:{k:02d}:00Z,{action},i{item}")
    events = tmp_path / "one_session.csv"
    events.write_text("\n".join(rows) + "\n")
    res = runner.invoke(app, ["fit", str(events), "--out", str(tmp_path / "m"), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    assert "not evaluated" in res.output and (tmp_path / "m" / "model.json").exists()


def test_failures_leave_no_empty_folder_and_outputs_are_readable(
    funnel_csv: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,when,what,sku\nu1,2024-01-01,view,s1\n")  # no known layout
    for command in ("fit", "ingest"):
        res = runner.invoke(app, [command, str(bad), "--out", str(tmp_path / command)])
        assert res.exit_code == 2 and not (tmp_path / command).exists(), res.output
    res = runner.invoke(app, ["inspect", str(tmp_path / "missing.sqlite")])
    assert res.exit_code == 2 and "file not found" in res.output
    model_dir = tmp_path / "model"
    res = runner.invoke(app, ["fit", str(funnel_csv), "--out", str(model_dir), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    mode = (model_dir / "model.safetensors").stat().st_mode
    assert mode & 0o044 == (model_dir / "model.json").stat().st_mode & 0o044


def test_no_header_reads_the_first_line_as_an_event(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("u1,2024-01-01T10:00:00Z,view,s1\nu1,2024-01-01T10:01:00Z,purchase,s1\n")
    cols = "customer_id=column0,timestamp=column1,action=column2,item_id=column3"
    res = runner.invoke(app, ["inspect", str(path), "--no-header", "--map", cols, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ingest"]["rows_used"] == 2


def test_map_values_may_hold_commas() -> None:
    from funnelrec.cli import _pairs

    got = _pairs(["customer_id=User, Name,timestamp=t,", "action=a"], "--map")
    assert got == {"customer_id": "User, Name", "timestamp": "t", "action": "a"}


def test_events_in_another_layout_drop_every_saved_reading_setting() -> None:
    from funnelrec.cli import _reading

    got = _reading("auto", ["customer_id=a,item_id=b"], None, "auto", None, None)
    assert got == {
        "layout": "auto",
        "column_map": {"customer_id": "a", "item_id": "b"},
        "timestamp_unit": "auto",
        "delimiter": None,
        "has_header": None,
    }
    assert _reading("auto", None, ["3=add_cart"], "auto", None, None) == {
        "action_map": {"3": "add_cart"}
    }


def test_fit_reads_item_tags(funnel_csv: Path, tmp_path: Path) -> None:
    """`--item-tags` gives the model its items' tags; unusable rows are counted and set aside."""
    tags = tmp_path / "tags.csv"
    tags.write_text("item_id,tags\ni00001,red|sale\ni00002,sale\n,blue\nnot-an-item,x\n")
    out = tmp_path / "m"
    args = ["fit", str(funnel_csv), "--out", str(out), "--epochs", "1", "--traits", "4"]
    res = runner.invoke(app, [*args, "--item-tags", str(tags)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # the console wraps long lines
    assert "items of the events with tags 2" in said
    assert "tagged items not in the events 1" in said
    assert "rejected: no item id: 1" in said
    assert (out / "item_tags.rejects.csv").exists()
    from funnelrec.models import FunnelModel

    model = FunnelModel.load(out)
    assert model.vocab_.tag_names == ["red", "sale"] and model.net_.cfg.n_tags == 2
    res = runner.invoke(app, [*args, "--item-tags", str(tmp_path / "none.csv")])
    assert res.exit_code == 2 and "item tag file not found" in " ".join(res.output.split())
    out = tmp_path / "results.json"
    ev = ["evaluate", str(funnel_csv), "--models", "pop", "--out", str(out), "--no-plot"]
    res = runner.invoke(app, [*ev, "--item-tags", str(tags)])
    assert res.exit_code == 0, res.output
    assert "items of the events with tags 2" in " ".join(res.output.split())
    assert (tmp_path / "results.item_tags.rejects.csv").exists()
