"""`classify --input` on awkward files: one bad byte costs one row (named by file and line), a huge prompt says it was cut."""

import pytest
from run_factory import adapter_run

from aims_kit.__main__ import main
from aims_kit.core import results
from aims_kit.serving.classifier import read_prompt_rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return adapter_run(tmp_path_factory.mktemp("classify_input"), "intent_label")


def test_an_invalid_utf8_line_is_one_bad_row_and_a_huge_prompt_is_marked_truncated(run, tmp_path, capsys):
    source = tmp_path / "prompts.jsonl"
    source.write_bytes(
        b'{"prompt": "Write a poem about the sea."}\n'
        b'{"prompt": "Caf\xe9 cr\xe8me recipe?"}\n'
        + b'{"prompt": "' + b"tell me more " * 15_400 + b'"}\n'  # 200,200 characters
        + b'{"prompt": "How do I stop a frozen program?"}\n'
    )
    output = tmp_path / "verdicts.jsonl"
    assert main(["classify", "--run", str(run), "--input", str(source), "--output", str(output), "--max-new-tokens", "4"]) == 1
    err = capsys.readouterr().err
    assert f"bad row: {source}, line 2: not valid UTF-8 (byte 0xe9 at character 16)" in err
    assert "1 of 4 rows were not classified" in err and "1 prompts were longer than the model reads" in err
    rows = results.read_jsonl(output)
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert "label" not in rows[1] and [rows[i]["truncated"] for i in (0, 2, 3)] == [False, True, False]
    assert all(rows[i]["label"] in ("harmful", "safe") for i in (0, 2, 3))


def test_a_csv_row_with_a_bad_byte_names_its_line_and_field(tmp_path):
    source = tmp_path / "prompts.csv"
    source.write_bytes(b'id,prompt\n1,fine prompt\n2,"multi\nline \xff"\n3,another fine one\n')
    rows = read_prompt_rows(source)
    assert [(r.line, r.prompt, r.error) for r in rows] == [
        (2, "fine prompt", None),
        (3, None, "field 'prompt' is not valid UTF-8 (byte 0xff at character 12)"),
        (5, "another fine one", None),
    ]
